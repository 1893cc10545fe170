package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/04-websockets/client"
	"realtime/04-websockets/feed"
	"realtime/04-websockets/internal/testkit"
	"realtime/04-websockets/server"
)

// startTracked runs the real handler behind wrap (nil for none), with an
// event stream's retry of a millisecond, and returns what drops its
// connections, upgraded ones too.
func startTracked(tb testing.TB, log *feed.Log, wrap func(http.Handler) http.Handler) (*testkit.Conns, *url.URL) {
	tb.Helper()
	api := server.New(log, server.WithRetry(time.Millisecond))
	var handler http.Handler = api
	if wrap != nil {
		handler = wrap(handler)
	}
	srv := httptest.NewUnstartedServer(handler)
	tcp := testkit.TrackConns(srv)
	srv.Start()
	tb.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(tb, api)
	base, err := url.Parse(srv.URL)
	require.NoError(tb, err)
	return tcp, base
}

// conformingStrategy returns the strategy called name, set up to be quick:
// a short poll every millisecond, a long poll held up to a minute.
func conformingStrategy(tb testing.TB, name string, base *url.URL) client.Strategy {
	tb.Helper()
	strategy, err := client.NewStrategy(name, client.Config{Server: base, Interval: time.Millisecond, Wait: time.Minute})
	require.NoError(tb, err)
	return strategy
}

// TestConformance is what every strategy of the chapter promises, run
// against each of them (client.Strategies), so that a strategy is added by
// passing it, not by copying tests. Each case runs the real handler.
func TestConformance(t *testing.T) {
	for _, name := range client.Strategies() {
		t.Run(name, func(t *testing.T) {
			for _, tc := range conformance {
				t.Run(tc.name, func(t *testing.T) {
					// Registered first, so checked last: after the client,
					// the server and their connections have ended.
					before := goleak.IgnoreCurrent()
					t.Cleanup(func() { goleak.VerifyNone(t, before) })
					tc.test(t, name)
				})
			}
		})
	}
}

var conformance = []struct {
	name string
	test func(t *testing.T, strategy string)
}{
	{"prints each update once and in order", func(t *testing.T, strategy string) {
		log := newLog(t, 16, "run-1")
		mustPublish(t, log, "a", "b")
		_, base := startTracked(t, log, nil)
		r := receive(t, conformingStrategy(t, strategy, base), strategy, 0)

		r.stdout.WaitForLines(t, 2)
		mustPublish(t, log, "c")
		got := r.stdout.WaitForLines(t, 3)

		if diff := cmp.Diff([]string{"1 a", "2 b", "3 c"}, got); diff != "" {
			t.Errorf("mismatch (-want +got):\n%s", diff)
		}
		assert.Empty(t, r.stderr.String())
	}},
	{"starts after the cursor", func(t *testing.T, strategy string) {
		log := newLog(t, 16, "run-1")
		mustPublish(t, log, "a", "b", "c")
		_, base := startTracked(t, log, nil)
		r := receiveAfter(t, conformingStrategy(t, strategy, base), strategy, feed.Cursor{After: 2, Epoch: "run-1"})

		mustPublish(t, log, "d")

		assert.Equal(t, []string{"3 c", "4 d"}, r.stdout.WaitForLines(t, 2))
	}},
	{"a cursor older than the history becomes a visible gap, and it continues", func(t *testing.T, strategy string) {
		log := newLog(t, 2, "run-1")
		mustPublish(t, log, "a", "b", "c", "d") // 1 and 2 are gone
		_, base := startTracked(t, log, nil)
		r := receive(t, conformingStrategy(t, strategy, base), strategy, 0)

		r.stderr.WaitFor(t, "gap: server cannot resume after update 0; updates may be missing; continuing from 4\n")
		mustPublish(t, log, "e")

		assert.Equal(t, []string{"5 e"}, r.stdout.WaitForLines(t, 1))
	}},
	{"a restarted server becomes a visible gap, and it continues", func(t *testing.T, strategy string) {
		log := newLog(t, 16, "run-2")
		mustPublish(t, log, "a")
		_, base := startTracked(t, log, nil)
		r := receiveAfter(t, conformingStrategy(t, strategy, base), strategy, feed.Cursor{After: 7, Epoch: "run-1"})

		r.stderr.WaitFor(t, "gap: server cannot resume after update 7; updates may be missing; continuing from 1\n")
		mustPublish(t, log, "b")

		assert.Equal(t, []string{"2 b"}, r.stdout.WaitForLines(t, 1))
	}},
	{"a reconnect loses nothing", func(t *testing.T, strategy string) {
		log := newLog(t, 16, "run-1")
		tcp, base := startTracked(t, log, nil)
		r := receive(t, conformingStrategy(t, strategy, base), strategy, 0)
		mustPublish(t, log, "a", "b")
		r.stdout.WaitForLines(t, 2)

		tcp.CloseAll()           // the connection drops
		mustPublish(t, log, "c") // while the client may be away
		mustPublish(t, log, "d")

		assert.Equal(t, []string{"1 a", "2 b", "3 c", "4 d"}, r.stdout.WaitForLines(t, 4))
	}},
	{"a server that speaks something else gets an error that names it", func(t *testing.T, strategy string) {
		page := func(http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte("<html>a captive portal</html>"))
			})
		}
		_, base := startTracked(t, newLog(t, 16, "run-1"), page)
		var out testkit.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), testkit.WaitTimeout)
		defer cancel()

		err := conformingStrategy(t, strategy, base).Receive(ctx, client.NewSession(client.SessionOptions{Stdout: &out, Stderr: &out}))

		require.Error(t, err)
		assert.Contains(t, err.Error(), base.Host, "says which server")
		assert.Empty(t, out.String(), "prints nothing")
	}},
	{"Run returns when the context ends", func(t *testing.T, strategy string) {
		log := newLog(t, 16, "run-1")
		mustPublish(t, log, "a")
		_, base := startTracked(t, log, nil)
		r := receive(t, conformingStrategy(t, strategy, base), strategy, 0)
		r.stdout.WaitForLines(t, 1) // connected, and waiting for more

		r.stop(t) // fails the test unless Run returns nil in time
	}},
}
