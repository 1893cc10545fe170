package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"realtime/05-webhooks/feed"
	"realtime/05-webhooks/server"
)

// Server timeouts. Every one of them exists because a client that never
// finishes its request must not hold a connection forever.
const (
	readHeaderTimeout = 5 * time.Second  // slowloris: headers trickled byte by byte
	readTimeout       = 15 * time.Second // a publish body takes no longer
	writeTimeout      = 15 * time.Second // a poll answer takes no longer (long polls and streams move their own deadline)
	idleTimeout       = 2 * time.Minute  // keep-alive between polls
	shutdownTimeout   = 5 * time.Second  // in-flight requests get this long to finish
)

// RunServer runs the server until ctx ends: it listens on -addr, publishes
// every line of stdin, and shuts down gracefully when ctx is cancelled.
// It prints "serving on http://ADDR" to stdout once it is listening.
func RunServer(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (host:port); loopback unless -expose")
	expose := fs.Bool("expose", false, "allow -addr to be reachable from other machines")
	history := fs.Int("history", feed.DefaultHistory, "how many updates to keep for clients that fall behind")
	debug := fs.Bool("debug", false, "serve GET /debug/runtime: goroutines and memory, for load tests")
	var allowedHosts []string
	fs.Func("allow-host", "comma-separated host `names` or IP addresses that requests may name besides loopback ones and,\n"+
		"with -expose, the -addr host: a reverse proxy's or a LAN name (others are refused, against DNS rebinding)", addHosts(&allowedHosts))
	var allowedOrigins []string
	fs.Func("allow-origin", "comma-separated `origins` (scheme://host[:port]) whose pages may publish and open WebSockets besides\n"+
		"the server's own pages: a front end served from another name (others are refused)", addOrigins(&allowedOrigins))
	maxHeld := fs.Int("max-held", server.DefaultMaxHeld(), "the most long polls, event streams and WebSockets held open at once (the default fits the open-file limit,\n"+
		"less one file for each of -max-webhooks); more get 503 and Retry-After")
	heartbeat := fs.Duration("heartbeat", server.DefaultHeartbeat, "event streams: time between heartbeat comments")
	var webhookAllow []netip.Prefix
	fs.Func("webhook-allow", "comma-separated IP `prefixes` or addresses that webhooks may be delivered to, replacing loopback\n"+
		"(default 127.0.0.0/8,::1/128); a registered name is checked by the address it resolves to", addPrefixes(&webhookAllow))
	maxWebhooks := fs.Int("max-webhooks", server.DefaultMaxWebhooks, "the most webhooks registered at once; more get 503 and Retry-After, unless a disabled one gives its place")
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	if err := checkLoopback(*addr, *expose); err != nil {
		return err
	}
	if *expose {
		// The address it was told to listen on is one of its names.
		host, _, _ := net.SplitHostPort(*addr) // checkLoopback has checked it
		allowedHosts = append(allowedHosts, host)
	}
	log, err := feed.New(*history)
	if err != nil {
		return usageErrorf("-history: %w", err)
	}
	if *maxHeld < 1 {
		return usageErrorf("-max-held %d: must be at least 1", *maxHeld)
	}
	if *heartbeat <= 0 {
		return usageErrorf("-heartbeat %v: must be positive", *heartbeat)
	}
	if *maxWebhooks < 1 {
		return usageErrorf("-max-webhooks %d: must be at least 1", *maxWebhooks)
	}
	if !flagGiven(fs, "max-held") {
		// Each registration may hold a connection to its receiver: those
		// files come out of the ones the default leaves for held requests.
		*maxHeld = max(*maxHeld-*maxWebhooks, 1)
	}

	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	opts := []server.Option{server.WithAllowedHosts(allowedHosts...), server.WithAllowedOrigins(allowedOrigins...),
		server.WithMaxHeld(*maxHeld), server.WithHeartbeat(*heartbeat), server.WithMaxWebhooks(*maxWebhooks)}
	if webhookAllow != nil {
		opts = append(opts, server.WithWebhookAllow(webhookAllow...))
	}
	if *debug {
		opts = append(opts, server.WithRuntimeStats())
	}
	handler := server.New(log, opts...)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(listener) }()
	fmt.Fprintf(stdout, "serving on http://%s\ntype a line and press Enter to publish it\n", listener.Addr())

	// The stdin reader is not waited for: a terminal read cannot be
	// interrupted, and the process exits after RunServer returns anyway.
	go publishLines(log, stdin, stdout, stderr)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// http.Server.Shutdown ends the requests; the event streams that left
	// theirs end with the handler's own.
	if err := errors.Join(srv.Shutdown(shutdownCtx), handler.Shutdown(shutdownCtx)); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// checkLoopback refuses a non-loopback address unless expose is set: a
// tutorial server should not appear on a network by accident.
func checkLoopback(addr string, expose bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageErrorf("-addr %q: %w", addr, err)
	}
	if expose || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return usageErrorf("-addr %q is not a loopback address; add -expose to listen on it", addr)
}

// addHosts parses the -allow-host flag: it adds each comma-separated name
// to hosts, which must be bare, as Host carries them (the port may be any).
func addHosts(hosts *[]string) func(string) error {
	return func(value string) error {
		for name := range strings.SplitSeq(value, ",") {
			name = strings.TrimSpace(name)
			_, err := netip.ParseAddr(strings.Trim(name, "[]"))
			// Past an IPv6 address, a colon is a port or a scheme; a Host
			// never matches a name with one, or with a path or a wildcard.
			if err != nil && (name == "" || strings.ContainsAny(name, ":/[]* ")) {
				return fmt.Errorf("%q is not a host name or IP address; give one without scheme or port, such as updates.example", name)
			}
			*hosts = append(*hosts, name)
		}
		return nil
	}
}

// addOrigins parses the -allow-origin flag: it adds each comma-separated
// origin to origins, in lower case, as a browser writes it in Origin.
func addOrigins(origins *[]string) func(string) error {
	return func(value string) error {
		for origin := range strings.SplitSeq(value, ",") {
			origin = strings.ToLower(strings.TrimSpace(origin))
			u, err := url.Parse(origin)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
				u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
				return fmt.Errorf("%q is not an origin; give scheme, host and port alone, such as https://app.example", origin)
			}
			*origins = append(*origins, origin)
		}
		return nil
	}
}

// flagGiven says whether the flag called name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// addPrefixes parses the -webhook-allow flag: it adds each comma-separated
// prefix, or address (a prefix of one), to prefixes.
func addPrefixes(prefixes *[]netip.Prefix) func(string) error {
	return func(value string) error {
		for item := range strings.SplitSeq(value, ",") {
			item = strings.TrimSpace(item)
			prefix, err := netip.ParsePrefix(item)
			if err != nil {
				addr, addrErr := netip.ParseAddr(item)
				if addrErr != nil {
					return fmt.Errorf("%q is not an IP address or prefix, such as 10.0.0.0/8 or 192.0.2.7", item)
				}
				prefix = netip.PrefixFrom(addr, addr.BitLen())
			}
			*prefixes = append(*prefixes, prefix.Masked())
		}
		return nil
	}
}

// publishLines publishes each line of stdin as one update until EOF. Blank
// lines are skipped; a line the log refuses (too long, not UTF-8) is
// reported, and the rest of the input is still read.
func publishLines(log *feed.Log, stdin io.Reader, stdout, stderr io.Writer) {
	lines := bufio.NewReaderSize(stdin, feed.MaxDataBytes+len("\r\n"))
	for {
		line, err := readLine(lines)
		if errors.Is(err, feed.ErrTooLarge) {
			fmt.Fprintf(stderr, "not published: %v\n", err)
			continue
		}
		if line != "" {
			if u, err := log.Publish(line); err != nil {
				fmt.Fprintf(stderr, "not published: %v\n", err)
			} else {
				fmt.Fprintf(stdout, "published %d\n", u.ID)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(stderr, "reading stdin: %v\n", err)
			}
			fmt.Fprintln(stdout, "stdin closed; still serving (Ctrl-C stops the server)")
			return
		}
	}
}

// readLine returns the next line without its "\n" or "\r\n", and io.EOF
// with the last line. A line that does not fit r's buffer is consumed whole
// and reported as feed.ErrTooLarge.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r"), err
	}
	for errors.Is(err, bufio.ErrBufferFull) {
		_, err = r.ReadSlice('\n')
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return "", feed.ErrTooLarge // a following EOF is returned by the next call
}
