// Package testkit holds what this chapter's tests share: an output buffer
// that a program can write while a test reads it, a wait on it, and a way to
// drop a test server's connections and shut it down.
package testkit

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
