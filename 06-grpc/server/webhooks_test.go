package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
	"realtime/06-grpc/webhook"
)

// registration is what POST /webhooks answers, and GET /webhooks/{id} too,
// less the secret.
type registration struct {
	ID          string `json:"id"`
	Secret      string `json:"secret"`
	URL         string `json:"url"`
	Cursor      string `json:"cursor"`
	Delivered   uint64 `json:"delivered"`
	Failures    int    `json:"failures"`
	LastError   string `json:"last_error"`
	LastSuccess string `json:"last_success"`
	NextAttempt string `json:"next_attempt"`
	Disabled    bool   `json:"disabled"`
	Reason      string `json:"reason"`
}

// register asks srv to deliver to url the updates after the cursor after (a
// JSON value: a number or a cursor string), and returns its answer.
func register(tb testing.TB, srv *httptest.Server, url, after string) registration {
	tb.Helper()
	resp, body := get(tb, srv, http.MethodPost, "/webhooks", strings.NewReader(`{"url":"`+url+`","after":`+after+`}`))
	require.Equal(tb, http.StatusCreated, resp.StatusCode, "POST /webhooks answered: %s", body)
	var reg registration
	require.NoError(tb, json.Unmarshal([]byte(body), &reg), "decode %s", body)
	require.Equal(tb, "/webhooks/"+reg.ID, resp.Header.Get("Location"))
	return reg
}

// state returns what GET /webhooks/{id} says about a registration.
func state(tb testing.TB, srv *httptest.Server, id string) registration {
	tb.Helper()
	resp, body := get(tb, srv, http.MethodGet, "/webhooks/"+id, nil)
	require.Equal(tb, http.StatusOK, resp.StatusCode, "GET /webhooks/%s answered: %s", id, body)
	var reg registration
	require.NoError(tb, json.Unmarshal([]byte(body), &reg), "decode %s", body)
	return reg
}

func TestRegister_AnswersWithAnIDAndASecretShownOnce(t *testing.T) {
	srv, _ := start(t, 8)

	reg := register(t, srv, "http://127.0.0.1:9/hook", `"run-1-0"`)

	assert.Regexp(t, `^wh_[0-9a-f]{32}$`, reg.ID)
	_, err := webhook.ParseSecret(reg.Secret)
	assert.NoError(t, err, "the secret")
	assert.Equal(t, "http://127.0.0.1:9/hook", reg.URL)
	assert.Equal(t, "run-1-0", reg.Cursor)

	got := state(t, srv, reg.ID)
	assert.Empty(t, got.Secret, "GET never shows the secret again")
	assert.Equal(t, reg.ID, got.ID)
	assert.Equal(t, "http://127.0.0.1:9/hook", got.URL)
}

func TestRegister_TakesTheCursorAsACountOrWithItsEpoch(t *testing.T) {
	srv, _ := start(t, 8)
	for after, want := range map[string]string{`0`: "run-1-0", `"0"`: "run-1-0", `"run-1-0"`: "run-1-0", `"3"`: "3"} {
		t.Run(after, func(t *testing.T) {
			assert.Equal(t, want, register(t, srv, "http://127.0.0.1:9/hook", after).Cursor)
		})
	}
}

func TestDeleteWebhook_EndsTheRegistration(t *testing.T) {
	srv, _ := start(t, 8)
	reg := register(t, srv, "http://127.0.0.1:9/hook", `0`)

	resp, _ := get(t, srv, http.MethodDelete, "/webhooks/"+reg.ID, nil)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)

	resp, _ = get(t, srv, http.MethodGet, "/webhooks/"+reg.ID, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "GET after DELETE")
	resp, _ = get(t, srv, http.MethodDelete, "/webhooks/"+reg.ID, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "DELETE again")
}

func TestRegister_RefusesWhatItCannotDeliverTo(t *testing.T) {
	srv, _ := start(t, 8)
	cases := map[string]struct {
		body   string
		status int
		reason string
	}{
		"not JSON":         {`url=http://127.0.0.1:9/`, 400, "invalid character"},
		"no url":           {`{"after":0}`, 400, "url is missing"},
		"relative url":     {`{"url":"/hook"}`, 400, "http or https"},
		"another scheme":   {`{"url":"ftp://127.0.0.1/hook"}`, 400, "http or https"},
		"credentials":      {`{"url":"http://me:pw@127.0.0.1:9/hook"}`, 400, "credentials"},
		"unparseable url":  {`{"url":"http://127.0.0.1:9/%zz"}`, 400, "invalid URL escape"},
		"a space in it":    {`{"url":"http://127.0.0.1:9/hook?a b"}`, 400, "percent-encode"},
		"port 0":           {`{"url":"http://127.0.0.1:0/hook"}`, 400, "port"},
		"port 99999":       {`{"url":"http://127.0.0.1:99999/hook"}`, 400, "port"},
		"malformed cursor": {`{"url":"http://127.0.0.1:9/","after":"x"}`, 400, "after"},
		"negative cursor":  {`{"url":"http://127.0.0.1:9/","after":-1}`, 400, "after"},
		"unknown field":    {`{"url":"http://127.0.0.1:9/","secret":"whsec_mine"}`, 400, `unknown field "secret"`},
		"two objects":      {`{"url":"http://127.0.0.1:9/"}{}`, 400, "one JSON object"},
		"too large":        {`{"url":"http://127.0.0.1:9/` + strings.Repeat("a", 8<<10) + `"}`, 413, "larger than"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			resp, body := get(t, srv, http.MethodPost, "/webhooks", strings.NewReader(c.body))
			assert.Equal(t, c.status, resp.StatusCode, body)
			assert.Contains(t, body, c.reason)
		})
	}
	resp, body := get(t, srv, http.MethodGet, "/webhooks/wh_00000000000000000000000000000000", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, body)
}

func TestRegister_PastTheCapAnswers503WithRetryAfter(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	api := server.New(log, server.WithMaxWebhooks(2))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(t, api)
	first := register(t, srv, "http://127.0.0.1:9/a", `0`)
	register(t, srv, "http://127.0.0.1:9/b", `0`)

	resp, body := get(t, srv, http.MethodPost, "/webhooks", strings.NewReader(`{"url":"http://127.0.0.1:9/c"}`))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Contains(t, body, "2 webhooks are registered already")

	resp, _ = get(t, srv, http.MethodDelete, "/webhooks/"+first.ID, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	register(t, srv, "http://127.0.0.1:9/c", `0`)
}

func TestRegister_AtTheCapTheOldestDisabledRegistrationGivesItsPlace(t *testing.T) {
	srv := startRetrying(t, server.WithMaxWebhooks(3))
	gone := newReceiver(t, func(http.ResponseWriter, *http.Request) int { return http.StatusGone })
	first := register(t, srv, gone.URL+"/first", `0`)
	second := register(t, srv, gone.URL+"/second", `0`)
	accepts := newReceiver(t, nil)
	kept := register(t, srv, accepts.URL+"/kept", `0`)
	testkit.Publish(t, srv.URL, "once") // the 410 disables first and second
	waitState(t, srv, first.ID, "first disabled", func(s registration) bool { return s.Disabled })
	waitState(t, srv, second.ID, "second disabled", func(s registration) bool { return s.Disabled })

	// A disabled registration delivers nothing more: kept for its owner to
	// read why, it must not hold a place that a receiver wanting updates
	// needs, or receivers that went away without a word fill the server
	// for good.
	register(t, srv, accepts.URL+"/new", `0`)
	resp, body := get(t, srv, http.MethodGet, "/webhooks/"+first.ID, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "the oldest disabled registration made room: %s", body)
	assert.True(t, state(t, srv, second.ID).Disabled, "the next one is kept while there is no need")
	assert.False(t, state(t, srv, kept.ID).Disabled)

	register(t, srv, accepts.URL+"/newer", `0`) // in second's place
	resp, body = get(t, srv, http.MethodPost, "/webhooks", strings.NewReader(`{"url":"`+accepts.URL+`/newest"}`))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "none disabled is left to make room: %s", body)
}

func TestListWebhooks_ShowsEveryRegistrationInOrderWithoutItsIDOrSecret(t *testing.T) {
	srv, _ := start(t, 8)
	resp, body := get(t, srv, http.MethodGet, "/webhooks", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.JSONEq(t, `{"webhooks":[]}`, body, "no registration yet: an empty list, not null")

	var regs []registration
	for i := range 5 {
		regs = append(regs, register(t, srv, fmt.Sprintf("http://127.0.0.1:9/hook-%d", i), `0`))
	}
	resp, _ = get(t, srv, http.MethodDelete, "/webhooks/"+regs[2].ID, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	resp, body = get(t, srv, http.MethodGet, "/webhooks", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"), "a cached list is a stale one")
	var list struct {
		Webhooks []registration `json:"webhooks"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list), "decode %s", body)
	var want []registration
	for _, i := range []int{0, 1, 3, 4} {
		want = append(want, registration{URL: fmt.Sprintf("http://127.0.0.1:9/hook-%d", i), Cursor: "run-1-0"})
	}
	if diff := cmp.Diff(want, list.Webhooks); diff != "" {
		t.Errorf("GET /webhooks, in the order they were registered (-want +got):\n%s", diff)
	}
	for _, reg := range regs {
		assert.NotContains(t, body, reg.Secret, "the list shows a secret")
		assert.NotContains(t, body, reg.ID, "the list shows an id, which is all it takes to delete a registration")
	}
}
