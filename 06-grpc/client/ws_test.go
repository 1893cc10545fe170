package client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
)

func ws(tb testing.TB, base *url.URL) client.Strategy {
	tb.Helper()
	strategy, err := client.NewStrategy("ws", client.Config{Server: base, Interval: time.Hour, Wait: time.Minute})
	require.NoError(tb, err)
	return strategy
}

// sockets records the cursor each connection to /ws asks to resume after.
type sockets struct {
	mu     sync.Mutex
	afters []string
	opened chan struct{}
}

func newSockets() *sockets { return &sockets{opened: make(chan struct{}, 8)} }

func (c *sockets) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.afters = append(c.afters, r.URL.Query().Get("after"))
		c.mu.Unlock()
		c.opened <- struct{}{}
		next.ServeHTTP(w, r)
	})
}

// waitOpened waits for the next connection to reach the handler.
func (c *sockets) waitOpened(tb testing.TB) {
	tb.Helper()
	testkit.Receive(tb, c.opened, "the client to connect")
}

func (c *sockets) cursors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.afters...)
}

// fakeWS upgrades every request and hands the socket to serve, which plays a
// server that misbehaves. serve runs on the handler's goroutine: it may
// assert, not require. The test ends only after every serve has returned:
// httptest.Server.Close does not wait for a connection taken over.
func fakeWS(tb testing.TB, serve func(conn *websocket.Conn)) *url.URL {
	tb.Helper()
	var serving sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serving.Add(1)
		defer serving.Done()
		var upgrader websocket.Upgrader
		conn, err := upgrader.Upgrade(w, r, nil)
		if !assert.NoError(tb, err) {
			return
		}
		defer conn.Close()
		serve(conn)
	}))
	tb.Cleanup(func() {
		srv.Close() // no handler starts after it
		serving.Wait()
	})
	base, err := url.Parse(srv.URL)
	require.NoError(tb, err)
	return base
}

// readUntilClosed reads until the client goes away, answering its pings and
// its close as a server's read pump does.
func readUntilClosed(conn *websocket.Conn) {
	for {
		if _, _, err := conn.NextReader(); err != nil {
			return
		}
	}
}

const hello = `{"type":"hello","last":0,"epoch":"run-1"}`

func TestWS_PrintsEveryUpdateFromOneSocket(t *testing.T) {
	log := newLog(t, 16, "run-1")
	conns := newSockets()
	_, base := startTracked(t, log, conns.wrap)
	r := receive(t, ws(t, base), "ws", 0)

	conns.waitOpened(t)
	mustPublish(t, log, "a", "b", "c")

	assert.Equal(t, []string{"1 a", "2 b", "3 c"}, r.stdout.WaitForLines(t, 3))
	assert.Equal(t, []string{"0"}, conns.cursors(), "one socket for all three")
	assert.Empty(t, r.stderr.String())
}

func TestWS_ReconnectsWithItsCursorAndLosesNothing(t *testing.T) {
	log := newLog(t, 16, "run-1")
	conns := newSockets()
	tcp, base := startTracked(t, log, conns.wrap)
	r := receive(t, ws(t, base), "ws", 0)
	conns.waitOpened(t)
	mustPublish(t, log, "a", "b")
	r.stdout.WaitForLines(t, 2)

	tcp.CloseAll()           // the connection drops
	mustPublish(t, log, "c") // while the client is away
	conns.waitOpened(t)
	mustPublish(t, log, "d")

	assert.Equal(t, []string{"1 a", "2 b", "3 c", "4 d"}, r.stdout.WaitForLines(t, 4))
	assert.Equal(t, []string{"0", "run-1-2"}, conns.cursors(), "the reconnect says where it was, with the epoch")
}

func TestWS_KeepsTheRetryAfterOfARefusalBeforeTheUpgrade(t *testing.T) {
	busy := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			http.Error(w, "too many connections held open", http.StatusServiceUnavailable)
		})
	}
	base := startServer(t, newLog(t, 16, "run-1"), busy)
	var out testkit.Buffer

	err := ws(t, base).Receive(t.Context(), client.NewSession(client.SessionOptions{Stdout: &out, Stderr: &out}))

	var refused *client.RetryAfterError
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, 7*time.Second, refused.Delay, "Run waits as long as the server asked")
	assert.Contains(t, err.Error(), "503 Service Unavailable: too many connections held open")
}

func TestWS_TakesANewEpochOnlyWithItsReset(t *testing.T) {
	conns := newSockets()
	var serving sync.WaitGroup
	srv := httptest.NewServer(conns.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serving.Add(1)
		defer serving.Done()
		var upgrader websocket.Upgrader
		conn, err := upgrader.Upgrade(w, r, nil)
		if !assert.NoError(t, err) {
			return
		}
		// A server of another run says hello, and the connection drops
		// before the reset that would follow.
		defer conn.Close()
		assert.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello","last":9,"epoch":"run-2"}`)))
	})))
	t.Cleanup(func() {
		srv.Close()
		serving.Wait()
	})
	base, err := url.Parse(srv.URL)
	require.NoError(t, err)

	session := client.NewSession(client.SessionOptions{Strategy: "ws", After: 3, Epoch: "run-1", Stdout: io.Discard, Stderr: io.Discard})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- client.Run(ctx, ws(t, base), session, client.DefaultBackoff(), io.Discard) }()
	defer func() {
		cancel()
		testkit.Receive(t, ran, "Run to return")
	}()

	conns.waitOpened(t)
	conns.waitOpened(t)
	assert.Equal(t, []string{"run-1-3", "run-1-3"}, conns.cursors()[:2],
		"a hello alone does not move the cursor to another run: the next socket still hears of the gap")
}

func TestWS_ReturnsTheCloseCodeAndReasonTheServerSent(t *testing.T) {
	base := fakeWS(t, func(conn *websocket.Conn) {
		assert.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(hello)))
		closing := websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "too slow; resume with after=run-1-0")
		assert.NoError(t, conn.WriteControl(websocket.CloseMessage, closing, time.Now().Add(time.Second)))
		readUntilClosed(conn)
	})
	var out testkit.Buffer

	err := ws(t, base).Receive(t.Context(), client.NewSession(client.SessionOptions{Stdout: &out, Stderr: &out}))

	var closed *websocket.CloseError
	require.ErrorAs(t, err, &closed, "Run reconnects after it, from the session's cursor")
	assert.Equal(t, websocket.CloseTryAgainLater, closed.Code)
	assert.Equal(t, "too slow; resume with after=run-1-0", closed.Text)
}

func TestWS_RefusesAMessageItCannotRead(t *testing.T) {
	tests := []struct {
		name, message, want string
	}{
		{"a message that is not JSON", "taxi at the station", `ws message "taxi at the station": invalid character`},
		{"a message larger than the read limit", strings.Repeat("x", client.MaxMessageBytes+1), "read limit exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := fakeWS(t, func(conn *websocket.Conn) {
				assert.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(hello)))
				// The client may hang up before the whole message is sent:
				// that is what a read limit does.
				_ = conn.WriteMessage(websocket.TextMessage, []byte(tt.message))
				readUntilClosed(conn)
			})
			var out testkit.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), testkit.WaitTimeout)
			defer cancel()

			err := ws(t, base).Receive(ctx, client.NewSession(client.SessionOptions{Stdout: &out, Stderr: &out}))

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, out.String(), "nothing printed")
		})
	}
}

// wsWithIdle returns the WebSocket strategy with the given silence limit.
func wsWithIdle(tb testing.TB, base *url.URL, idle time.Duration) client.Strategy {
	tb.Helper()
	strategy, err := client.NewStrategy("ws", client.Config{Server: base, StreamIdle: idle})
	require.NoError(tb, err)
	return strategy
}

func TestWS_TreatsASilentPeerAsDeadAndReconnects(t *testing.T) {
	sockets := make(chan struct{}, 8)
	base := fakeWS(t, func(conn *websocket.Conn) {
		assert.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(hello)))
		conn.SetPingHandler(func(string) error { return nil }) // a peer that is gone answers nothing
		sockets <- struct{}{}
		readUntilClosed(conn)
	})

	r := receive(t, wsWithIdle(t, base, 20*time.Millisecond), "ws", 0)

	testkit.Receive(t, sockets, "the client to open the socket")
	testkit.Receive(t, sockets, "the client to give up on the silent peer and connect again")
	assert.Contains(t, r.stderr.String(), "ws: websocket silent for 20ms; retrying in")
}

func TestWS_PingsAQuietServerAndKeepsTheSocket(t *testing.T) {
	const idle = 600 * time.Millisecond // pings every 200ms: a pong late by up to 400ms still counts
	pings := make(chan struct{}, 1)
	sockets := make(chan struct{}, 8)
	base := fakeWS(t, func(conn *websocket.Conn) {
		assert.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(hello)))
		conn.SetPingHandler(func(data string) error {
			select {
			case pings <- struct{}{}:
			default:
			}
			// Answered as gorilla's default handler does: only the pong
			// keeps the quiet socket alive.
			return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		sockets <- struct{}{}
		readUntilClosed(conn)
	})

	r := receive(t, wsWithIdle(t, base, idle), "ws", 0)

	testkit.Receive(t, sockets, "the client to open the socket")
	for range 6 { // two idle periods and more, with nothing but pings and pongs
		testkit.Receive(t, pings, "the client's next ping")
	}
	assert.Empty(t, sockets, "the client kept its one socket")
	assert.Empty(t, r.stderr.String())
}

// duplex returns the WebSocket strategy that publishes each text sent on
// the channel it returns.
func duplex(tb testing.TB, base *url.URL) (client.Strategy, chan<- string) {
	tb.Helper()
	publish := make(chan string)
	strategy, err := client.NewStrategy("ws", client.Config{Server: base, Publish: publish})
	require.NoError(tb, err)
	return strategy, publish
}

// send hands text to the client, which takes it once it is connected.
func send(tb testing.TB, publish chan<- string, text string) {
	tb.Helper()
	select {
	case publish <- text:
	case <-time.After(testkit.WaitTimeout):
		tb.Fatalf("timed out after %v waiting for the client to take %q", testkit.WaitTimeout, text)
	}
}

func TestWS_PublishesThroughTheSocketAndReportsEachOutcome(t *testing.T) {
	log := newLog(t, 16, "run-1")
	_, base := startTracked(t, log, nil)
	strategy, publish := duplex(t, base)
	r := receive(t, strategy, "ws", 0)

	send(t, publish, "taxi at the station")
	send(t, publish, "   ")

	assert.Equal(t, []string{"1 taxi at the station"}, r.stdout.WaitForLines(t, 1), "the update comes back like any other")
	r.stderr.WaitForLines(t, 2)
	assert.Equal(t, []string{"published 1", "not published: " + feed.ErrEmpty.Error()}, r.stderr.Lines(),
		"outcomes go to stderr, in the order sent: stdout stays one line per update")
}

func TestWS_ReportsAPublishWhoseOutcomeNeverCameAndDoesNotSendItAgain(t *testing.T) {
	received := make(chan string, 8)
	base := fakeWS(t, func(conn *websocket.Conn) {
		assert.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(hello)))
		_, message, err := conn.ReadMessage()
		if err != nil {
			return // the client left
		}
		received <- string(message)
		// The connection drops before the outcome is sent: the server
		// may or may not have published it.
	})
	strategy, publish := duplex(t, base)
	r := receive(t, strategy, "ws", 0)

	send(t, publish, "taxi at the station")
	assert.Equal(t, `{"data":"taxi at the station"}`, testkit.Receive(t, received, "the publish"))
	r.stderr.WaitFor(t, `unknown outcome: the connection dropped before the server answered "taxi at the station"; not sent again, which could publish it twice`)
	send(t, publish, "arrived")

	assert.Equal(t, `{"data":"arrived"}`, testkit.Receive(t, received, "the next publish, on a new socket"),
		"the first is not sent again")
}
