package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
	"realtime/06-grpc/webhook"
)

// delivery is one request a receiver got, as it arrived.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint on a real listener that records every
// delivery and answers it with the status answer returns (200 if nil).
type receiver struct {
	*httptest.Server
	got chan delivery
}

func newReceiver(tb testing.TB, answer func(w http.ResponseWriter, r *http.Request) int) *receiver {
	tb.Helper()
	rcv := &receiver{got: make(chan delivery, 1024)}
	rcv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		status := http.StatusOK
		if answer != nil {
			status = answer(w, r)
		}
		rcv.got <- delivery{header: r.Header.Clone(), body: body}
		w.WriteHeader(status)
	}))
	tb.Cleanup(rcv.Close)
	return rcv
}

// next returns the next delivery, checked against secret: every delivery
// must carry a signature that verifies.
func (rcv *receiver) next(tb testing.TB, secret string) delivery {
	tb.Helper()
	d := testkit.Receive(tb, rcv.got, "a delivery")
	key, err := webhook.ParseSecret(secret)
	require.NoError(tb, err)
	require.NoError(tb, key.Verify(d.header, d.body, time.Now()), "the delivery's signature")
	return d
}

func TestWebhook_DeliversEachUpdateSignedAndInOrder(t *testing.T) {
	srv, log := start(t, 8)
	rcv := newReceiver(t, nil)
	reg := register(t, srv, rcv.URL+"/hook", `0`)

	var want, got []string
	for i := range 3 {
		u := testkit.Publish(t, srv.URL, fmt.Sprintf("update %d", i+1))
		entry, _, err := log.After(feed.Cursor{After: u.ID - 1}, feed.Limit{Updates: 1, Bytes: 1})
		require.NoError(t, err)
		want = append(want, fmt.Sprintf("msg_run-1-%d %s", u.ID, entry[0].JSON))
	}
	for range 3 {
		d := rcv.next(t, reg.Secret)
		assert.Equal(t, "application/json", d.header.Get("Content-Type"))
		got = append(got, d.header.Get(webhook.HeaderID)+" "+string(d.body))
	}

	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries, as webhook-id and body (-want +got):\n%s", diff)
	}
}

func TestWebhook_StartsAfterTheRegisteredCursor(t *testing.T) {
	srv, _ := start(t, 8)
	for i := range 3 {
		testkit.Publish(t, srv.URL, fmt.Sprintf("update %d", i+1))
	}
	rcv := newReceiver(t, nil)

	reg := register(t, srv, rcv.URL+"/hook", `"run-1-2"`)

	var u feed.Update
	require.NoError(t, json.Unmarshal(rcv.next(t, reg.Secret).body, &u))
	assert.Equal(t, uint64(3), u.ID)
	waitState(t, srv, reg.ID, "the cursor at run-1-3", func(s registration) bool { return s.Cursor == "run-1-3" })
}

// waitState asks GET /webhooks/{id} until done says its answer is the one
// awaited, and fails the test, showing the last answer, after
// testkit.WaitTimeout.
func waitState(tb testing.TB, srv *httptest.Server, id, what string, done func(registration) bool) registration {
	tb.Helper()
	deadline := time.Now().Add(testkit.WaitTimeout)
	for {
		s := state(tb, srv, id)
		if done(s) {
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s; the registration is %+v", testkit.WaitTimeout, what, s)
		}
		time.Sleep(time.Millisecond) // a bounded poll of the state: nothing to wait on from outside
	}
}

func TestWebhook_AReceiverThatNeverAnswersDelaysNoOther(t *testing.T) {
	srv, _ := start(t, 8)
	hung := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hung }))
	t.Cleanup(dead.Close)
	t.Cleanup(func() { close(hung) }) // first: Close waits for the handler
	register(t, srv, dead.URL+"/hook", `0`)
	rcv := newReceiver(t, nil)
	reg := register(t, srv, rcv.URL+"/hook", `0`)

	for i := range 3 {
		testkit.Publish(t, srv.URL, fmt.Sprintf("update %d", i+1)) // the publisher is not held up either
	}

	for want := range uint64(3) {
		var u feed.Update
		require.NoError(t, json.Unmarshal(rcv.next(t, reg.Secret).body, &u))
		assert.Equal(t, want+1, u.ID)
	}
}

func TestWebhook_RegistrationsEndWithTheServer(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	api := server.New(log)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	rcv := newReceiver(t, nil)
	register(t, srv, rcv.URL+"/hook", `0`)

	require.NoError(t, api.Shutdown(context.Background()))

	// A registration now would never be delivered to: it is refused.
	resp, body := get(t, srv, http.MethodPost, "/webhooks", strings.NewReader(`{"url":"`+rcv.URL+`/hook"}`))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	assert.Contains(t, body, "shutting down")
}

func TestWebhook_RefusesADestinationOutsideTheAllowList(t *testing.T) {
	srv, _ := start(t, 8)

	resp, body := get(t, srv, http.MethodPost, "/webhooks", strings.NewReader(`{"url":"http://169.254.169.254/latest/meta-data"}`))

	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	assert.Contains(t, body, "169.254.169.254 is not an allowed destination")
}

func TestWebhook_ChecksTheAddressANameResolvesTo(t *testing.T) {
	// A name is checked when it is dialled, not when it is registered: what
	// it resolves to can change in between (DNS rebinding). localhost is a
	// name that resolves to loopback, which this server does not allow.
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	api := server.New(log, server.WithWebhookAllow(netip.MustParsePrefix("10.0.0.0/8")))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(t, api)
	rcv := newReceiver(t, nil)
	reg := register(t, srv, strings.Replace(rcv.URL, "127.0.0.1", "localhost", 1)+"/hook", `0`)

	testkit.Publish(t, srv.URL, "once")

	got := waitState(t, srv, reg.ID, "a failure", func(s registration) bool { return s.Failures > 0 })
	assert.Contains(t, got.LastError, "is not an allowed destination")
	assert.Empty(t, rcv.got, "deliveries that reached the receiver")
}

func TestWebhook_DeliversAResetWhenTheCursorCannotBeServed(t *testing.T) {
	for name, after := range map[string]string{
		"older than the history": `"run-1-1"`,
		"from an earlier run":    `"run-0-3"`,
	} {
		t.Run(name, func(t *testing.T) {
			srv, _ := start(t, 2)
			for i := range 4 {
				testkit.Publish(t, srv.URL, fmt.Sprintf("update %d", i+1))
			}
			rcv := newReceiver(t, nil)

			reg := register(t, srv, rcv.URL+"/hook", after)

			reset := rcv.next(t, reg.Secret)
			assert.Equal(t, "msg_reset-run-1-4", reset.header.Get(webhook.HeaderID))
			assert.JSONEq(t, `{"type":"reset","last":4,"epoch":"run-1"}`, string(reset.body))
			testkit.Publish(t, srv.URL, "update 5")
			var u feed.Update
			require.NoError(t, json.Unmarshal(rcv.next(t, reg.Secret).body, &u))
			assert.Equal(t, uint64(5), u.ID, "the update after the reset")
		})
	}
}
