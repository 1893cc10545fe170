package fuzz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
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
	"go.uber.org/goleak"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/server"
	"realtime/06-grpc/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// FuzzParseCursor: any text either fails to parse or parses to a cursor
// that prints back to a text that parses to the same cursor.
func FuzzParseCursor(f *testing.F) {
	for _, seed := range []string{"0", "42", "0123456789abcdef-7", "0123456789abcdef-0", "-1", "18446744073709551616", "abc-1", "0123456789ABCDEF-1", " 1", "1e3", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := feed.ParseCursor(s)
		if err != nil {
			return
		}
		again, err := feed.ParseCursor(c.String())
		require.NoError(t, err, "%q printed as %q", s, c.String())
		assert.Equal(t, c, again)
	})
}

// handlerServer is the chapter's handler on a real listener, with a log
// that holds a few updates, and a record of any panic net/http recovered.
// Its client and dialer count the connections they open, so that the
// cleanup can wait until each is closed: a fuzzing worker checks for leaked
// goroutines as soon as the cleanup returns, and a connection's goroutines
// end only once it is closed.
type handlerServer struct {
	url    *url.URL
	client *http.Client
	dialer *websocket.Dialer
	open   sync.WaitGroup // connections the client or dialer opened, not yet closed
	mu     sync.Mutex
	errlog bytes.Buffer
}

// dial opens a connection counted in h.open until it is closed.
func (h *handlerServer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	h.open.Add(1)
	return &countedConn{Conn: conn, done: h.open.Done}, nil
}

// countedConn calls done when it is first closed.
type countedConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.done)
	return err
}

func (h *handlerServer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errlog.Write(p)
}

func (h *handlerServer) panicked() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if strings.Contains(h.errlog.String(), "panic") {
		return h.errlog.String()
	}
	return ""
}

func startHandler(f *testing.F) *handlerServer {
	f.Helper()
	l, err := feed.New(16)
	require.NoError(f, err)
	for _, text := range []string{"a", "b", "c"} {
		_, err := l.Publish(text)
		require.NoError(f, err)
	}
	h := &handlerServer{}
	transport := &http.Transport{DialContext: h.dial}
	h.client = &http.Client{Transport: transport}
	h.dialer = &websocket.Dialer{NetDialContext: h.dial, HandshakeTimeout: 5 * time.Second}
	api := server.New(l)
	srv := httptest.NewUnstartedServer(api)
	srv.Config.ErrorLog = log.New(h, "", 0)
	srv.Start()
	f.Cleanup(func() {
		transport.CloseIdleConnections()
		srv.CloseClientConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = api.Shutdown(ctx)
		srv.Close()
		// The server has closed its ends; each client connection closes
		// when its reader sees that. A connection still open after the
		// bound is left for goleak to name.
		closed := make(chan struct{})
		go func() { h.open.Wait(); close(closed) }()
		select {
		case <-closed:
		case <-ctx.Done():
		}
	})
	h.url, err = url.Parse(srv.URL)
	require.NoError(f, err)
	return h
}

// send makes one request and checks the one thing every input must get:
// an answer that is not a server error (503, a limit, excepted), and no
// panic. A request the handler holds (a long poll, a stream) is let go
// after a moment: holding it is an answer too.
func (h *handlerServer) send(t *testing.T, req *http.Request) {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 50*time.Millisecond)
	defer cancel()
	resp, err := h.client.Do(req.WithContext(ctx))
	if err == nil {
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		}
		resp.Body.Close() // a stream's headers are its answer
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %s", req.Method, req.URL, resp.Status)
		}
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s %s: %v", req.Method, req.URL, err)
	}
	if p := h.panicked(); p != "" {
		t.Fatalf("%s %s: the handler panicked:\n%s", req.Method, req.URL, p)
	}
}

// FuzzUpdatesQuery: polls with any query (after, wait, and anything else).
func FuzzUpdatesQuery(f *testing.F) {
	for _, seed := range []string{"after=0", "after=2", "after=99", "after=x", "after=-1", "after=1&after=2", "after=0&wait=1ms", "after=3&wait=10ms", "wait=2m", "wait=-1s", "after=0123456789abcdef-1", "%zz", "after=%00", ""} {
		f.Add(seed)
	}
	h := startHandler(f)
	f.Fuzz(func(t *testing.T, rawQuery string) {
		u := *h.url
		u.Path, u.RawQuery = "/updates", rawQuery
		req, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			return // not a request a client could send
		}
		h.send(t, req)
	})
}

// FuzzEventsResume: an event stream resumed with any Last-Event-ID and any
// query.
func FuzzEventsResume(f *testing.F) {
	for _, seed := range [][2]string{{"", ""}, {"2", ""}, {"0123456789abcdef-2", ""}, {"zz-2", ""}, {"99", ""}, {"", "after=1"}, {"3", "after=x"}, {"\x00", "after=1&after=2"}} {
		f.Add(seed[0], seed[1])
	}
	h := startHandler(f)
	f.Fuzz(func(t *testing.T, lastEventID, rawQuery string) {
		u := *h.url
		u.Path, u.RawQuery = "/events", rawQuery
		req, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			return
		}
		if !validHeader(lastEventID) {
			return // net/http refuses to send it
		}
		req.Header.Set("Last-Event-ID", lastEventID)
		h.send(t, req)
	})
}

// validHeader reports whether net/http would send v as a header value.
func validHeader(v string) bool {
	for i := range len(v) {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// FuzzPublishBody: a publish with any body and content type.
func FuzzPublishBody(f *testing.F) {
	for _, seed := range []struct{ body, contentType string }{
		{"hello", "text/plain"}, {`{"data":"hello"}`, "application/json"}, {"", "text/plain"}, {"\xff\xfe", "text/plain"},
		{"a\nb", "text/plain"}, {strings.Repeat("x", 70000), "text/plain"}, {"hello", "application/x-www-form-urlencoded"},
	} {
		f.Add([]byte(seed.body), seed.contentType)
	}
	h := startHandler(f)
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		req, err := http.NewRequest(http.MethodPost, h.url.JoinPath("publish").String(), bytes.NewReader(body))
		require.NoError(t, err)
		if validHeader(contentType) {
			req.Header.Set("Content-Type", contentType)
		}
		h.send(t, req)
	})
}

// FuzzRegisterWebhook: a webhook registration with any body. Accepted
// registrations are deleted again, so that the cap is never the answer.
func FuzzRegisterWebhook(f *testing.F) {
	for _, seed := range []string{`{"url":"http://127.0.0.1:9/hook","after":0}`, `{"url":"http://127.0.0.1:9/hook","after":"0123456789abcdef-1"}`,
		`{"url":"http://example.com/hook"}`, `{"url":"ftp://127.0.0.1/"}`, `{"url":"http://:80/hook"}`, `{"after":-1}`, `{"url":1}`, `[]`, `{`, ``} {
		f.Add([]byte(seed))
	}
	h := startHandler(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequest(http.MethodPost, h.url.JoinPath("webhooks").String(), bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := h.client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var reg struct{ ID string }
		if resp.StatusCode == http.StatusCreated && json.NewDecoder(resp.Body).Decode(&reg) == nil {
			del, err := http.NewRequest(http.MethodDelete, h.url.JoinPath("webhooks", reg.ID).String(), nil)
			require.NoError(t, err)
			h.send(t, del)
		}
		assert.Less(t, resp.StatusCode, 500, "%q", body)
		if p := h.panicked(); p != "" {
			t.Fatalf("the handler panicked on %q:\n%s", body, p)
		}
	})
}

// FuzzWebSocketMessage: any message a client can send on the socket gets an
// outcome (the update it published, or an error with a reason), or the
// socket is closed with a reason; the server never panics.
func FuzzWebSocketMessage(f *testing.F) {
	for _, seed := range []string{`{"data":"hello"}`, `{"data":""}`, `{"data":"a\nb"}`, `{"data":1}`, `{}`, `[]`, `{`, "\xff", `{"data":"x","extra":true}`, strings.Repeat(`{"data":"x"}`, 2)} {
		f.Add([]byte(seed))
	}
	h := startHandler(f)
	wsURL := "ws" + strings.TrimPrefix(h.url.String(), "http") + "/ws?after=3"
	f.Fuzz(func(t *testing.T, message []byte) {
		conn, _, err := h.dialer.Dial(wsURL, nil)
		require.NoError(t, err)
		defer conn.Close()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		var hello struct{ Type string }
		require.NoError(t, conn.ReadJSON(&hello))
		require.Equal(t, "hello", hello.Type)
		require.NoError(t, conn.WriteMessage(websocket.TextMessage, message))
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				var closed *websocket.CloseError
				require.True(t, errors.As(err, &closed), "the socket ended without a close frame: %v", err)
				assert.NotEqual(t, websocket.CloseInternalServerErr, closed.Code, "%q: %v", message, err)
				break
			}
			var reply struct{ Type string }
			require.NoError(t, json.Unmarshal(data, &reply), "%s", data)
			if reply.Type == "published" || reply.Type == "error" {
				break
			}
		}
		if p := h.panicked(); p != "" {
			t.Fatalf("the handler panicked on %q:\n%s", message, p)
		}
	})
}

// FuzzVerify: any headers and body either verify or fail with an error;
// a delivery signed with the secret verifies, and the same delivery with
// its body changed does not.
func FuzzVerify(f *testing.F) {
	secret := webhook.NewSecret()
	now := time.Unix(1_800_000_000, 0)
	f.Add("msg_1", "1800000000", "v1,AAAA", []byte(`{"id":1}`))
	f.Add("msg_1", "1800000000", secret.Sign("msg_1", now, []byte(`{"id":1}`)), []byte(`{"id":1}`))
	f.Add("", "x", "v2,abc v1,", []byte(""))
	f.Add("msg_2", "-99999999999999999999", "v1,!!!", []byte("\x00"))
	f.Fuzz(func(t *testing.T, id, timestamp, signature string, body []byte) {
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, timestamp)
		h.Set(webhook.HeaderSignature, signature)
		_ = secret.Verify(h, body, now) // must not panic

		if id == "" {
			return
		}
		h.Set(webhook.HeaderTimestamp, "1800000000")
		h.Set(webhook.HeaderSignature, secret.Sign(id, now, body))
		require.NoError(t, secret.Verify(h, body, now), "a delivery signed with the secret verifies")
		require.Error(t, secret.Verify(h, append(append([]byte(nil), body...), 'x'), now), "a changed body does not")
	})
}
