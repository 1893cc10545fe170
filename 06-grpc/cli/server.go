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
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/natsfeed"
	"realtime/06-grpc/server"
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

// RunServer runs the server until ctx ends: it serves HTTP on -addr and
// gRPC on -grpc-addr, from one log, publishes every line of stdin, and shuts
// down gracefully when ctx is cancelled. It prints "serving on http://ADDR"
// and "serving gRPC on ADDR" to stdout once it is listening.
func RunServer(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (host:port); loopback unless -expose")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:9090", "gRPC listen address (host:port); loopback unless -expose")
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
	maxStreams := fs.Int("max-streams", grpcserver.DefaultMaxStreams, "the most gRPC Subscribe streams open at once; more get Unavailable and a RetryInfo")
	natsURL := fs.String("nats", "", "keep the log in NATS JetStream, shared by every server that names the same NATS: its `URL`, such as\n"+
		"nats://127.0.0.1:4222, or embedded to run a NATS server inside this one (default: in this process's memory)")
	natsListen := fs.String("nats-listen", "", "with -nats embedded: let other servers connect to it at this `address` (host:port); loopback unless -expose")
	natsDir := fs.String("nats-dir", "", "with -nats embedded: the `directory` for its streams, kept across runs (default: a temporary one, removed at exit)")
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	if err := checkLoopback("-addr", *addr, *expose); err != nil {
		return err
	}
	if err := checkLoopback("-grpc-addr", *grpcAddr, *expose); err != nil {
		return err
	}
	if *expose {
		// The address it was told to listen on is one of its names.
		host, _, _ := net.SplitHostPort(*addr) // checkLoopback has checked it
		allowedHosts = append(allowedHosts, host)
	}
	if *natsURL != "embedded" && (*natsListen != "" || *natsDir != "") {
		return usageErrorf("-nats-listen and -nats-dir are for -nats embedded")
	}
	if *natsListen != "" {
		if err := checkLoopback("-nats-listen", *natsListen, *expose); err != nil {
			return err
		}
	}
	if *history < 1 {
		return usageErrorf("-history: history must be at least 1, got %d", *history)
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
	if *maxStreams < 1 {
		return usageErrorf("-max-streams %d: must be at least 1", *maxStreams)
	}
	if !flagGiven(fs, "max-held") {
		// Each registration may hold a connection to its receiver: those
		// files come out of the ones the default leaves for held requests.
		*maxHeld = max(*maxHeld-*maxWebhooks, 1)
	}

	log, hooks, closeLog, err := openLog(ctx, *natsURL, *natsListen, *natsDir, *history, stdout)
	if err != nil {
		return err
	}
	defer closeLog() // after the servers have shut down: they read it until then
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	grpcListener, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		listener.Close()
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
	if hooks != nil {
		opts = append(opts, server.WithSharedWebhooks(hooks, server.DefaultWebhookLease))
	}
	rpc := grpcserver.New(log, grpcserver.WithMaxStreams(*maxStreams))
	opts = append(opts, server.WithGRPCSubscribers(grpcSubscribers(rpc)))
	handler := server.New(log, opts...)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	fmt.Fprintf(stdout, "serving on http://%s\nserving gRPC on %s\ntype a line and press Enter to publish it\n",
		listener.Addr(), grpcListener.Addr())

	// The stdin reader is not waited for: a terminal read cannot be
	// interrupted, and the process exits after RunServer returns anyway.
	go publishLines(log, stdin, stdout, stderr)

	return serve(ctx, []component{
		{name: "HTTP", serve: func() error { return srv.Serve(listener) }, shutdown: func(ctx context.Context) error {
			// http.Server.Shutdown ends the requests; the event streams
			// that left theirs end with the handler's own.
			return errors.Join(srv.Shutdown(ctx), handler.Shutdown(ctx))
		}},
		{name: "gRPC", serve: func() error { return rpc.Serve(grpcListener) }, shutdown: rpc.Shutdown},
	})
}

// openLog opens the log the server reads: in this process's memory, or,
// with natsURL, a NATS JetStream stream, on the NATS at that URL or on one
// run inside this process ("embedded"), which listens at natsListen for
// other servers if that is not empty. It returns the log, where webhook
// registrations are shared with the other servers (nil: in this process's
// memory), and what closes them.
func openLog(ctx context.Context, natsURL, natsListen, natsDir string, history int, stdout io.Writer) (feed.Store, server.WebhookStore, func(), error) {
	if natsURL == "" {
		log, err := feed.New(history)
		return log, nil, func() {}, err
	}
	var closers []func()
	closeAll := func() {
		for _, close := range slices.Backward(closers) {
			close()
		}
	}
	var nc *nats.Conn
	if natsURL == "embedded" {
		if natsDir == "" {
			dir, err := os.MkdirTemp("", "realtime-nats-")
			if err != nil {
				return nil, nil, nil, err
			}
			closers = append(closers, func() { os.RemoveAll(dir) })
			natsDir = dir
		}
		ns, err := natsfeed.StartEmbedded(natsDir, natsListen)
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		closers = append(closers, ns.Shutdown)
		if url := ns.URL(); url != "" {
			fmt.Fprintf(stdout, "NATS for other servers on %s\n", url)
		}
		nc, err = ns.Connect()
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
	} else {
		var err error
		// A server outlives its broker's restarts: it reconnects for as
		// long as it runs, and its log answers errors meanwhile. It keeps
		// nothing to send once reconnected: a publish answered with an
		// error must not reach the stream later, behind the client's back.
		nc, err = nats.Connect(natsURL, nats.Name("realtime server"), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("-nats %s: %w", redacted(natsURL), err)
		}
	}
	closers = append(closers, nc.Close)
	log, err := natsfeed.New(ctx, nc, natsfeed.Config{History: history})
	if err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("-nats %s: %w", redacted(natsURL), err)
	}
	closers = append(closers, log.Close)
	fmt.Fprintf(stdout, "log: NATS JetStream stream %s, epoch %s, newest update %d\n", natsfeed.DefaultStream, log.Epoch(), log.Last())
	hooks, err := natsfeed.NewRegistrations(ctx, nc, natsfeed.Config{})
	if err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("-nats %s: %w", redacted(natsURL), err)
	}
	return log, hooks, closeAll, nil
}

// redacted returns the -nats URLs (one, or several separated by commas, as
// nats.Connect takes them) fit for an error message: a password shows as
// xxxxx, and so does a token, which NATS takes in the user's place.
func redacted(urls string) string {
	parts := strings.Split(urls, ",")
	for i, part := range parts {
		part = strings.TrimSpace(part)
		if !strings.Contains(part, "://") {
			part = "nats://" + part // as nats.Connect reads it: user:pass@host is not a scheme
		}
		u, err := url.Parse(part)
		switch {
		case err != nil && strings.Contains(part, "@"):
			parts[i] = "(a URL that does not parse)"
		case err != nil || u.User == nil:
			// nothing to hide
		default:
			if _, ok := u.User.Password(); !ok {
				u.User = url.User("xxxxx")
			}
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// grpcSubscribers is rpc's list of open streams as the HTTP server takes
// it, for the page.
func grpcSubscribers(rpc *grpcserver.Server) func() []server.GRPCSubscriber {
	return func() []server.GRPCSubscriber {
		var list []server.GRPCSubscriber
		for _, s := range rpc.Subscribers() {
			list = append(list, server.GRPCSubscriber(s))
		}
		return list
	}
}

// component is one of the program's servers: it serves until it is shut
// down.
type component struct {
	name     string
	serve    func() error                // returns once shutdown is called (http.ErrServerClosed is that, too)
	shutdown func(context.Context) error // ends serve, and what it serves, within the context
}

// serve runs every component until ctx ends or one of them fails, then
// shuts them all down, in the reverse of their order as deferred calls run,
// within one shutdownTimeout: the user pressed Ctrl-C and waits for the
// prompt, however many servers there are. It returns once each has returned.
func serve(ctx context.Context, components []component) error {
	served := make(chan error, len(components))
	for _, c := range components {
		go func() {
			err := c.serve()
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				err = fmt.Errorf("serve %s: %w", c.name, err)
			} else {
				err = nil
			}
			served <- err
		}()
	}
	var errs []error
	running := len(components)
	select {
	case err := <-served: // before any shutdown: it failed, and the others go too
		running--
		errs = append(errs, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, c := range slices.Backward(components) {
		if err := c.shutdown(shutdownCtx); err != nil {
			errs = append(errs, fmt.Errorf("shut down %s: %w", c.name, err))
		}
	}
	for range running {
		errs = append(errs, <-served)
	}
	return errors.Join(errs...)
}

// checkLoopback refuses a non-loopback address unless expose is set: a
// tutorial server should not appear on a network by accident.
func checkLoopback(flag, addr string, expose bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageErrorf("%s %q: %w", flag, addr, err)
	}
	if expose || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return usageErrorf("%s %q is not a loopback address; add -expose to listen on it", flag, addr)
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
func publishLines(log feed.Store, stdin io.Reader, stdout, stderr io.Writer) {
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
