package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
)

func TestSSE_CountsAgainstTheSameHeldCapAsLongPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(8)
		require.NoError(t, err)
		handler := server.New(log, server.WithMaxHeld(1))
		ctx, leave := context.WithCancel(t.Context())
		returned := serveInBubble(ctx, handler, newStreamWriter())
		synctest.Wait() // the stream is open, in the only place there is

		for _, target := range []string{"/events", "/updates?after=0&wait=60s"} {
			// Without a cap each would be held: the timeout ends it, in
			// synctest's time, so that the test fails instead of hanging.
			held, cancel := context.WithTimeout(t.Context(), time.Hour)
			refused := httptest.NewRecorder()
			handler.ServeHTTP(refused, httptest.NewRequestWithContext(held, http.MethodGet, "http://localhost"+target, nil))
			cancel()
			assert.Equal(t, http.StatusServiceUnavailable, refused.Code, target)
			assert.Equal(t, "5", refused.Header().Get("Retry-After"), target)
		}

		leave()
		<-returned
		assert.Equal(t, http.StatusNoContent, serve(handler, http.MethodGet, "/updates?after=0&wait=1s", "").Code,
			"a stream that ended gives its place back: the next poll is held until its wait ends")
	})
}

// dialStream opens GET /events on a raw TCP connection, the way a client
// that misbehaves would, and reads the response head and the hello. Every
// read and write on it fails after testkit.WaitTimeout instead of hanging.
func dialStream(tb testing.TB, srv *httptest.Server) (net.Conn, *http.Response) {
	tb.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(tb, err)
	tb.Cleanup(func() { conn.Close() })
	require.NoError(tb, conn.SetDeadline(time.Now().Add(testkit.WaitTimeout)))
	_, err = io.WriteString(conn, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
	require.NoError(tb, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(tb, err)
	require.Equal(tb, http.StatusOK, resp.StatusCode)
	skipHello(tb, client.NewEventStream(resp.Body))
	return conn, resp
}

func TestSSE_ClosesTheStreamWhenItsClientSendsAnything(t *testing.T) {
	srv, _ := start(t, 8)
	conn, resp := dialStream(t, srv)

	// A client of an event stream sends nothing after its request. This one
	// does: it is broken, or it wants the server to spend a read per byte.
	_, err := io.WriteString(conn, strings.Repeat("junk", 1024))
	require.NoError(t, err)

	_, err = io.Copy(io.Discard, resp.Body)
	var netErr net.Error
	isTimeout := errors.As(err, &netErr) && netErr.Timeout()
	assert.False(t, isTimeout, "the server closes the connection (EOF, or a reset for the unread junk); got %v", err)
}

// stuckWriter is a ResponseWriter whose client has stopped reading: each
// write waits for the write deadline, as a write to a full socket does.
type stuckWriter struct {
	header   http.Header
	mu       sync.Mutex
	deadline time.Time     // zero: none
	moved    chan struct{} // closed, and replaced, when the deadline moves
}

func newStuckWriter() *stuckWriter {
	return &stuckWriter{header: make(http.Header), moved: make(chan struct{})}
}

func (w *stuckWriter) Header() http.Header { return w.header }
func (w *stuckWriter) WriteHeader(int)     {}
func (w *stuckWriter) Flush()              {}

func (w *stuckWriter) Write(p []byte) (int, error) {
	for {
		w.mu.Lock()
		deadline, moved := w.deadline, w.moved
		w.mu.Unlock()
		var expired <-chan time.Time // nil, never ready, while there is no deadline
		if !deadline.IsZero() {
			if !time.Now().Before(deadline) {
				return 0, os.ErrDeadlineExceeded
			}
			expired = time.After(time.Until(deadline))
		}
		select {
		case <-moved:
		case <-expired:
		}
	}
}

func (w *stuckWriter) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = t
	close(w.moved)
	w.moved = make(chan struct{})
	return nil
}

func TestSSE_ShutdownEndsAWriteStuckOnAClientThatStoppedReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(8)
		require.NoError(t, err)
		// The request's context: RunServer's BaseContext ends it when the
		// server shuts down.
		ctx, shutDown := context.WithCancel(t.Context())
		returned := serveInBubble(ctx, server.New(log), newStuckWriter())
		synctest.Wait() // the hello is being written, to a client that does not read
		select {
		case <-returned:
			t.Fatal("the stream ended before the server shut down")
		default:
		}

		start := time.Now()
		shutDown()
		<-returned // synctest's clock moves on only while every goroutine waits: to the write's deadline, if nothing ends it first

		assert.Zero(t, time.Since(start), "the stuck write ends when the server shuts down, not at its deadline")
	})
}
