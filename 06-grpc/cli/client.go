package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/server"
)

// RunClient runs the client until ctx ends: it receives updates with
// -strategy and prints each on stdout; errors and gaps go to stderr. With
// -strategy ws it also publishes each line of stdin through the socket, and
// prints each outcome on stderr. With -strategy webhook it listens on -listen
// and the server POSTs each update to it. With -strategy grpc it subscribes to
// the gRPC listener at -grpc. With -strategy all it receives with
// every strategy at once, and prints each update once per strategy.
func RunClient(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	strategy := fs.String("strategy", "short", "how to receive updates: "+strings.Join(client.Strategies(), ", ")+
		", or "+allStrategies+" (every one at once, each update printed once per strategy with its latency; stdin is not published)")
	serverURL := fs.String("server", "http://127.0.0.1:8080", "the server's base URL")
	grpcTarget := fs.String("grpc", "127.0.0.1:9090", "grpc: the host:port of the server's gRPC listener")
	after := fs.String("after", "0", "print only updates after this cursor: EPOCH-ID as the server sent it, or a bare id (no restart detection)")
	asJSON := fs.Bool("json", false, "print one JSON object per update, with strategy and latency_ms")
	interval := fs.Duration("interval", time.Second, "short polling: time between polls")
	wait := fs.Duration("wait", 30*time.Second, "long polling: how long the server may hold each poll")
	listen := fs.String("listen", "127.0.0.1:0", "webhook: the address to receive deliveries on; the server must be able to reach it")
	callback := fs.String("callback", "", "webhook: the URL to register, when the server reaches -listen by another address (a tunnel, a proxy); default http://LISTEN/hook")
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	base, err := url.Parse(*serverURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return usageErrorf("-server %q: want a URL such as http://127.0.0.1:8080", *serverURL)
	}
	if host, port, err := net.SplitHostPort(*grpcTarget); err != nil || host == "" || port == "" {
		return usageErrorf("-grpc %q: want host:port such as 127.0.0.1:9090", *grpcTarget)
	}
	if *interval <= 0 {
		return usageErrorf("-interval %v: must be positive", *interval)
	}
	if *wait <= 0 || *wait > server.MaxWait {
		return usageErrorf("-wait %v: must be more than 0 and at most %v", *wait, server.MaxWait)
	}
	cursor, err := feed.ParseCursor(*after)
	if err != nil {
		return usageErrorf("-after: %w", err)
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return usageErrorf("-listen %q: %w", *listen, err)
	}
	if *callback != "" {
		if hook, err := url.Parse(*callback); err != nil || (hook.Scheme != "http" && hook.Scheme != "https") || hook.Host == "" {
			return usageErrorf("-callback %q: want an absolute http or https URL such as https://hooks.example/hook", *callback)
		}
	}
	cfg := client.Config{Server: base, GRPC: *grpcTarget, Interval: *interval, Wait: *wait, Listen: *listen, Callback: *callback}
	if *strategy == allStrategies {
		// Nothing typed is published: the lines are typed into the server,
		// and a socket that talked back would be a different demo.
		return client.RunAll(ctx, cfg, client.SessionOptions{
			After:  cursor.After,
			Epoch:  cursor.Epoch,
			JSON:   *asJSON,
			Stdout: stdout,
			Stderr: stderr,
		}, client.DefaultBackoff())
	}
	if *strategy == "ws" {
		// Only a socket talks back. The stdin reader is not waited for: a
		// terminal read cannot be interrupted, and the process exits after
		// RunClient returns anyway.
		typed := make(chan string)
		cfg.Publish = typed
		go sendLines(ctx, stdin, typed, stderr)
	}
	receiver, err := client.NewStrategy(*strategy, cfg)
	if err != nil {
		return UsageError{fmt.Errorf("%w, or %s", err, allStrategies)}
	}
	session := client.NewSession(client.SessionOptions{
		Strategy: *strategy,
		After:    cursor.After,
		Epoch:    cursor.Epoch,
		JSON:     *asJSON,
		Stdout:   stdout,
		Stderr:   stderr,
	})
	err = client.Run(ctx, receiver, session, client.DefaultBackoff(), stderr)
	if after, epoch := session.Cursor(); after > 0 {
		fmt.Fprintf(stderr, "stopped after update %d; resume with -after %s\n", after, feed.Cursor{After: after, Epoch: epoch})
	}
	return err
}

// allStrategies is the -strategy that runs every strategy at once.
const allStrategies = "all"

// sendLines sends each line of stdin to typed until EOF or until ctx ends,
// then closes it. A line waits there until the client is connected. A line
// too long to publish is reported, and the rest of the input still read.
func sendLines(ctx context.Context, stdin io.Reader, typed chan<- string, stderr io.Writer) {
	defer close(typed)
	lines := bufio.NewReaderSize(stdin, feed.MaxDataBytes+len("\r\n"))
	for {
		line, err := readLine(lines)
		if errors.Is(err, feed.ErrTooLarge) {
			fmt.Fprintf(stderr, "not published: %v\n", err)
			continue
		}
		if !utf8.ValidString(line) {
			// JSON would replace the bad bytes with U+FFFD, and publish a
			// text nobody typed.
			fmt.Fprintf(stderr, "not published: %v\n", feed.ErrNotText)
			line = ""
			if err == nil {
				continue
			}
		}
		if err == nil || line != "" {
			select {
			case typed <- line:
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(stderr, "reading stdin: %v\n", err)
			}
			return
		}
	}
}
