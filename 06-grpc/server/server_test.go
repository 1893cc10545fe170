package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(closingBrowser{m}) }

// start runs the real handler on a real listener, with a log of the given
// history and the fixed epoch "run-1".
func start(tb testing.TB, history int) (*httptest.Server, *feed.Log) {
	tb.Helper()
	log, err := feed.New(history, feed.WithEpoch("run-1"))
	require.NoError(tb, err)
	api := server.New(log)
	srv := httptest.NewServer(api)
	srv.Client().Timeout = testkit.WaitTimeout // a poll that is held by mistake fails, not hangs
	tb.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(tb, api)
	return srv, log
}

// get fetches path and returns the response with its body read.
func get(tb testing.TB, srv *httptest.Server, method, path string, body io.Reader) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(method, srv.URL+path, body)
	require.NoError(tb, err)
	resp, err := srv.Client().Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp, string(text)
}

func TestPublish_AnswersWithTheStampedUpdate(t *testing.T) {
	srv, log := start(t, 8)
	before := time.Now()

	u := testkit.Publish(t, srv.URL, "driver at 51.5074,-0.1278")

	assert.Equal(t, uint64(1), u.ID)
	assert.Equal(t, "driver at 51.5074,-0.1278", u.Data)
	assert.WithinRange(t, u.Time, before.Add(-time.Second), time.Now().Add(time.Second))
	assert.Equal(t, uint64(1), log.Last())
}

func TestPublish_RefusesBadBodiesAndPublishesNothing(t *testing.T) {
	srv, log := start(t, 8)
	tests := []struct {
		name   string
		method string
		body   string
		status int
		reason string
	}{
		{"empty body", http.MethodPost, "", http.StatusBadRequest, "update text is empty or only white space"},
		{"only white space", http.MethodPost, " \r\n\t", http.StatusBadRequest, "update text is empty or only white space"},
		{"body over 64 KiB", http.MethodPost, strings.Repeat("x", feed.MaxDataBytes+1), http.StatusRequestEntityTooLarge, "update text is larger than 65536 bytes"},
		{"invalid UTF-8", http.MethodPost, "caf\xe9", http.StatusBadRequest, "update text is not valid UTF-8"},
		{"GET instead of POST", http.MethodGet, "", http.StatusMethodNotAllowed, "Method Not Allowed"},
		{"PUT instead of POST", http.MethodPut, "x", http.StatusMethodNotAllowed, "Method Not Allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, tt.method, "/publish", strings.NewReader(tt.body))
			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Equal(t, tt.reason, strings.TrimSpace(body))
		})
	}
	assert.Zero(t, log.Last())

	u := testkit.Publish(t, srv.URL, strings.Repeat("x", feed.MaxDataBytes))
	assert.Equal(t, uint64(1), u.ID, "exactly 64 KiB is allowed")
}

// poll is the decoded answer of GET /updates.
type poll struct {
	Updates []feed.Update `json:"updates"`
	Last    uint64        `json:"last"`
	Epoch   string        `json:"epoch"`
}

func getUpdates(tb testing.TB, srv *httptest.Server, query string) (*http.Response, poll) {
	tb.Helper()
	resp, body := get(tb, srv, http.MethodGet, "/updates"+query, nil)
	var answer poll
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusGone {
		require.NoError(tb, json.Unmarshal([]byte(body), &answer), body)
	}
	return resp, answer
}

func TestShortPoll_AnswersEveryUpdateAfterTheCursor(t *testing.T) {
	srv, _ := start(t, 8)
	a, b, c := testkit.Publish(t, srv.URL, "a"), testkit.Publish(t, srv.URL, "b"), testkit.Publish(t, srv.URL, "c")

	tests := []struct {
		name  string
		query string
		want  []feed.Update
	}{
		{"no after means from the start", "", []feed.Update{a, b, c}},
		{"after 0", "?after=0", []feed.Update{a, b, c}},
		{"after 1", "?after=1", []feed.Update{b, c}},
		{"after the newest: nothing, not null", "?after=3", []feed.Update{}},
		{"with this run's epoch", "?after=run-1-2", []feed.Update{c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, got := getUpdates(t, srv, tt.query)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			want := poll{Updates: tt.want, Last: 3, Epoch: "run-1"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShortPoll_AnswersGoneWhenTheCursorCannotBeServed(t *testing.T) {
	srv, _ := start(t, 2)
	for _, text := range []string{"a", "b", "c", "d"} {
		testkit.Publish(t, srv.URL, text) // holds 3 and 4
	}
	tests := []struct{ name, query string }{
		{"older than the history", "?after=1"},
		{"ahead of the newest update", "?after=5"},
		{"the largest id there is", "?after=18446744073709551615"},
		{"from an earlier server run", "?after=run-0-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, got := getUpdates(t, srv, tt.query)
			require.Equal(t, http.StatusGone, resp.StatusCode)
			assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
			if diff := cmp.Diff(poll{Last: 4, Epoch: "run-1"}, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShortPoll_RefusesMalformedCursors(t *testing.T) {
	srv, _ := start(t, 8)
	tests := []struct {
		name, query, reason string
	}{
		{"negative", "?after=-1", `after: "-1" is not an update id such as 42, or EPOCH-42`},
		{"not a number", "?after=abc", `after: "abc" is not an update id such as 42, or EPOCH-42`},
		{"a fraction", "?after=1.5", `after: "1.5" is not an update id such as 42, or EPOCH-42`},
		{"a plus sign", "?after=%2B1", `after: "+1" is not an update id such as 42, or EPOCH-42`},
		{"spaces", "?after=%201", `after: " 1" is not an update id such as 42, or EPOCH-42`},
		{"empty", "?after=", "after: empty; want an update id such as 42, or EPOCH-42"},
		{"larger than any id", "?after=18446744073709551616", `after: "18446744073709551616" is too large`},
		{"absurdly long, echoed only in part", "?after=" + strings.Repeat("9", 5000), `after: "` + strings.Repeat("9", 100) + `"… (5000 bytes) is too large`},
		{"an epoch with no id", "?after=run-1-", "after: empty; want an update id such as 42, or EPOCH-42"},
		{"given twice", "?after=5&after=abc", "after: given 2 times; give it once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, http.MethodGet, "/updates"+tt.query, nil)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			assert.Equal(t, tt.reason+"\n", body, "a one-line reason")
		})
	}
}

func TestShortPoll_RefusesOtherMethods(t *testing.T) {
	srv, _ := start(t, 8)
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			resp, _ := get(t, srv, method, "/updates", nil)
			assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
			assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
		})
	}
}

func TestPage_IsServedWithItsScripts(t *testing.T) {
	srv, _ := start(t, 8)
	for path, contentType := range map[string]string{
		"/":                  "text/html; charset=utf-8",
		"/page/page.js":      "text/javascript; charset=utf-8",
		"/page/shortpoll.js": "text/javascript; charset=utf-8",
		"/page/longpoll.js":  "text/javascript; charset=utf-8",
		"/page/sse.js":       "text/javascript; charset=utf-8",
		"/page/ws.js":        "text/javascript; charset=utf-8",
		"/page/webhooks.js":  "text/javascript; charset=utf-8",
		"/page/page.css":     "text/css; charset=utf-8",
	} {
		resp, body := get(t, srv, http.MethodGet, path, nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Equal(t, contentType, resp.Header.Get("Content-Type"), path)
		assert.NotEmpty(t, body, path)
	}
	resp, _ := get(t, srv, http.MethodGet, "/no-such-file", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}
