package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"realtime/03-sse/client"
	"realtime/03-sse/feed"
	"realtime/03-sse/server"
)

// RunClient runs the client until ctx ends: it receives updates with
// -strategy and prints each on stdout; errors and gaps go to stderr.
func RunClient(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	strategy := fs.String("strategy", "short", "how to receive updates: "+strings.Join(client.Strategies(), ", "))
	serverURL := fs.String("server", "http://127.0.0.1:8080", "the server's base URL")
	after := fs.String("after", "0", "print only updates after this cursor: EPOCH-ID as the server sent it, or a bare id (no restart detection)")
	asJSON := fs.Bool("json", false, "print one JSON object per update, with strategy and latency_ms")
	interval := fs.Duration("interval", time.Second, "short polling: time between polls")
	wait := fs.Duration("wait", 30*time.Second, "long polling: how long the server may hold each poll")
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	base, err := url.Parse(*serverURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return usageErrorf("-server %q: want a URL such as http://127.0.0.1:8080", *serverURL)
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
	receiver, err := client.NewStrategy(*strategy, client.Config{Server: base, Interval: *interval, Wait: *wait})
	if err != nil {
		return UsageError{err}
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
