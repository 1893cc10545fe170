package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	"realtime/03-sse/client"
	"realtime/03-sse/feed"
	"realtime/03-sse/internal/testkit"
	"realtime/03-sse/server"
)

// openStream connects to GET /events with the given query and headers, and
// returns the response and a parser reading its body. It closes both when
// the test ends.
func openStream(tb testing.TB, srv *httptest.Server, query string, header http.Header) (*http.Response, *client.EventStream) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events"+query, nil)
	require.NoError(tb, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req) // no timeout: a stream is meant to last
	require.NoError(tb, err)
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
	r := receive(tb, got, "the next event")
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

func updateEvent(tb testing.TB, u feed.Update) client.Event {
	tb.Helper()
	data, err := json.Marshal(u)
	require.NoError(tb, err)
	return client.Event{Type: "message", Data: string(data), LastEventID: fmt.Sprint(u.ID)}
}

func TestSSE_PushesEveryUpdateOnOneConnection(t *testing.T) {
	srv, log := start(t, 8)
	resp, stream := openStream(t, srv, "", nil)
	skipHello(t, stream)

	var want, got []client.Event
	for _, text := range []string{"a", "b", "c"} {
		u, err := log.Publish(text)
		require.NoError(t, err)
		want = append(want, updateEvent(t, u))
		got = append(got, nextEvent(t, stream))
	}

	assert.Empty(t, cmp.Diff(want, got), "(-want +got)")
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
	u, err := log.Publish(`taxi "at" the station`)
	require.NoError(t, err)
	data, err := json.Marshal(u)
	require.NoError(t, err)
	assert.Equal(t, "id: 1\ndata: "+string(data)+"\n", readUntilBlank(), "one event per update: id, then the update JSON")
}

func TestSSE_ResumesFromLastEventID(t *testing.T) {
	srv, log := start(t, 8)
	all := publishAll(t, log, "a", "b", "c")

	_, stream := openStream(t, srv, "?after=0", http.Header{"Last-Event-Id": {"1"}}) // the header wins
	skipHello(t, stream)
	d, err := log.Publish("d")
	require.NoError(t, err)

	got := []client.Event{nextEvent(t, stream), nextEvent(t, stream), nextEvent(t, stream)}
	want := []client.Event{updateEvent(t, all[1]), updateEvent(t, all[2]), updateEvent(t, d)}
	assert.Empty(t, cmp.Diff(want, got), "history after 1, then live (-want +got)")
}

func TestSSE_ResumesFromAfterOnTheFirstConnect(t *testing.T) {
	srv, log := start(t, 8)
	all := publishAll(t, log, "a", "b", "c")

	_, stream := openStream(t, srv, "?after=2", nil)
	skipHello(t, stream)

	assert.Empty(t, cmp.Diff(updateEvent(t, all[2]), nextEvent(t, stream)), "(-want +got)")
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
		require.Equal(t, fmt.Sprint(id), e.LastEventID, "ids arrive once each, in order")
	}
	<-published
}

func TestSSE_SendsResetWhenTheCursorCannotBeServed(t *testing.T) {
	srv, log := start(t, 2)
	publishAll(t, log, "a", "b", "c", "d") // holds 3 and 4
	tests := []struct{ name, query, lastEventID string }{
		{"older than the history", "", "1"},
		{"ahead of the newest update", "", "9"},
		{"from an earlier server run", "?epoch=run-0", "4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stream := openStream(t, srv, tt.query, http.Header{"Last-Event-Id": {tt.lastEventID}})
			skipHello(t, stream)

			reset := nextEvent(t, stream)

			want := client.Event{Type: "reset", Data: `{"last":4,"epoch":"run-1"}`, LastEventID: "4"}
			assert.Empty(t, cmp.Diff(want, reset), "(-want +got)")
		})
	}
}

func TestSSE_RefusesMalformedCursors(t *testing.T) {
	srv, _ := start(t, 8)
	tests := []struct {
		name, query, lastEventID, reason string
	}{
		{"a Last-Event-ID that is not an id", "", "abc", `Last-Event-ID: "abc" is not a non-negative decimal integer`},
		{"a negative after", "?after=-1", "", `after: "-1" is not a non-negative decimal integer`},
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

	u, err := log.Publish("still streaming")
	require.NoError(t, err)

	assert.Empty(t, cmp.Diff(updateEvent(t, u), nextEvent(t, stream)), "(-want +got)")
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
	assert.ErrorIs(t, receive(t, ended, "the stream to end"), io.EOF, "a clean end, not a reset connection")
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
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before srv.Close: the stream ends when its client leaves
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	require.NoError(t, err)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 2, resp.ProtoMajor)
	stream := client.NewEventStream(resp.Body)
	skipHello(t, stream)

	u, err := log.Publish("over h2")
	require.NoError(t, err)

	assert.Empty(t, cmp.Diff(updateEvent(t, u), nextEvent(t, stream)), "(-want +got)")
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
		handler.ServeHTTP(w, httptest.NewRequestWithContext(ctx, http.MethodGet, "/events", nil))
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
		fast := log.Subscribe(64)
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
			assert.Equal(t, fmt.Sprint(i), (<-fast.Updates()).Data, "the others get everything")
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

func publishAll(tb testing.TB, log *feed.Log, texts ...string) []feed.Update {
	tb.Helper()
	var out []feed.Update
	for _, text := range texts {
		u, err := log.Publish(text)
		require.NoError(tb, err)
		out = append(out, u)
	}
	return out
}
