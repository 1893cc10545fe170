package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/natsfeed"
	"realtime/06-grpc/server"
	"realtime/06-grpc/webhook"
)

// testLease is the lease of the servers in these tests: long enough that a
// busy machine renews it in time, short enough to wait for one to run out.
const testLease = time.Second

// node is one server of a cluster, with its own connection to the broker.
type node struct {
	*httptest.Server
	nc *nats.Conn
}

// startCluster starts n servers on one embedded NATS: one log, and one
// bucket of webhook registrations, leased for lease; opts configure each.
func startCluster(t *testing.T, n int, lease time.Duration, opts ...server.Option) []node {
	t.Helper()
	ns := startNATS(t)
	nodes := make([]node, n)
	for i := range nodes {
		log, nc := openNATSLog(t, ns, natsfeed.Config{History: 64, Epoch: "run-1"})
		registrations, err := natsfeed.NewRegistrations(context.Background(), nc, natsfeed.Config{})
		require.NoError(t, err)
		srv, _ := startOn(t, log, append([]server.Option{server.WithSharedWebhooks(registrations, lease)}, opts...)...)
		nodes[i] = node{Server: srv, nc: nc}
	}
	return nodes
}

// awaitKnown waits until srv knows the registration id: a registration made
// on another server reaches it through the broker.
func awaitKnown(tb testing.TB, srv *httptest.Server, id string) {
	tb.Helper()
	awaitStatus(tb, srv, id, http.StatusOK)
}

// awaitStatus waits until srv answers GET /webhooks/{id} with status.
func awaitStatus(tb testing.TB, srv *httptest.Server, id string, status int) {
	tb.Helper()
	deadline := time.Now().Add(testkit.WaitTimeout)
	for {
		resp, body := get(tb, srv, http.MethodGet, "/webhooks/"+id, nil)
		if resp.StatusCode == status {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for GET /webhooks/%s to answer %d; it answers %d %s", testkit.WaitTimeout, id, status, resp.StatusCode, body)
		}
		time.Sleep(time.Millisecond) // a bounded poll: the broker's news has no hook to wait on
	}
}

// deliveredIDs reads n deliveries and returns their webhook-ids.
func deliveredIDs(tb testing.TB, rcv *receiver, secret string, n int) []string {
	tb.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = rcv.next(tb, secret).header.Get(webhook.HeaderID)
	}
	return ids
}

func TestSharedWebhooks_ARegistrationOnOneServerIsDeliveredOnceAndInOrder(t *testing.T) {
	nodes := startCluster(t, 3, testLease)
	rcv := newReceiver(t, nil)
	reg := register(t, nodes[0].Server, rcv.URL+"/hook", `0`)
	for _, n := range nodes[1:] {
		awaitKnown(t, n.Server, reg.ID)
	}

	// Updates published on every server: each is one update of the shared
	// log, delivered once, by one server, in the log's order.
	var want []string
	for i := range 6 {
		u := testkit.Publish(t, nodes[i%3].URL, fmt.Sprintf("update %d", i+1))
		want = append(want, fmt.Sprintf("msg_run-1-%d", u.ID))
	}

	if diff := cmp.Diff(want, deliveredIDs(t, rcv, reg.Secret, 6)); diff != "" {
		t.Errorf("webhook-ids delivered (-want +got):\n%s", diff)
	}
	for _, n := range nodes {
		got := waitState(t, n.Server, reg.ID, "6 deliveries", func(r registration) bool { return r.Delivered == 6 })
		assert.Equal(t, "run-1-6", got.Cursor, "every server shows how far it got")
	}
}

func TestSharedWebhooks_AnotherServerTakesOverWhenTheOneDeliveringIsGone(t *testing.T) {
	nodes := startCluster(t, 2, testLease)
	rcv := newReceiver(t, nil)
	reg := register(t, nodes[0].Server, rcv.URL+"/hook", `0`)
	awaitKnown(t, nodes[1].Server, reg.ID)
	testkit.Publish(t, nodes[1].URL, "before")
	assert.Equal(t, []string{"msg_run-1-1"}, deliveredIDs(t, rcv, reg.Secret, 1))
	// Once the record says so. A server that dies between a delivery and
	// its record is followed by one that delivers that update again, with
	// the same webhook-id, which the receiver knows.
	waitState(t, nodes[1].Server, reg.ID, "the delivery in the record", func(r registration) bool { return r.Delivered == 1 })

	// The server that took the registration loses the broker, as a server
	// that died would: it can renew its lease no more, so when the lease
	// runs out, the other server takes the registration over, from where
	// the record says the first one got to.
	nodes[0].nc.Close()
	testkit.Publish(t, nodes[1].URL, "after 1")
	testkit.Publish(t, nodes[1].URL, "after 2")

	assert.Equal(t, []string{"msg_run-1-2", "msg_run-1-3"}, deliveredIDs(t, rcv, reg.Secret, 2))
}

func TestSharedWebhooks_AServerThatShutsDownHandsItsRegistrationsOn(t *testing.T) {
	// A lease longer than the test waits: the other server can only
	// deliver if the first one lets the lease go.
	nodes := startCluster(t, 2, 10*testkit.WaitTimeout)
	rcv := newReceiver(t, nil)
	reg := register(t, nodes[0].Server, rcv.URL+"/hook", `0`)
	awaitKnown(t, nodes[1].Server, reg.ID)
	testkit.Publish(t, nodes[1].URL, "before")
	assert.Equal(t, []string{"msg_run-1-1"}, deliveredIDs(t, rcv, reg.Secret, 1))

	nodes[0].Close() // its handler's Shutdown lets the lease go
	require.NoError(t, nodes[0].Config.Handler.(*server.Server).Shutdown(context.Background()))
	testkit.Publish(t, nodes[1].URL, "after")

	assert.Equal(t, []string{"msg_run-1-2"}, deliveredIDs(t, rcv, reg.Secret, 1))
}

func TestSharedWebhooks_ADeleteOnAnyServerEndsTheRegistrationOnAll(t *testing.T) {
	nodes := startCluster(t, 2, testLease)
	rcv := newReceiver(t, nil)
	reg := register(t, nodes[0].Server, rcv.URL+"/hook", `0`)
	awaitKnown(t, nodes[1].Server, reg.ID)

	resp, body := get(t, nodes[1].Server, http.MethodDelete, "/webhooks/"+reg.ID, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, body)

	deadline := time.Now().Add(testkit.WaitTimeout)
	for {
		resp, _ := get(t, nodes[0].Server, http.MethodGet, "/webhooks/"+reg.ID, nil)
		if resp.StatusCode == http.StatusNotFound {
			break
		}
		require.False(t, time.Now().After(deadline), "the server it was registered on still has it after %v", testkit.WaitTimeout)
		time.Sleep(time.Millisecond) // a bounded poll, as awaitKnown
	}
}

func TestSharedWebhooks_ADisabledRegistrationThatGivesItsPlaceIsGoneFromEveryServer(t *testing.T) {
	nodes := startCluster(t, 2, testLease, server.WithMaxWebhooks(1))
	gone := newReceiver(t, func(http.ResponseWriter, *http.Request) int { return http.StatusGone })
	old := register(t, nodes[0].Server, gone.URL+"/hook", `0`)
	testkit.Publish(t, nodes[0].URL, "once") // the 410 disables it
	waitState(t, nodes[1].Server, old.ID, "disabled, on the other server too", func(r registration) bool { return r.Disabled })

	// At the cap on the other server: the disabled registration gives its
	// place there, and is deleted from the store, so that no server keeps
	// counting it.
	register(t, nodes[1].Server, "http://127.0.0.1:9/new", `0`)
	awaitStatus(t, nodes[1].Server, old.ID, http.StatusNotFound)
	awaitStatus(t, nodes[0].Server, old.ID, http.StatusNotFound)
}
