package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
)

// dialWS opens a WebSocket to GET /ws with the given query and headers, and
// closes it when the test ends. A handshake that is refused fails the test
// with the server's answer.
func dialWS(tb testing.TB, srv *httptest.Server, query string, header http.Header) *websocket.Conn {
	tb.Helper()
	ws, _, err := tryDialWS(tb, srv, query, header)
	require.NoError(tb, err, "the handshake")
	return ws
}

// tryDialWS opens a WebSocket as dialWS does, but returns a refusal: the
// answer, and an error that says its status.
func tryDialWS(tb testing.TB, srv *httptest.Server, query string, header http.Header) (*websocket.Conn, *http.Response, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws" + query
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, url, header)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body = io.NopCloser(bytes.NewReader(body)) // for the caller to read too
			err = fmt.Errorf("%w: %s: %s", err, resp.Status, body)
		}
		return nil, resp, err
	}
	tb.Cleanup(func() { ws.Close() })
	return ws, resp, nil
}

// nextMessage reads the socket's next message, failing the test if none
// comes in time, or if it is not a text message.
func nextMessage(tb testing.TB, ws *websocket.Conn) string {
	tb.Helper()
	type result struct {
		kind int
		data []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		kind, data, err := ws.ReadMessage()
		got <- result{kind, data, err}
	}()
	r := testkit.Receive(tb, got, "the next message")
	require.NoError(tb, r.err)
	require.Equal(tb, websocket.TextMessage, r.kind, "a text message")
	return string(r.data)
}

// updateJSON is update u as every transport carries it.
func updateJSON(tb testing.TB, u feed.Update) string {
	tb.Helper()
	data, err := json.Marshal(u)
	require.NoError(tb, err)
	return string(data)
}

// sendText writes one text message to the socket.
func sendText(tb testing.TB, ws *websocket.Conn, message string) {
	tb.Helper()
	require.NoError(tb, ws.SetWriteDeadline(time.Now().Add(testkit.WaitTimeout)))
	require.NoError(tb, ws.WriteMessage(websocket.TextMessage, []byte(message)))
}

func TestWS_PublishesWhatTheClientSendsAndAnswersWithTheNewID(t *testing.T) {
	srv, log := start(t, 8)
	sender := dialWS(t, srv, "", nil)
	nextMessage(t, sender) // hello
	other := dialWS(t, srv, "", nil)
	nextMessage(t, other) // hello

	sendText(t, sender, `{"data":"taxi at the station"}`)

	var u feed.Update
	require.NoError(t, json.Unmarshal([]byte(nextMessage(t, other)), &u), "the update the other socket got")
	assert.Equal(t, feed.Update{ID: 1, Data: "taxi at the station", Time: u.Time}, u)
	// The sender gets the outcome and the update itself, in either order.
	got := []string{nextMessage(t, sender), nextMessage(t, sender)}
	slices.Sort(got) // `{"id"...` before `{"type"...`
	assert.JSONEq(t, updateJSON(t, u), got[0], "the update")
	assert.JSONEq(t, `{"type":"published","id":1}`, got[1], "the outcome")
	assert.Equal(t, uint64(1), log.Last())
}

func TestWS_AnswersARefusedPublishWithTheReasonAndStaysOpen(t *testing.T) {
	srv, log := start(t, 8)
	ws := dialWS(t, srv, "", nil)
	nextMessage(t, ws) // hello

	sendText(t, ws, `{"data":"  "}`)
	assert.JSONEq(t, `{"type":"error","reason":"update text is empty or only white space"}`, nextMessage(t, ws))

	sendText(t, ws, `{"data":"still open"}`)
	assert.Contains(t, nextMessage(t, ws)+nextMessage(t, ws), `"published"`)
	assert.Equal(t, uint64(1), log.Last())
}

// nextClose reads until the server closes the socket, failing the test if it
// does not in time, and returns the close frame: its code and reason.
func nextClose(tb testing.TB, ws *websocket.Conn) *websocket.CloseError {
	tb.Helper()
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	err := testkit.Receive(tb, closed, "the close frame")
	var closeErr *websocket.CloseError
	require.ErrorAs(tb, err, &closeErr, "the socket ends with a close frame")
	return closeErr
}

func TestWS_ClosesWithACodeThatSaysWhatWasWrongWithAMessage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kind    int
		message string
		code    int
	}{
		{"a binary message", websocket.BinaryMessage, `{"data":"x"}`, websocket.CloseUnsupportedData},
		{"text that is not JSON", websocket.TextMessage, `taxi at the station`, websocket.CloseUnsupportedData},
		{"JSON of another shape", websocket.TextMessage, `{"text":"taxi"}`, websocket.CloseUnsupportedData},
		{"JSON with more after it", websocket.TextMessage, `{"data":"a"} {"data":"b"}`, websocket.CloseUnsupportedData},
		{"bytes that are not UTF-8", websocket.TextMessage, "{\"data\":\"caf\xe9\"}", websocket.CloseInvalidFramePayloadData},
		{"a message larger than any publish", websocket.TextMessage, `{"data":"` + strings.Repeat("x", 1<<20) + `"}`, websocket.CloseMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, log := start(t, 8)
			ws := dialWS(t, srv, "", nil)
			nextMessage(t, ws) // hello
			other := dialWS(t, srv, "", nil)
			nextMessage(t, other) // hello

			require.NoError(t, ws.WriteMessage(tc.kind, []byte(tc.message)))
			closed := nextClose(t, ws)

			assert.Equal(t, tc.code, closed.Code, "the close code")
			assert.NotEmpty(t, closed.Text, "the reason")
			assert.Zero(t, log.Last(), "nothing is published")
			u := testkit.Publish(t, srv.URL, "for the others")
			assert.JSONEq(t, updateJSON(t, u), nextMessage(t, other), "the other sockets lose nothing")
		})
	}
}

func TestWS_PublishesTheLargestTextEvenWithEveryByteEscaped(t *testing.T) {
	srv, log := start(t, 8)
	ws := dialWS(t, srv, "", nil)
	nextMessage(t, ws) // hello
	text := strings.Repeat("\x01", feed.MaxDataBytes)
	message, err := json.Marshal(map[string]string{"data": text}) // \u0001: six bytes for each one
	require.NoError(t, err)

	sendText(t, ws, string(message))

	got := []string{nextMessage(t, ws), nextMessage(t, ws)}
	slices.Sort(got)
	assert.JSONEq(t, `{"type":"published","id":1}`, got[1])
	e, _, err := log.After(feed.Cursor{}, feed.Limit{Updates: 1, Bytes: 1 << 20})
	require.NoError(t, err)
	require.Len(t, e, 1)
	assert.Equal(t, text, e[0].Data)
}

func TestWS_RefusesAPageOfAnotherOriginBeforeTheUpgrade(t *testing.T) {
	srv, log := startWith(t, server.WithAllowedOrigins("https://app.example"))
	for _, origin := range []string{"http://attacker.example", "null", "https://app.example:8443", "http://app.example"} {
		t.Run(origin, func(t *testing.T) {
			_, resp, err := tryDialWS(t, srv, "", http.Header{"Origin": {origin}})

			require.Error(t, err, "no socket")
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Contains(t, err.Error(), "-allow-origin", "the reason says how to allow it")
		})
	}
	assert.Zero(t, log.Last())
}

func TestWS_AcceptsItsOwnPagesAndTheOriginsAllowed(t *testing.T) {
	srv, _ := startWith(t, server.WithAllowedOrigins("https://app.example"))
	for _, origin := range []string{"", srv.URL, "https://app.example"} {
		t.Run("origin "+origin, func(t *testing.T) {
			header := http.Header{}
			if origin != "" {
				header.Set("Origin", origin)
			}
			ws := dialWS(t, srv, "", header)
			assert.JSONEq(t, `{"type":"hello","last":0,"epoch":"run-1"}`, nextMessage(t, ws))
		})
	}
}

func TestWS_ClosesASocketThatFallsBehindAndItResumesFromItsCursor(t *testing.T) {
	log, err := feed.New(1024, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	api := server.New(log, server.WithMaxHeld(1)) // the socket that resumes needs the slow one's place
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(t, api)
	slow := dialWS(t, srv, "", nil)
	nextMessage(t, slow) // hello, then it stops reading

	// 32 MiB: more than the kernel buffers on both ends of a loopback
	// connection hold, so that the socket's writes stop, and its queue fills.
	// Publish returns every time: a slow socket holds up nobody.
	text := strings.Repeat("x", 32<<10)
	for range 1024 {
		_, err := log.Publish(text)
		require.NoError(t, err)
	}

	var last feed.Update
	closed := make(chan *websocket.CloseError, 1)
	go func() {
		defer close(closed)
		for {
			_, message, err := slow.ReadMessage()
			var closeErr *websocket.CloseError
			if errors.As(err, &closeErr) {
				closed <- closeErr
				return
			}
			if err != nil || json.Unmarshal(message, &last) != nil {
				return
			}
		}
	}()
	frame := testkit.Receive(t, closed, "the close frame")
	require.NotNil(t, frame, "the socket ends with a close frame")
	assert.Equal(t, websocket.CloseTryAgainLater, frame.Code)
	assert.Equal(t, fmt.Sprintf("too slow; resume with after=run-1-%d", last.ID), frame.Text)
	require.Less(t, last.ID, uint64(1024), "the socket was closed before it caught up")

	var resumed *websocket.Conn
	require.Eventually(t, func() bool {
		resumed, _, err = tryDialWS(t, srv, fmt.Sprintf("?after=run-1-%d", last.ID), nil)
		return err == nil
	}, testkit.WaitTimeout, 10*time.Millisecond, "the closed socket gives back its place")
	assert.JSONEq(t, `{"type":"hello","last":1024,"epoch":"run-1"}`, nextMessage(t, resumed))
	var next feed.Update
	require.NoError(t, json.Unmarshal([]byte(nextMessage(t, resumed)), &next))
	assert.Equal(t, last.ID+1, next.ID, "it continues where it stopped")
}

// keepReading reads the socket on a goroutine of its own until it fails,
// answering pings as answer says, and reports each ping on pings and the end
// of the connection on ended.
func keepReading(ws *websocket.Conn, answer bool) (pings <-chan struct{}, ended <-chan error) {
	pinged := make(chan struct{}, 100)
	done := make(chan error, 1)
	ws.SetPingHandler(func(data string) error {
		pinged <- struct{}{}
		if !answer {
			return nil
		}
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(testkit.WaitTimeout))
	})
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				done <- err
				return
			}
		}
	}()
	return pinged, done
}

func TestWS_ClosesAPeerThatStopsAnsweringPings(t *testing.T) {
	srv, _ := startWith(t, server.WithKeepalive(50*time.Millisecond, 400*time.Millisecond))
	ws := dialWS(t, srv, "", nil)

	pings, ended := keepReading(ws, false)

	testkit.Receive(t, pings, "a ping")
	testkit.Receive(t, ended, "the server to give up on the silent peer")
}

func TestWS_KeepsAPeerThatAnswersPings(t *testing.T) {
	srv, _ := startWith(t, server.WithKeepalive(50*time.Millisecond, 400*time.Millisecond))
	ws := dialWS(t, srv, "", nil)

	pings, ended := keepReading(ws, true)

	for range 10 { // 500ms: longer than the server waits for a pong
		testkit.Receive(t, pings, "a ping")
	}
	select {
	case err := <-ended:
		t.Fatalf("the socket ended: %v", err)
	default:
	}
}

func TestWS_TakesAPlaceAmongTheHeldRequestsUntilItCloses(t *testing.T) {
	srv, _ := startWith(t, server.WithMaxHeld(1))
	first := dialWS(t, srv, "", nil)
	nextMessage(t, first) // hello: the socket is open, and holds the only place

	_, resp, err := tryDialWS(t, srv, "", nil)

	require.Error(t, err, "no second socket")
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
	require.NoError(t, first.Close())
	assert.Eventually(t, func() bool {
		ws, _, err := tryDialWS(t, srv, "", nil)
		if err == nil {
			ws.Close()
		}
		return err == nil
	}, testkit.WaitTimeout, 10*time.Millisecond, "the place is free again once the first socket closes")
}

// startShutdownable runs the real handler, built with opts, and leaves its
// Shutdown to the test.
func startShutdownable(tb testing.TB, opts ...server.Option) (*httptest.Server, *feed.Log, *server.Server) {
	tb.Helper()
	log, err := feed.New(1024, feed.WithEpoch("run-1"))
	require.NoError(tb, err)
	api := server.New(log, opts...)
	srv := httptest.NewServer(api)
	tb.Cleanup(srv.Close)
	return srv, log, api
}

func TestWS_ShutdownSaysGoingAwayToEverySocket(t *testing.T) {
	srv, _, api := startShutdownable(t)
	var sockets []*websocket.Conn
	for range 3 {
		ws := dialWS(t, srv, "", nil)
		nextMessage(t, ws) // hello
		sockets = append(sockets, ws)
	}

	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	require.NoError(t, api.Shutdown(ctx))

	for i, ws := range sockets {
		closed := nextClose(t, ws)
		assert.Equal(t, websocket.CloseGoingAway, closed.Code, "socket %d", i)
		assert.Equal(t, "server shutting down", closed.Text, "socket %d", i)
	}
}

func TestWS_ShutdownDoesNotWaitForASocketThatStoppedReading(t *testing.T) {
	// A queue longer than what is published: the socket is not dropped for
	// falling behind, and its write stays stuck.
	srv, log, api := startShutdownable(t, server.WithQueue(2048))
	stuck := dialWS(t, srv, "", nil)
	nextMessage(t, stuck) // hello, then it stops reading
	// 32 MiB: more than the kernel buffers on both ends of a loopback
	// connection hold, so that the server's write to the socket blocks.
	text := strings.Repeat("x", 32<<10)
	for range 1024 {
		_, err := log.Publish(text)
		require.NoError(t, err)
	}

	// The shutdown timeout of cmd/server: shorter than a write may take
	// (10s), so the stuck write must be ended, not waited for.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	assert.NoError(t, api.Shutdown(ctx))
}

func TestWS_AnswersAClientsCloseWithItsCode(t *testing.T) {
	srv, _ := start(t, 8)
	ws := dialWS(t, srv, "", nil)
	nextMessage(t, ws) // hello

	bye := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	require.NoError(t, ws.WriteControl(websocket.CloseMessage, bye, time.Now().Add(testkit.WaitTimeout)))

	assert.Equal(t, websocket.CloseNormalClosure, nextClose(t, ws).Code)
}
