// Package testkit holds what this chapter's tests share: an output buffer
// that a program can write while a test reads it, a wait on it, a bounded
// receive from a channel, a publish over HTTP, and a way to drop a test
// server's connections and shut it down.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
)

// WaitTimeout bounds every wait in the tests: generous, because -race and a
// loaded CI machine are slow, and a passing test never waits that long.
const WaitTimeout = 10 * time.Second

// Buffer is an io.Writer that is safe to read while another goroutine writes.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the complete lines written so far.
func (b *Buffer) Lines() []string {
	text := b.String()
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		return strings.Split(text[:i], "\n")
	}
	return nil
}

// WaitForLines waits until b holds at least n complete lines and returns
// them all.
func (b *Buffer) WaitForLines(tb testing.TB, n int) []string {
	tb.Helper()
	require.Eventually(tb, func() bool { return len(b.Lines()) >= n },
		WaitTimeout, time.Millisecond, "waiting for %d lines; have:\n%s", n, b)
	return b.Lines()
}

// WaitFor waits until b contains text.
func (b *Buffer) WaitFor(tb testing.TB, text string) {
	tb.Helper()
	require.Eventually(tb, func() bool { return strings.Contains(b.String(), text) },
		WaitTimeout, time.Millisecond, "waiting for %q; have:\n%s", text, b)
}

// Receive returns the next value from ch, or fails the test if none comes
// within WaitTimeout, saying what it waited for: a test that would otherwise
// block until go test's own timeout fails at once with a reason. Like <-ch,
// it returns the zero value at once from a closed channel, so it also waits
// for a channel that is closed when something is done. Inside a synctest
// bubble the wait is on the bubble's clock: it ends as soon as nothing else
// can happen. Call it from the test's goroutine only: it stops the test.
func Receive[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	timeout := time.NewTimer(WaitTimeout)
	defer timeout.Stop()
	select {
	case v := <-ch:
		return v
	case <-timeout.C:
		tb.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		var zero T
		return zero // not reached: Fatalf ends the test's goroutine
	}
}

// Publish publishes text with POST /publish on the server at baseURL, as a
// script would, and returns the update the server answered with. Anything
// but 201 Created fails the test, with the server's reason. Call it from the
// test's goroutine only: it stops the test.
func Publish(tb testing.TB, baseURL, text string) feed.Update {
	tb.Helper()
	// A transport of its own, closed after: no idle connection outlives the
	// call, for goleak to find or for another test to reuse.
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: WaitTimeout} // a publish that hangs fails the test
	resp, err := client.Post(baseURL+"/publish", "text/plain; charset=utf-8", strings.NewReader(text))
	require.NoError(tb, err, "POST %s/publish", baseURL)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(tb, err, "POST %s/publish: read the answer", baseURL)
	require.Equal(tb, http.StatusCreated, resp.StatusCode, "POST %s/publish answered: %s", baseURL, body)
	var u feed.Update
	require.NoError(tb, json.Unmarshal(body, &u), "POST %s/publish: decode the answer %s", baseURL, body)
	return u
}

// Conns records the connections a test server accepts, so that a test can
// drop them all, as a failing network or a restarting proxy would.
// httptest.Server.CloseClientConnections cannot: it forgets a connection
// once a handler hijacks it, as the event stream's does.
type Conns struct {
	mu    sync.Mutex
	conns []net.Conn
}

// TrackConns makes srv, which must not be started yet, record every
// connection it accepts.
func TrackConns(srv *httptest.Server) *Conns {
	c := &Conns{}
	srv.Listener = trackingListener{srv.Listener, c}
	return c
}

// Track returns l, recording every connection it accepts: a listener that is
// not an httptest server's, such as a gRPC server's.
func (c *Conns) Track(l net.Listener) net.Listener { return trackingListener{l, c} }

// CloseAll closes every connection accepted so far.
func (c *Conns) CloseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

type trackingListener struct {
	net.Listener
	conns *Conns
}

func (l trackingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.conns.mu.Lock()
		l.conns.conns = append(l.conns.conns, conn)
		l.conns.mu.Unlock()
	}
	return conn, err
}

// ShutdownAtCleanup shuts s down when the test ends, and fails the test if
// what s runs in the background has not ended in time.
func ShutdownAtCleanup(tb testing.TB, s interface{ Shutdown(context.Context) error }) {
	tb.Helper()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
		defer cancel()
		require.NoError(tb, s.Shutdown(ctx))
	})
}
