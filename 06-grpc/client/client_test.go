package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fastRetry keeps reconnect tests quick; Backoff's own test covers the curve.
var fastRetry = client.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond}

// startServer runs the real server handler with opts, optionally behind
// wrap.
func startServer(tb testing.TB, log *feed.Log, wrap func(http.Handler) http.Handler, opts ...server.Option) *url.URL {
	tb.Helper()
	api := server.New(log, opts...)
	var handler http.Handler = api
	if wrap != nil {
		handler = wrap(handler)
	}
	srv := httptest.NewServer(handler)
	tb.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(tb, api)
	base, err := url.Parse(srv.URL)
	require.NoError(tb, err)
	return base
}

func newLog(tb testing.TB, history int, epoch string) *feed.Log {
	tb.Helper()
	log, err := feed.New(history, feed.WithEpoch(epoch))
	require.NoError(tb, err)
	return log
}

func mustPublish(tb testing.TB, log *feed.Log, texts ...string) {
	tb.Helper()
	for _, text := range texts {
		_, err := log.Publish(text)
		require.NoError(tb, err)
	}
}

// receiver is a client running in the background, as cmd/client runs it.
type receiver struct {
	stdout, stderr testkit.Buffer
	cancel         context.CancelFunc
	done           chan error
}

// receive runs strategy with a new session from after until the test ends.
func receive(tb testing.TB, strategy client.Strategy, name string, after uint64) *receiver {
	tb.Helper()
	return receiveAfter(tb, strategy, name, feed.Cursor{After: after})
}

// receiveAfter runs strategy with a new session from cursor until the test
// ends.
func receiveAfter(tb testing.TB, strategy client.Strategy, name string, cursor feed.Cursor) *receiver {
	tb.Helper()
	r := &receiver{done: make(chan error, 1)}
	session := client.NewSession(client.SessionOptions{Strategy: name, After: cursor.After, Epoch: cursor.Epoch, Stdout: &r.stdout, Stderr: &r.stderr})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- client.Run(ctx, strategy, session, fastRetry, &r.stderr) }()
	tb.Cleanup(func() { r.stop(tb) })
	return r
}

// stop cancels the client and waits for Run to return.
func (r *receiver) stop(tb testing.TB) {
	tb.Helper()
	r.cancel()
	err := testkit.Receive(tb, r.done, "Run to return after its context ended")
	assert.NoError(tb, err, "Run returns nil when its context ends")
	r.done <- err // let a second stop see it too
}

func shortPoll(tb testing.TB, base *url.URL) client.Strategy {
	tb.Helper()
	strategy, err := client.NewStrategy("short", client.Config{Server: base, Interval: time.Millisecond})
	require.NoError(tb, err)
	return strategy
}

func TestNewStrategy_RefusesNamesItDoesNotSpeak(t *testing.T) {
	tests := []struct{ name, strategy, message string }{
		{"a made-up strategy", "pigeon", `unknown strategy "pigeon": choose one of short, long, sse, ws, webhook, grpc`},
		{"an empty name", "", `unknown strategy "": choose one of short, long, sse, ws, webhook, grpc`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.NewStrategy(tt.strategy, client.Config{})
			require.ErrorIs(t, err, client.ErrUnknownStrategy)
			assert.EqualError(t, err, tt.message)
		})
	}
}

func TestBackoff_DoublesWithJitterUpToTheCap(t *testing.T) {
	backoff := client.Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	for n, ceiling := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceiling *= time.Millisecond
		for range 50 {
			d := backoff.Delay(n)
			assert.GreaterOrEqual(t, d, ceiling/2, "failure %d", n)
			assert.LessOrEqual(t, d, ceiling, "failure %d", n)
		}
	}
	assert.LessOrEqual(t, backoff.Delay(1000), time.Second, "no overflow after many failures")
}

func TestShortPoll_PrintsAnUpdateOnceWhenNothingChanged(t *testing.T) {
	log := newLog(t, 16, "run-1")
	mustPublish(t, log, "taxi at the station")
	polls := make(chan struct{}, 100)
	countPolls := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			select {
			case polls <- struct{}{}:
			default: // the test has seen enough polls
			}
		})
	}
	r := receive(t, shortPoll(t, startServer(t, log, countPolls)), "short", 0)

	for range 3 {
		testkit.Receive(t, polls, "the next poll") // the client asked three times; nothing changed after the first
	}

	assert.Equal(t, []string{"1 taxi at the station"}, r.stdout.Lines())
}

func TestShortPoll_PrintsEveryUpdateThatArrivedBetweenPolls(t *testing.T) {
	log := newLog(t, 16, "run-1")
	mustPublish(t, log, "taxi at the station", "taxi on the bridge")
	r := receive(t, shortPoll(t, startServer(t, log, nil)), "short", 0)

	got := r.stdout.WaitForLines(t, 2)

	assert.Equal(t, []string{"1 taxi at the station", "2 taxi on the bridge"}, got)
}

func TestRun_RetriesWhileTheServerFailsAndLosesNothing(t *testing.T) {
	log := newLog(t, 16, "run-1")
	mustPublish(t, log, "a", "b")
	var failures atomic.Int32
	failThrice := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if failures.Add(1) <= 3 {
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	r := receive(t, shortPoll(t, startServer(t, log, failThrice)), "short", 0)

	got := r.stdout.WaitForLines(t, 2)

	assert.Equal(t, []string{"1 a", "2 b"}, got)
	assert.Equal(t, 3, len(r.stderr.Lines()), "one line per failed attempt:\n%s", r.stderr.String())
	assert.Contains(t, r.stderr.String(), "503 Service Unavailable: down for maintenance; retrying in")
}

func TestRun_ReturnsWhenItsContextEnds(t *testing.T) {
	unreachable := &url.URL{Scheme: "http", Host: "127.0.0.1:1"} // nothing listens on port 1
	r := receive(t, shortPoll(t, unreachable), "short", 0)
	r.stderr.WaitFor(t, "retrying in")
	r.stop(t)
}

// failing is a Strategy that fails at once, to show what Run does with errors.
type failing struct{}

func (failing) Receive(context.Context, *client.Session) error { return errors.New("no route") }

func TestRun_ReportsEachFailureOnStderr(t *testing.T) {
	r := receive(t, failing{}, "test", 0)
	r.stderr.WaitFor(t, "test: no route; retrying in ")
}
