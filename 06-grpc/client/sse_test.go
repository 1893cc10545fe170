package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
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

func sse(tb testing.TB, base *url.URL) client.Strategy {
	tb.Helper()
	strategy, err := client.NewStrategy("sse", client.Config{Server: base, Interval: time.Hour, Wait: time.Minute})
	require.NoError(tb, err)
	return strategy
}

// connections records each request's Last-Event-ID header.
type connections struct {
	mu           sync.Mutex
	lastEventIDs []string
	opened       chan struct{}
}

func (c *connections) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.lastEventIDs = append(c.lastEventIDs, r.Header.Get("Last-Event-ID"))
		c.mu.Unlock()
		c.opened <- struct{}{}
		next.ServeHTTP(w, r)
	})
}

// waitOpened waits for the next connection to reach the handler.
func (c *connections) waitOpened(tb testing.TB) {
	tb.Helper()
	testkit.Receive(tb, c.opened, "the client to connect")
}

func (c *connections) headers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lastEventIDs...)
}

// startStreamServer runs the real handler behind conns, with a short retry,
// and returns what drops its connections.
func startStreamServer(tb testing.TB, log *feed.Log, conns *connections) (*testkit.Conns, *url.URL) {
	tb.Helper()
	api := server.New(log, server.WithRetry(time.Millisecond))
	srv := httptest.NewUnstartedServer(conns.wrap(api))
	tcp := testkit.TrackConns(srv)
	srv.Start()
	tb.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(tb, api)
	base, err := url.Parse(srv.URL)
	require.NoError(tb, err)
	return tcp, base
}

func TestSSE_PrintsEveryUpdateFromOneConnection(t *testing.T) {
	log := newLog(t, 16, "run-1")
	conns := &connections{opened: make(chan struct{}, 8)}
	_, base := startStreamServer(t, log, conns)
	r := receive(t, sse(t, base), "sse", 0)

	conns.waitOpened(t)
	mustPublish(t, log, "a", "b", "c")

	assert.Equal(t, []string{"1 a", "2 b", "3 c"}, r.stdout.WaitForLines(t, 3))
	assert.Equal(t, []string{""}, conns.headers(), "one connection for all three")
}

func TestSSE_ReconnectsWithLastEventIDAndLosesNothing(t *testing.T) {
	log := newLog(t, 16, "run-1")
	conns := &connections{opened: make(chan struct{}, 8)}
	tcp, base := startStreamServer(t, log, conns)
	r := receive(t, sse(t, base), "sse", 0)
	conns.waitOpened(t)
	mustPublish(t, log, "a", "b")
	r.stdout.WaitForLines(t, 2)

	tcp.CloseAll()           // the connection drops
	mustPublish(t, log, "c") // while the client is away
	conns.waitOpened(t)
	mustPublish(t, log, "d")

	assert.Equal(t, []string{"1 a", "2 b", "3 c", "4 d"}, r.stdout.WaitForLines(t, 4))
	assert.Equal(t, []string{"", "run-1-2"}, conns.headers(), "the reconnect says where it was")
}

// TestSSE_KeepsItsEpochUntilTheResetComes: a restarted server says hello
// with its new epoch, then reset. Should the connection drop between the
// two, the next one must still ask with the old epoch: with the new one, the
// new run would take the old run's id as its own and resume from it without
// a word.
func TestSSE_KeepsItsEpochUntilTheResetComes(t *testing.T) {
	var mu sync.Mutex
	served := 0
	conns := &connections{opened: make(chan struct{}, 8)}
	srv := httptest.NewServer(conns.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served++
		n := served
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		switch n {
		case 1: // run 1 and its update 1
			_, _ = w.Write([]byte("event: hello\ndata: {\"last\":1,\"epoch\":\"run-1\"}\n\n" +
				"id: run-1-1\ndata: {\"id\":1,\"data\":\"a\",\"time\":\"2026-01-01T00:00:00Z\"}\n\n"))
		case 2: // run 2, restarted, says hello; the connection drops before the reset
			_, _ = w.Write([]byte("event: hello\ndata: {\"last\":5,\"epoch\":\"run-2\"}\n\n"))
		default: // hello, reset, and run 2's next update
			_, _ = w.Write([]byte("event: hello\ndata: {\"last\":5,\"epoch\":\"run-2\"}\n\n" +
				"event: reset\ndata: {\"last\":5,\"epoch\":\"run-2\"}\n\n" +
				"id: run-2-6\ndata: {\"id\":6,\"data\":\"f\",\"time\":\"2026-01-01T00:00:01Z\"}\n\n"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	})))
	t.Cleanup(srv.Close)
	base, err := url.Parse(srv.URL)
	require.NoError(t, err)
	r := receive(t, sse(t, base), "sse", 0)

	assert.Equal(t, []string{"1 a", "6 f"}, r.stdout.WaitForLines(t, 2))
	assert.Equal(t, []string{"", "run-1-1", "run-1-1"}, conns.headers()[:3], "the old epoch until the reset")
	assert.Contains(t, r.stderr.String(), "gap: server cannot resume after update 1; updates may be missing; continuing from 5\n")
}

// hinting fails at once and asks for a reconnection time, as an event
// stream's retry field does.
type hinting struct {
	mu       sync.Mutex
	attempts []time.Time
}

func (h *hinting) Receive(context.Context, *client.Session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts = append(h.attempts, time.Now())
	return errors.New("stream ended")
}

func (h *hinting) RetryDelay() (time.Duration, bool) { return 3 * time.Second, true }

func TestRun_WaitsAtLeastTheServersRetryBeforeReconnecting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		strategy := &hinting{}
		ctx, cancel := context.WithCancel(t.Context())
		var stderr testkit.Buffer
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = client.Run(ctx, strategy, client.NewSession(client.SessionOptions{Stdout: &stderr, Stderr: &stderr}), fastRetry, &stderr)
		}()

		time.Sleep(10 * time.Second) // synctest's clock
		cancel()
		testkit.Receive(t, done, "Run to return after its context ended")

		strategy.mu.Lock()
		defer strategy.mu.Unlock()
		require.Len(t, strategy.attempts, 4, "at 0s, 3s, 6s and 9s")
		for i := 1; i < len(strategy.attempts); i++ {
			assert.Equal(t, 3*time.Second, strategy.attempts[i].Sub(strategy.attempts[i-1]))
		}
	})
}

func TestSSE_TreatsASilentStreamAsDeadAndReconnects(t *testing.T) {
	streams := make(chan struct{}, 8)
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("event: hello\ndata: {\"last\":0,\"epoch\":\"run-1\"}\n\n"))
		w.(http.Flusher).Flush()
		streams <- struct{}{}
		<-r.Context().Done() // then nothing: no events, no heartbeats
	}))
	t.Cleanup(silent.Close)
	base, err := url.Parse(silent.URL)
	require.NoError(t, err)
	strategy, err := client.NewStrategy("sse", client.Config{Server: base, StreamIdle: 20 * time.Millisecond})
	require.NoError(t, err)

	r := receive(t, strategy, "sse", 0)

	testkit.Receive(t, streams, "the client to open the stream")
	testkit.Receive(t, streams, "the client to give up on the silent stream and connect again")
	assert.Contains(t, r.stderr.String(), "sse: event stream silent for 20ms; retrying in")
}
