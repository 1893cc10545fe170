package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
	"realtime/06-grpc/webhook"
)

// webhookStrategy returns the webhook strategy for the server at base,
// listening on a port of loopback that the system picks, and asking after
// its registration every few milliseconds.
func webhookStrategy(tb testing.TB, base *url.URL) client.Strategy {
	tb.Helper()
	strategy, err := client.NewStrategy("webhook", client.Config{Server: base, CheckInterval: 5 * time.Millisecond})
	require.NoError(tb, err)
	return strategy
}

// registrations records what a client asks of the real server's /webhooks:
// the body of each registration, the id it was given, and each DELETE.
type registrations struct {
	mu         sync.Mutex
	bodies     []string
	ids        []string
	deleted    []string
	registered chan struct{}
}

func newRegistrations() *registrations { return &registrations{registered: make(chan struct{}, 8)} }

func (h *registrations) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/webhooks":
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r)
			h.mu.Lock()
			h.bodies = append(h.bodies, string(body))
			h.ids = append(h.ids, strings.TrimPrefix(w.Header().Get("Location"), "/webhooks/"))
			h.mu.Unlock()
			h.registered <- struct{}{}
		case r.Method == http.MethodDelete:
			h.mu.Lock()
			h.deleted = append(h.deleted, r.URL.Path)
			h.mu.Unlock()
			next.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// waitRegistered waits for the next registration to be answered.
func (h *registrations) waitRegistered(tb testing.TB) {
	tb.Helper()
	testkit.Receive(tb, h.registered, "the client to register")
}

// seen returns the registrations' bodies, their ids and the paths deleted.
func (h *registrations) seen() (bodies, ids, deleted []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.bodies...), append([]string(nil), h.ids...), append([]string(nil), h.deleted...)
}

func TestWebhook_PrintsEveryUpdateTheServerDeliversInOrder(t *testing.T) {
	log := newLog(t, 16, "run-1")
	hooks := newRegistrations()
	base := startServer(t, log, hooks.wrap)
	r := receive(t, webhookStrategy(t, base), "webhook", 0)

	hooks.waitRegistered(t)
	mustPublish(t, log, "a", "b", "c")

	assert.Equal(t, []string{"1 a", "2 b", "3 c"}, r.stdout.WaitForLines(t, 3))
	bodies, _, _ := hooks.seen()
	require.Len(t, bodies, 1, "one registration for all three")
	assert.Regexp(t, `^\{"url":"http://127\.0\.0\.1:[0-9]+/hook","after":"0"\}$`, bodies[0])
	assert.Empty(t, r.stderr.String())
}

func TestWebhook_RegistersWithItsCursorAndDeletesTheRegistrationWhenItStops(t *testing.T) {
	log := newLog(t, 16, "run-1")
	mustPublish(t, log, "a", "b", "c")
	hooks := newRegistrations()
	base := startServer(t, log, hooks.wrap)
	r := receiveAfter(t, webhookStrategy(t, base), "webhook", feed.Cursor{After: 2, Epoch: "run-1"})
	hooks.waitRegistered(t)
	mustPublish(t, log, "d")
	assert.Equal(t, []string{"3 c", "4 d"}, r.stdout.WaitForLines(t, 2))

	r.stop(t)

	bodies, ids, deleted := hooks.seen()
	require.Len(t, bodies, 1)
	assert.Contains(t, bodies[0], `"after":"run-1-2"`, "the cursor, with its epoch")
	assert.Equal(t, []string{"/webhooks/" + ids[0]}, deleted, "deleted before Run returned")
	resp, err := http.Get(base.JoinPath("webhooks", ids[0]).String())
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "the server forgot it")
}

// flakyHop stands between the server and the receiver, as a flaky network
// or proxy would, and fails every other delivery: alternately before the
// receiver sees it, and after the receiver has printed it, its answer lost.
// wrap makes the server deliver through it, by rewriting the URL of each
// registration.
type flakyHop struct {
	srv *httptest.Server

	mu       sync.Mutex
	to       string // the receiver's URL, as registered
	attempts int
	failed   int
}

func newFlakyHop(tb testing.TB) *flakyHop {
	tb.Helper()
	hop := &flakyHop{}
	transport := &http.Transport{}
	tb.Cleanup(transport.CloseIdleConnections)
	hop.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		hop.mu.Lock()
		attempt, to := hop.attempts, hop.to
		hop.attempts++
		if attempt%2 == 0 {
			hop.failed++
		}
		hop.mu.Unlock()
		if attempt%4 == 0 {
			http.Error(w, "flaky hop: lost on the way", http.StatusBadGateway)
			return
		}
		req, err := http.NewRequest(http.MethodPost, to, bytes.NewReader(body))
		if !assert.NoError(tb, err) {
			return
		}
		req.Header = r.Header.Clone()
		resp, err := (&http.Client{Transport: transport}).Do(req)
		if err != nil {
			http.Error(w, "flaky hop: "+err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		if attempt%4 == 2 {
			http.Error(w, "flaky hop: the answer was lost on the way back", http.StatusBadGateway)
			return
		}
		w.WriteHeader(resp.StatusCode)
	}))
	tb.Cleanup(hop.srv.Close)
	return hop
}

func (hop *flakyHop) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/webhooks" {
			var req map[string]any
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			hop.mu.Lock()
			hop.to, req["url"] = req["url"].(string), hop.srv.URL+"/hook"
			hop.mu.Unlock()
			body, _ := json.Marshal(req)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		next.ServeHTTP(w, r)
	})
}

// failures returns how many deliveries the hop failed so far.
func (hop *flakyHop) failures() int {
	hop.mu.Lock()
	defer hop.mu.Unlock()
	return hop.failed
}

func TestWebhook_PrintsEveryUpdateOnceAndInOrderWhenHalfTheDeliveriesFail(t *testing.T) {
	const updates = 10
	log := newLog(t, 16, "run-1")
	for i := range updates {
		mustPublish(t, log, fmt.Sprintf("update %d", i+1))
	}
	hop := newFlakyHop(t)
	// The server retries each failure with the same webhook-id, after a
	// wait made short for the test.
	base := startServer(t, log, hop.wrap, server.WithWebhookBackoff(time.Millisecond, 5*time.Millisecond))

	r := receive(t, webhookStrategy(t, base), "webhook", 0)

	var want []string
	for i := range updates {
		want = append(want, fmt.Sprintf("%d update %d", i+1, i+1))
	}
	if diff := cmp.Diff(want, r.stdout.WaitForLines(t, updates)); diff != "" {
		t.Errorf("printed (-want +got):\n%s", diff)
	}
	assert.GreaterOrEqual(t, hop.failures(), updates, "one failed attempt for each update, at least")
	assert.Empty(t, r.stderr.String())
}

// fakeSender plays the server's part of webhooks with a secret of its own,
// so that the test delivers as the server would, or as nobody should:
// forged, replayed, late, too large, or many at once.
type fakeSender struct {
	base       *url.URL
	secret     webhook.Secret
	registered chan hookRequest
	srv        *httptest.Server
	// state is what GET /webhooks/{id} answers, as a status and a body;
	// each registration sets it back to 200 and a registration that works.
	state atomic.Pointer[hookState]
}

type hookState struct {
	status int
	body   string
}

var working = &hookState{http.StatusOK, `{"id":"wh_fake","disabled":false}`}

// hookRequest is the body of POST /webhooks.
type hookRequest struct {
	URL   string `json:"url"`
	After string `json:"after"`
}

func newFakeSender(tb testing.TB) *fakeSender {
	tb.Helper()
	f := &fakeSender{secret: webhook.NewSecret(), registered: make(chan hookRequest, 8)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks", func(w http.ResponseWriter, r *http.Request) {
		var req hookRequest
		if !assert.NoError(tb, json.NewDecoder(r.Body).Decode(&req)) {
			http.Error(w, "bad registration", http.StatusBadRequest)
			return
		}
		cursor := req.After
		if cursor == "0" {
			cursor = "run-1-0" // as the real server: nothing seen, so this run
		}
		f.state.Store(working)
		f.registered <- req
		w.Header().Set("Location", "/webhooks/wh_fake")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "wh_fake", "url": req.URL, "cursor": cursor, "secret": f.secret.Encode()})
	})
	mux.HandleFunc("GET /webhooks/{id}", func(w http.ResponseWriter, r *http.Request) {
		state := f.state.Load()
		w.WriteHeader(state.status)
		_, _ = io.WriteString(w, state.body)
	})
	mux.HandleFunc("DELETE /webhooks/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	f.state.Store(working)
	f.srv = httptest.NewServer(mux)
	tb.Cleanup(f.srv.Close)
	base, err := url.Parse(f.srv.URL)
	require.NoError(tb, err)
	f.base = base
	return f
}

// waitRegistered returns the URL the client registered.
func (f *fakeSender) waitRegistered(tb testing.TB) string {
	tb.Helper()
	return f.waitRegistration(tb).URL
}

// waitRegistration returns the next registration's body.
func (f *fakeSender) waitRegistration(tb testing.TB) hookRequest {
	tb.Helper()
	return testkit.Receive(tb, f.registered, "the client to register")
}

// signed returns the headers of a delivery signed with secret at when.
func signed(secret webhook.Secret, id string, when time.Time, body string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(webhook.HeaderID, id)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(when.Unix(), 10))
	h.Set(webhook.HeaderSignature, secret.Sign(id, when, []byte(body)))
	return h
}

// post sends one delivery and returns the answer's status and text. It
// does not stop the test: call it from any goroutine.
func post(hook string, header http.Header, body string) (int, string, error) {
	// A transport of its own, closed after: no idle connection outlives
	// the call, for goleak to find.
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, hook, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header = header
	resp, err := (&http.Client{Transport: transport, Timeout: testkit.WaitTimeout}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(text)), err
}

// deliver is post from the test's goroutine.
func deliver(tb testing.TB, hook string, header http.Header, body string) (int, string) {
	tb.Helper()
	status, text, err := post(hook, header, body)
	require.NoError(tb, err, "POST %s", hook)
	return status, text
}

// updateJSON is the body of the delivery of update id.
func updateJSON(id uint64, data string) string {
	return fmt.Sprintf(`{"id":%d,"data":%q,"time":"2026-11-25T19:03:11Z"}`, id, data)
}

func TestWebhook_AnswersADeliveryOnlyOnceItIsPrinted(t *testing.T) {
	sender := newFakeSender(t)
	r := receive(t, webhookStrategy(t, sender.base), "webhook", 0)
	hook := sender.waitRegistered(t)
	body := updateJSON(1, "taxi at the station")

	status, _ := deliver(t, hook, signed(sender.secret, "msg_run-1-1", time.Now(), body), body)

	assert.Equal(t, http.StatusNoContent, status)
	assert.Equal(t, []string{"1 taxi at the station"}, r.stdout.Lines(), "printed before the answer, not after")
}

func TestWebhook_RefusesADeliveryItCannotTrust(t *testing.T) {
	sender := newFakeSender(t)
	r := receive(t, webhookStrategy(t, sender.base), "webhook", 0)
	hook := sender.waitRegistered(t)
	body := updateJSON(1, "taxi at the station")
	now := time.Now()
	tests := []struct {
		name   string
		header http.Header
		body   string
		status int
		reason string
	}{
		{"no signature", http.Header{}, body, http.StatusUnauthorized, "missing webhook header"},
		{"signed with another secret", signed(webhook.NewSecret(), "msg_run-1-1", now, body), body, http.StatusUnauthorized, "no webhook signature matches"},
		{"a body changed after it was signed", signed(sender.secret, "msg_run-1-1", now, body), strings.Replace(body, "station", "airport", 1), http.StatusUnauthorized, "no webhook signature matches"},
		{"another id than was signed", with(signed(sender.secret, "msg_run-1-1", now, body), webhook.HeaderID, "msg_run-1-2"), body, http.StatusUnauthorized, "no webhook signature matches"},
		{"signed 6 minutes ago", signed(sender.secret, "msg_run-1-1", now.Add(-6*time.Minute), body), body, http.StatusUnauthorized, "not within 5 minutes"},
		{"signed 6 minutes ahead", signed(sender.secret, "msg_run-1-1", now.Add(6*time.Minute), body), body, http.StatusUnauthorized, "not within 5 minutes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, reason := deliver(t, hook, tt.header, tt.body)

			assert.Equal(t, tt.status, status)
			assert.Contains(t, reason, tt.reason, "says why")
		})
	}
	assert.Empty(t, r.stdout.String(), "nothing printed")
	assert.Empty(t, r.stderr.String(), "a forger cannot write on the user's terminal either")
}

func with(h http.Header, name, value string) http.Header {
	h.Set(name, value)
	return h
}

func TestWebhook_ReadsTheLargestUpdateAndNoMore(t *testing.T) {
	sender := newFakeSender(t)
	r := receive(t, webhookStrategy(t, sender.base), "webhook", 0)
	hook := sender.waitRegistered(t)
	// Control characters are what JSON escapes longest: six bytes each.
	largest, err := json.Marshal(feed.Update{ID: 1, Data: strings.Repeat("\x01", feed.MaxDataBytes), Time: time.Now().UTC()})
	require.NoError(t, err)
	require.LessOrEqual(t, len(largest), client.MaxDeliveryBytes)
	tooLarge := string(largest) + strings.Repeat(" ", client.MaxDeliveryBytes-len(largest)+1)

	status, reason := deliver(t, hook, signed(sender.secret, "msg_run-1-1", time.Now(), tooLarge), tooLarge)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status)
	assert.Contains(t, reason, fmt.Sprintf("larger than %d bytes", client.MaxDeliveryBytes))
	assert.Empty(t, r.stdout.String())

	status, _ = deliver(t, hook, signed(sender.secret, "msg_run-1-1", time.Now(), string(largest)), string(largest))
	assert.Equal(t, http.StatusNoContent, status)
	assert.Equal(t, []string{"1 " + strings.Repeat(`\x01`, feed.MaxDataBytes)}, r.stdout.Lines())
}

func TestWebhook_AcknowledgesADeliveryItHandledBeforeWithoutPrintingItAgain(t *testing.T) {
	sender := newFakeSender(t)
	r := receive(t, webhookStrategy(t, sender.base), "webhook", 0)
	hook := sender.waitRegistered(t)
	body := updateJSON(1, "taxi at the station")
	first := signed(sender.secret, "msg_run-1-1", time.Now(), body)

	for _, header := range []http.Header{
		first,
		first, // replayed as it was captured, within the 5 minutes
		signed(sender.secret, "msg_run-1-1", time.Now().Add(time.Minute), body), // retried, signed afresh: the first answer was lost
	} {
		status, _ := deliver(t, hook, header, body)
		assert.Equal(t, http.StatusNoContent, status, "acknowledged, or the sender retries it for ever")
	}

	assert.Equal(t, []string{"1 taxi at the station"}, r.stdout.Lines())
}

func TestWebhook_ReportsAResetAsAGapOnce(t *testing.T) {
	sender := newFakeSender(t)
	r := receiveAfter(t, webhookStrategy(t, sender.base), "webhook", feed.Cursor{After: 7, Epoch: "run-1"})
	hook := sender.waitRegistered(t)
	reset := `{"type":"reset","last":1,"epoch":"run-2"}`

	for range 2 { // the second is a retry whose first answer was lost
		status, _ := deliver(t, hook, signed(sender.secret, "msg_reset-run-2-1", time.Now(), reset), reset)
		assert.Equal(t, http.StatusNoContent, status)
	}
	body := updateJSON(2, "b")
	status, _ := deliver(t, hook, signed(sender.secret, "msg_run-2-2", time.Now(), body), body)
	assert.Equal(t, http.StatusNoContent, status)

	assert.Equal(t, []string{"2 b"}, r.stdout.Lines())
	assert.Equal(t, "gap: server cannot resume after update 7; updates may be missing; continuing from 1\n", r.stderr.String())
}

func TestWebhook_HandlesOneDeliveryAtATime(t *testing.T) {
	sender := newFakeSender(t)
	r := receive(t, webhookStrategy(t, sender.base), "webhook", 0)
	hook := sender.waitRegistered(t)
	body := updateJSON(1, "taxi at the station")
	header := signed(sender.secret, "msg_run-1-1", time.Now(), body)

	// Anyone may post at once: a sender whose timeout fired while the
	// first attempt was still being handled, or a replay. The session
	// belongs to one of them at a time (go test -race checks).
	const copies = 16
	answers := make(chan int, copies)
	var posting sync.WaitGroup
	for range copies {
		posting.Go(func() {
			status, _, err := post(hook, header.Clone(), body)
			assert.NoError(t, err)
			answers <- status
		})
	}
	posting.Wait()
	close(answers)

	for status := range answers {
		assert.Equal(t, http.StatusNoContent, status)
	}
	assert.Equal(t, []string{"1 taxi at the station"}, r.stdout.Lines(), "printed once")
}

// The library of the Standard Webhooks project is written by others: what
// it signs, the receiver accepts.
func TestWebhook_AcceptsADeliverySignedByTheStandardWebhooksLibrary(t *testing.T) {
	sender := newFakeSender(t)
	r := receive(t, webhookStrategy(t, sender.base), "webhook", 0)
	hook := sender.waitRegistered(t)
	theirs, err := standardwebhooks.NewWebhook(sender.secret.Encode())
	require.NoError(t, err)
	body := updateJSON(1, "driver at 51.5074,-0.1278")
	now := time.Now()
	signature, err := theirs.Sign("msg_run-1-1", now, []byte(body))
	require.NoError(t, err)
	header := http.Header{}
	header.Set(standardwebhooks.HeaderWebhookID, "msg_run-1-1")
	header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	header.Set(standardwebhooks.HeaderWebhookSignature, signature)

	status, _ := deliver(t, hook, header, body)

	assert.Equal(t, http.StatusNoContent, status)
	assert.Equal(t, []string{"1 driver at 51.5074,-0.1278"}, r.stdout.Lines())
}

// brokenPipe is a standard output whose reader has gone.
type brokenPipe struct{}

func (brokenPipe) Write([]byte) (int, error) { return 0, errors.New("write /dev/stdout: broken pipe") }

func TestWebhook_ReturnsWhenItCannotPrint(t *testing.T) {
	sender := newFakeSender(t)
	strategy := webhookStrategy(t, sender.base)
	session := client.NewSession(client.SessionOptions{Strategy: "webhook", Stdout: brokenPipe{}, Stderr: io.Discard})
	ctx, cancel := context.WithTimeout(t.Context(), testkit.WaitTimeout)
	defer cancel()
	received := make(chan error, 1)
	go func() { received <- strategy.Receive(ctx, session) }()
	hook := sender.waitRegistered(t)
	body := updateJSON(1, "taxi at the station")

	status, _ := deliver(t, hook, signed(sender.secret, "msg_run-1-1", time.Now(), body), body)

	assert.Equal(t, http.StatusInternalServerError, status, "not acknowledged: it was not printed")
	err := testkit.Receive(t, received, "Receive to return")
	assert.ErrorContains(t, err, "broken pipe", "Run reports it")
}

func TestWebhook_RegistersAgainWhenItsRegistrationIsGoneOrDisabled(t *testing.T) {
	tests := []struct {
		name  string
		state hookState
		says  string
	}{
		{"the server restarted, and forgot it", hookState{http.StatusNotFound, "no such webhook registration in this server run; register again"},
			"webhook: registration wh_fake is gone: the server restarted, or dropped it: GET "},
		{"the server disabled it", hookState{http.StatusOK, `{"id":"wh_fake","disabled":true,"reason":"20 deliveries failed in a row; the last: receiver answered 500"}`},
			"webhook: registration wh_fake is disabled: 20 deliveries failed in a row; the last: receiver answered 500; retrying in "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sender := newFakeSender(t)
			// From a bare id, the session does not know the server's run.
			r := receive(t, webhookStrategy(t, sender.base), "webhook", 3)
			first := sender.waitRegistration(t)
			body := updateJSON(4, "d")
			status, _ := deliver(t, first.URL, signed(sender.secret, "msg_run-1-4", time.Now(), body), body)
			require.Equal(t, http.StatusNoContent, status)

			sender.state.Store(&tt.state)

			again := sender.waitRegistration(t)
			assert.Equal(t, "3", first.After)
			assert.Equal(t, "run-1-4", again.After, "its cursor, with the run the delivery's webhook-id named")
			r.stderr.WaitFor(t, tt.says)
		})
	}
}

// outage stands in front of the server as a proxy would while the server
// is down for a moment: on, it answers every request 503, and tells of each
// DELETE it refused.
type outage struct {
	on      atomic.Bool
	refused chan string // the path of each DELETE refused
}

func newOutage() *outage { return &outage{refused: make(chan string, 8)} }

func (o *outage) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !o.on.Load() {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodDelete {
			o.refused <- r.URL.Path
		}
		http.Error(w, "down for a moment", http.StatusServiceUnavailable)
	})
}

func TestWebhook_DeletesTheRegistrationItGaveUpOnceTheServerAnswersAgain(t *testing.T) {
	log := newLog(t, 16, "run-1")
	hooks := newRegistrations()
	down := newOutage()
	base := startServer(t, log, func(next http.Handler) http.Handler { return down.wrap(hooks.wrap(next)) })
	r := receive(t, webhookStrategy(t, base), "webhook", 0)
	hooks.waitRegistered(t)
	_, ids, _ := hooks.seen()

	down.on.Store(true) // the next check fails, and so does the DELETE of the registration it gives up
	require.Equal(t, "/webhooks/"+ids[0], testkit.Receive(t, down.refused, "the client to delete the registration it gave up"))
	down.on.Store(false)
	hooks.waitRegistered(t)
	mustPublish(t, log, "a")
	require.Equal(t, []string{"1 a"}, r.stdout.WaitForLines(t, 1), "delivered to the new registration")

	// Left behind, the old registration would fail every delivery (its
	// receiver is gone) and hold one of the server's places, disabled or
	// not, for as long as the server runs. The receiver deletes it before
	// it serves the new registration, so once an update is printed the
	// DELETE has been answered.
	resp, err := http.Get(base.JoinPath("webhooks", ids[0]).String())
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "the registration given up is deleted once the server answers again")
}

func TestWebhook_ReturnsWhenTheServerIsDown(t *testing.T) {
	sender := newFakeSender(t)
	r := receive(t, webhookStrategy(t, sender.base), "webhook", 0)
	sender.waitRegistration(t)

	sender.srv.Close() // every check fails from now on

	r.stderr.WaitFor(t, `webhook: Get "`+sender.base.JoinPath("webhooks", "wh_fake").String()+`": dial tcp `)
}

func TestWebhook_RegistersTheCallbackItIsReachedByWhenItHasOne(t *testing.T) {
	sender := newFakeSender(t)
	// Behind a tunnel or a proxy, the receiver is reached by another
	// address than the one it listens on.
	strategy, err := client.NewStrategy("webhook", client.Config{Server: sender.base, Callback: "https://hooks.example/taxi"})
	require.NoError(t, err)
	receive(t, strategy, "webhook", 0)

	assert.Equal(t, "https://hooks.example/taxi", sender.waitRegistered(t))
}
