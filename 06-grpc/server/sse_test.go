package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
)

// openStream connects to GET /events with the given query and headers, and
// returns the response and a parser reading its body. It closes both when
// the test ends. A stream in a test lasts at most testkit.WaitTimeout: headers
// that never come, or a read that would wait forever, fail the test instead.
func openStream(tb testing.TB, srv *httptest.Server, query string, header http.Header) (*http.Response, *client.EventStream) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events"+query, nil)
	require.NoError(tb, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err, "the stream's response headers")
	tb.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return resp, client.NewEventStream(resp.Body)
}

// nextEvent reads one event, failing the test if none comes in time.
func nextEvent(tb testing.TB, stream *client.EventStream) client.Event {
	tb.Helper()
	type result struct {
		e   client.Event
		err error
	}
	got := make(chan result, 1)
	go func() {
		e, err := stream.Next()
		got <- result{e, err}
	}()
	r := testkit.Receive(tb, got, "the next event")
	require.NoError(tb, r.err)
	return r.e
}

// skipHello reads the stream's first event, the hello, and returns it.
func skipHello(tb testing.TB, stream *client.EventStream) client.Event {
	tb.Helper()
	hello := nextEvent(tb, stream)
	require.Equal(tb, "hello", hello.Type)
	return hello
}

// updateEvent is the event of update u in the run "run-1": its id is the
// whole cursor, epoch included.
func updateEvent(tb testing.TB, u feed.Update) client.Event {
	tb.Helper()
	data, err := json.Marshal(u)
	require.NoError(tb, err)
	return client.Event{Type: "message", Data: string(data), LastEventID: fmt.Sprint("run-1-", u.ID)}
}

func TestSSE_PushesEveryUpdateOnOneConnection(t *testing.T) {
	srv, log := start(t, 8)
	resp, stream := openStream(t, srv, "", nil)
	skipHello(t, stream)

	var want, got []client.Event
	for _, text := range []string{"a", "b", "c"} {
		e, err := log.Publish(text)
		require.NoError(t, err)
		want = append(want, updateEvent(t, e.Update))
		got = append(got, nextEvent(t, stream))
	}

	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	assert.Equal(t, "no", resp.Header.Get("X-Accel-Buffering"), "nginx must not buffer the stream")
}

func TestSSE_AnswersHeadWithTheHeadersAlone(t *testing.T) {
	srv, _ := start(t, 8)

	resp, body := get(t, srv, http.MethodHead, "/events", nil)

	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	assert.Empty(t, body, "a HEAD answer has no body, and ends")
}

func TestSSE_FramesTheStreamAsTheProtocolSays(t *testing.T) {
	srv, log := start(t, 8)
	resp, _ := openStream(t, srv, "", nil)
	lines := bufio.NewReader(resp.Body)
	readUntilBlank := func() string {
		var event strings.Builder
		for {
			line, err := lines.ReadString('\n')
			require.NoError(t, err)
			if line == "\n" {
				return event.String()
			}
			event.WriteString(line)
		}
	}

	assert.Equal(t, "retry: 2000\nevent: hello\ndata: {\"last\":0,\"epoch\":\"run-1\"}\n", readUntilBlank())
	e, err := log.Publish(`taxi "at" the station`)
	require.NoError(t, err)
	data, err := json.Marshal(e.Update)
	require.NoError(t, err)
	assert.Equal(t, "id: run-1-1\ndata: "+string(data)+"\n", readUntilBlank(), "one event per update: the cursor as id, then the update JSON")
}

func TestSSE_ResumesFromLastEventID(t *testing.T) {
	srv, log := start(t, 8)
	all := publishAll(t, log, "a", "b", "c")

	for _, id := range []string{"run-1-1", "1"} { // the id as sent, or a bare one
		t.Run(id, func(t *testing.T) {
			_, stream := openStream(t, srv, "?after=0", http.Header{"Last-Event-Id": {id}}) // the header wins
			skipHello(t, stream)

			got := []client.Event{nextEvent(t, stream), nextEvent(t, stream)}
			want := []client.Event{updateEvent(t, all[1]), updateEvent(t, all[2])}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("the history after 1: mismatch (-want +got):\n%s", diff)
			}
		})
	}
	_, stream := openStream(t, srv, "", http.Header{"Last-Event-Id": {"run-1-3"}})
	skipHello(t, stream)
	d := publishAll(t, log, "d")
	if diff := cmp.Diff(updateEvent(t, d[0]), nextEvent(t, stream)); diff != "" {
		t.Errorf("then live: mismatch (-want +got):\n%s", diff)
	}
}

func TestSSE_NeitherSkipsNorRepeatsUpdatesPublishedDuringTheReplay(t *testing.T) {
	const total = 300
	log, err := feed.New(total, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	// A queue that holds the whole burst: this test is about the replay, not
	// about dropping a subscriber that falls behind (that has its own test).
	srv := httptest.NewServer(server.New(log, server.WithQueue(total)))
	t.Cleanup(srv.Close)
	publishAll(t, log, "first")
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range total - 1 {
			_, err := log.Publish(fmt.Sprint(i)) // races the replay below
			assert.NoError(t, err)
		}
	}()

	_, stream := openStream(t, srv, "?after=0", nil)
	skipHello(t, stream)
	for id := 1; id <= total; id++ {
		e := nextEvent(t, stream)
		require.Equal(t, fmt.Sprint("run-1-", id), e.LastEventID, "ids arrive once each, in order")
	}
	testkit.Receive(t, published, "the publisher to finish")
}

func TestSSE_SendsResetWhenTheCursorCannotBeServed(t *testing.T) {
	srv, log := start(t, 2)
	publishAll(t, log, "a", "b", "c", "d") // holds 3 and 4
	tests := []struct{ name, lastEventID string }{
		{"older than the history", "run-1-1"},
		{"ahead of the newest update", "run-1-9"},
		{"ahead, with no epoch", "9"},
		{"from an earlier server run, as a stock EventSource sends it back", "run-0-4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stream := openStream(t, srv, "", http.Header{"Last-Event-Id": {tt.lastEventID}})
			skipHello(t, stream)

			reset := nextEvent(t, stream)

			want := client.Event{Type: "reset", Data: `{"last":4,"epoch":"run-1"}`, LastEventID: "run-1-4"}
			if diff := cmp.Diff(want, reset); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSSE_RefusesMalformedCursors(t *testing.T) {
	srv, _ := start(t, 8)
	tests := []struct {
		name, query, lastEventID, reason string
	}{
		{"a Last-Event-ID that is not an id", "", "abc", `Last-Event-ID: "abc" is not an update id such as 42, or EPOCH-42`},
		{"a Last-Event-ID with a mangled epoch", "", "run 1-4", `Last-Event-ID: "run 1-4": the epoch may hold only letters, digits, '-' and '_'`},
		{"a negative after", "?after=-1", "", `after: "-1" is not an update id such as 42, or EPOCH-42`},
		{"after given twice", "?after=1&after=2", "", "after: given 2 times; give it once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/events"+tt.query, nil)
			require.NoError(t, err)
			if tt.lastEventID != "" {
				req.Header.Set("Last-Event-ID", tt.lastEventID)
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			assert.Equal(t, tt.reason+"\n", string(body))
		})
	}
}

func TestSSE_OutlivesTheServersWriteTimeout(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	api := server.New(log)
	srv := httptest.NewUnstartedServer(api)
	srv.Config.WriteTimeout = time.Nanosecond // over before the first byte of any answer
	srv.Start()
	t.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(t, api)
	_, stream := openStream(t, srv, "", nil)
	skipHello(t, stream)

	e, err := log.Publish("still streaming")
	require.NoError(t, err)

	if diff := cmp.Diff(updateEvent(t, e.Update), nextEvent(t, stream)); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestSSE_EndsTheStreamWhenTheServerShutsDown(t *testing.T) {
	log, err := feed.New(8)
	require.NoError(t, err)
	api := server.New(log)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	_, stream := openStream(t, srv, "", nil)
	skipHello(t, stream)

	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	require.NoError(t, api.Shutdown(ctx), "every stream has ended when Shutdown returns")

	ended := make(chan error, 1)
	go func() {
		_, err := stream.Next()
		ended <- err
	}()
	assert.ErrorIs(t, testkit.Receive(t, ended, "the stream to end"), io.EOF, "a clean end, not a reset connection")
}

func TestSSE_StreamsOverHTTP2Too(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	api := server.New(log)
	srv := httptest.NewUnstartedServer(api)
	srv.EnableHTTP2 = true // one connection carries many requests: it cannot be hijacked
	srv.StartTLS()
	t.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(t, api)
	// Headers that never come fail the test, at the end of WaitTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	t.Cleanup(cancel) // before srv.Close: the stream ends when its client leaves
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	require.NoError(t, err)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 2, resp.ProtoMajor)
	stream := client.NewEventStream(resp.Body)
	skipHello(t, stream)

	e, err := log.Publish("over h2")
	require.NoError(t, err)

	if diff := cmp.Diff(updateEvent(t, e.Update), nextEvent(t, stream)); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

// streamWriter is a ResponseWriter for handlers run inside a synctest
// bubble: safe to read while the handler writes, and able to stall writes the
// way a client that stopped reading does.
type streamWriter struct {
	header http.Header
	mu     sync.Mutex
	body   strings.Builder
	stall  chan struct{} // while not nil, writes wait until it is closed
}

func newStreamWriter() *streamWriter { return &streamWriter{header: make(http.Header)} }

func (w *streamWriter) Header() http.Header { return w.header }
func (w *streamWriter) WriteHeader(int)     {}
func (w *streamWriter) Flush()              {}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	stall := w.stall
	w.mu.Unlock()
	if stall != nil {
		<-stall
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.body.Write(p)
}

func (w *streamWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.body.String()
}

// serveInBubble runs the handler for GET /events in the background and
// returns a channel closed when it returns.
func serveInBubble(ctx context.Context, handler http.Handler, w http.ResponseWriter) chan struct{} {
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		handler.ServeHTTP(w, httptest.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/events", nil))
	}()
	return returned
}

func TestSSE_SendsAHeartbeatCommentAtTheInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(8)
		require.NoError(t, err)
		handler := server.New(log, server.WithHeartbeat(15*time.Second))
		w := newStreamWriter()
		ctx, leave := context.WithCancel(t.Context())
		defer leave()
		serveInBubble(ctx, handler, w)

		synctest.Wait()
		assert.NotContains(t, w.String(), ": ping", "not before the interval")
		time.Sleep(15 * time.Second) // synctest's clock: instant
		synctest.Wait()
		assert.Equal(t, 1, strings.Count(w.String(), ": ping\n\n"))
		time.Sleep(30 * time.Second)
		synctest.Wait()
		assert.Equal(t, 3, strings.Count(w.String(), ": ping\n\n"))
	})
}

func TestSSE_EndsTheStreamWhenTheClientGoesAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(8)
		require.NoError(t, err)
		ctx, leave := context.WithCancel(t.Context())
		returned := serveInBubble(ctx, server.New(log), newStreamWriter())

		synctest.Wait()
		leave()
		synctest.Wait()

		select {
		case <-returned:
		default:
			t.Fatal("the stream goes on after its client left")
		}
	})
}

func TestSSE_DisconnectsASubscriberThatCannotKeepUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(64)
		require.NoError(t, err)
		handler := server.New(log, server.WithQueue(4))
		slow := newStreamWriter()
		returned := serveInBubble(t.Context(), handler, slow)
		_, _, fast, err := log.SubscribeAfter(feed.Cursor{}, 64)
		require.NoError(t, err)
		defer fast.Close()
		synctest.Wait() // the stream has sent its hello and waits for updates

		stall := make(chan struct{})
		slow.mu.Lock()
		slow.stall = stall // the client stops reading
		slow.mu.Unlock()
		for i := range 10 {
			_, err := log.Publish(fmt.Sprint(i)) // never waits for the stalled client
			require.NoError(t, err)
		}
		for i := range 10 {
			assert.Equal(t, fmt.Sprint(i), testkit.Receive(t, fast.Updates(), "the next update").Data, "the others get everything")
		}
		close(stall) // the write in progress completes...
		synctest.Wait()

		select {
		case <-returned: // ...and the stream ends: the client reconnects with its last id
		default:
			t.Fatal("a subscriber that fell behind is still streaming")
		}
		assert.NotContains(t, slow.String(), `"data":"9"`, "it was dropped, not waited for")
	})
}

// socketBuffer is the size asked for the socket buffers in
// TestSSE_DisconnectsAClientThatStopsReadingItsConnection (Linux doubles it):
// small, so that a few updates fill them, where the kernel would let them
// grow to megabytes. Not smaller: below twice the loopback segment size
// (64 KiB), TCP's silly-window avoidance leaves the transfer to window probes
// and a test that reads a few updates takes seconds.
const socketBuffer = 64 << 10

// smallBuffers is a listener whose connections have socketBuffer-sized send
// buffers. It returns each *net.TCPConn as it is, so the handler can still
// hijack it.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if tcp, ok := conn.(*net.TCPConn); ok {
		// It fails only on a closed connection, which the server finds out
		// by itself.
		_ = tcp.SetWriteBuffer(socketBuffer)
	}
	return conn, err
}

// TestSSE_DisconnectsAClientThatStopsReadingItsConnection is the test above
// on the path a real HTTP/1.1 client takes: the handler hijacks the
// connection and the stream runs detached, writing to a TCP socket. The
// client stops reading, so the stream's write blocks once the socket buffers
// are full, and the queue overflows behind it. When the client reads again,
// it gets what was sent or queued before the drop, in order, and then the
// end of the stream: not the rest, and not a connection left open.
func TestSSE_DisconnectsAClientThatStopsReadingItsConnection(t *testing.T) {
	const queue, published = 4, 20 // 20 updates of 64 KiB: more than the buffers and the queue hold
	log, err := feed.New(published, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	api := server.New(log, server.WithQueue(queue))
	srv := httptest.NewUnstartedServer(api)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(t, api)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(socketBuffer))
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(testkit.WaitTimeout)), "a stream left open fails the test, not hangs it")
	_, err = fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: %s\r\n\r\n", srv.Listener.Addr())
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	stream := client.NewEventStream(resp.Body)
	hello, err := stream.Next()
	require.NoError(t, err)
	require.Equal(t, "hello", hello.Type, "the stream is open, its subscription made")

	for range published { // the client reads nothing now
		_, err := log.Publish(strings.Repeat("x", feed.MaxDataBytes)) // never waits for the client
		require.NoError(t, err)
	}

	var ids []string // the client reads again: what was sent, and then the end
	for {
		e, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "the server ends the stream; got ids %v", ids)
		ids = append(ids, e.LastEventID)
	}
	require.NotEmpty(t, ids, "what was queued is still sent")
	assert.Less(t, len(ids), published, "dropped, not waited for: got ids %v", ids)
	for i, id := range ids {
		assert.Equal(t, fmt.Sprint("run-1-", i+1), id, "in order, none skipped")
	}
}

func publishAll(tb testing.TB, log *feed.Log, texts ...string) []feed.Update {
	tb.Helper()
	var out []feed.Update
	for _, text := range texts {
		e, err := log.Publish(text)
		require.NoError(tb, err)
		out = append(out, e.Update)
	}
	return out
}
