package client_test

import (
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/client"
	"realtime/06-grpc/internal/testkit"
)

// longPoll returns the long-polling strategy with the given wait, and a
// short-poll interval of an hour: anything that arrives sooner did not come
// from short polling.
func longPoll(tb testing.TB, base *url.URL, wait time.Duration) client.Strategy {
	tb.Helper()
	strategy, err := client.NewStrategy("long", client.Config{Server: base, Interval: time.Hour, Wait: wait})
	require.NoError(tb, err)
	return strategy
}

// notifyPolls reports each poll as it reaches the server.
func notifyPolls(polls chan<- *http.Request) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case polls <- r:
			default:
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestLongPoll_DeliversWellInsideTheShortPollInterval(t *testing.T) {
	log := newLog(t, 16, "run-1")
	polls := make(chan *http.Request, 1)
	r := receive(t, longPoll(t, startServer(t, log, notifyPolls(polls)), 30*time.Second), "long", 0)

	testkit.Receive(t, polls, "the client's first poll") // the client is waiting
	mustPublish(t, log, "taxi at the station")

	assert.Equal(t, []string{"1 taxi at the station"}, r.stdout.WaitForLines(t, 1),
		"delivered within %v, not after the hour-long interval", testkit.WaitTimeout)
}

func TestLongPoll_AsksTheServerToHoldForTheWait(t *testing.T) {
	log := newLog(t, 16, "run-1")
	polls := make(chan *http.Request, 1)
	receive(t, longPoll(t, startServer(t, log, notifyPolls(polls)), 25*time.Second), "long", 0)

	first := testkit.Receive(t, polls, "the client's first poll")

	assert.Equal(t, "after=0&wait=25s", first.URL.RawQuery)
}

func TestLongPoll_PrintsAnUpdateThatLandsBetweenTwoPolls(t *testing.T) {
	log := newLog(t, 16, "run-1")
	mustPublish(t, log, "a")
	var answered atomic.Int32
	publishAfterFirstAnswer := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if answered.Add(1) == 1 {
				// After the answer, before the next poll. This is the
				// handler's goroutine, where require cannot stop the test.
				_, err := log.Publish("b")
				assert.NoError(t, err)
			}
		})
	}
	r := receive(t, longPoll(t, startServer(t, log, publishAfterFirstAnswer), 30*time.Second), "long", 0)

	assert.Equal(t, []string{"1 a", "2 b"}, r.stdout.WaitForLines(t, 2))
}

func TestLongPoll_PollsAgainWhenAWaitEndsWithNothingNew(t *testing.T) {
	log := newLog(t, 16, "run-1")
	polls := make(chan *http.Request, 3)
	r := receive(t, longPoll(t, startServer(t, log, notifyPolls(polls)), time.Millisecond), "long", 0)

	for range 3 {
		testkit.Receive(t, polls, "the next poll") // each wait ended with 204, and the client asked again
	}
	mustPublish(t, log, "finally")

	assert.Equal(t, []string{"1 finally"}, r.stdout.WaitForLines(t, 1))
	assert.Empty(t, r.stderr.String(), "a 204 is not an error")
}
