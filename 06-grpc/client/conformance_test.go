package client_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
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

// target is where the strategies find one test server: the HTTP handler
// at the URL, the gRPC service at grpc (host:port).
type target struct {
	*url.URL
	grpc string
}

// startServing runs the real handler, as startTracked does, and the real
// gRPC server of the same log; what drops connections drops both servers'.
func startServing(tb testing.TB, log *feed.Log, wrap func(http.Handler) http.Handler) (*testkit.Conns, target) {
	tb.Helper()
	tcp, base := startTracked(tb, log, wrap)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	tb.Cleanup(serveGRPC(tb, log, tcp.Track(lis)))
	return tcp, target{URL: base, grpc: lis.Addr().String()}
}

// serveGRPC serves log with the real gRPC server on lis, and returns what
// shuts it down, which a test must call.
func serveGRPC(tb testing.TB, log *feed.Log, lis net.Listener) (shutdown func()) {
	tb.Helper()
	srv := grpcserver.New(log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
		defer cancel()
		require.NoError(tb, srv.Shutdown(ctx))
		testkit.Receive(tb, served, "Serve to return after the shutdown")
	}
}

// restartable is the real handler and the real gRPC server, each on one
// address, restarted by the test: a new run with a log of its own, the old
// one shut down and its connections dropped, as a server process that
// restarts on the same ports.
type restartable struct {
	tcp      *testkit.Conns
	current  atomic.Pointer[server.Server]
	log      atomic.Pointer[feed.Log]
	grpcLis  net.Listener
	stopGRPC func()
}

func startRestartable(tb testing.TB, log *feed.Log) (*restartable, target) {
	tb.Helper()
	s := &restartable{}
	s.log.Store(log)
	s.current.Store(server.New(log, server.WithRetry(time.Millisecond)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.current.Load().ServeHTTP(w, r)
	}))
	s.tcp = testkit.TrackConns(srv)
	srv.Start()
	tb.Cleanup(srv.Close)
	tb.Cleanup(func() { shutdown(tb, s.current.Load()) })
	base, err := url.Parse(srv.URL)
	require.NoError(tb, err)
	s.grpcLis, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	s.stopGRPC = serveGRPC(tb, log, s.tcp.Track(s.grpcLis))
	tb.Cleanup(func() { s.stopGRPC() }) // the run of the moment
	return s, target{URL: base, grpc: s.grpcLis.Addr().String()}
}

// restart replaces the server's run with a new one that reads log.
func (s *restartable) restart(tb testing.TB, log *feed.Log) {
	tb.Helper()
	s.log.Store(log)
	old := s.current.Swap(server.New(log, server.WithRetry(time.Millisecond)))
	// The old gRPC run takes no new connection, then loses the ones it has:
	// a client that dials again meets the new run, or nothing until it
	// listens.
	require.NoError(tb, s.grpcLis.Close())
	s.tcp.CloseAll()
	shutdown(tb, old)
	s.stopGRPC()
	var err error
	s.grpcLis, err = net.Listen("tcp", s.grpcLis.Addr().String())
	require.NoError(tb, err, "listen again on the gRPC port")
	s.stopGRPC = serveGRPC(tb, log, s.tcp.Track(s.grpcLis))
}

// publish publishes texts in the current run.
func (s *restartable) publish(tb testing.TB, texts ...string) {
	tb.Helper()
	mustPublish(tb, s.log.Load(), texts...)
}

// shutdown shuts api down, and fails the test if it takes too long.
func shutdown(tb testing.TB, api *server.Server) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	require.NoError(tb, api.Shutdown(ctx))
}

// conformingConfig sets every strategy up to be quick: a short poll every
// millisecond, a long poll held up to a minute, a webhook's registration
// checked every few milliseconds.
func conformingConfig(at target) client.Config {
	return client.Config{Server: at.URL, GRPC: at.grpc, Interval: time.Millisecond, Wait: time.Minute, CheckInterval: 5 * time.Millisecond}
}

// conformingStrategy returns the strategy called name, set up to be quick
// (conformingConfig).
func conformingStrategy(tb testing.TB, name string, at target) client.Strategy {
	tb.Helper()
	strategy, err := client.NewStrategy(name, conformingConfig(at))
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
		_, base := startServing(t, log, nil)
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
		_, base := startServing(t, log, nil)
		r := receiveAfter(t, conformingStrategy(t, strategy, base), strategy, feed.Cursor{After: 2, Epoch: "run-1"})

		mustPublish(t, log, "d")

		assert.Equal(t, []string{"3 c", "4 d"}, r.stdout.WaitForLines(t, 2))
	}},
	{"a cursor older than the history becomes a visible gap, and it continues", func(t *testing.T, strategy string) {
		log := newLog(t, 2, "run-1")
		mustPublish(t, log, "a", "b", "c", "d") // 1 and 2 are gone
		_, base := startServing(t, log, nil)
		r := receive(t, conformingStrategy(t, strategy, base), strategy, 0)

		r.stderr.WaitFor(t, "gap: server cannot resume after update 0; updates may be missing; continuing from 4\n")
		mustPublish(t, log, "e")

		assert.Equal(t, []string{"5 e"}, r.stdout.WaitForLines(t, 1))
	}},
	{"a restarted server becomes a visible gap, and it continues", func(t *testing.T, strategy string) {
		log := newLog(t, 16, "run-2")
		mustPublish(t, log, "a")
		_, base := startServing(t, log, nil)
		r := receiveAfter(t, conformingStrategy(t, strategy, base), strategy, feed.Cursor{After: 7, Epoch: "run-1"})

		r.stderr.WaitFor(t, "gap: server cannot resume after update 7; updates may be missing; continuing from 1\n")
		mustPublish(t, log, "b")

		assert.Equal(t, []string{"2 b"}, r.stdout.WaitForLines(t, 1))
	}},
	{"a reconnect loses nothing", func(t *testing.T, strategy string) {
		log := newLog(t, 16, "run-1")
		tcp, base := startServing(t, log, nil)
		r := receive(t, conformingStrategy(t, strategy, base), strategy, 0)
		mustPublish(t, log, "a", "b")
		r.stdout.WaitForLines(t, 2)

		// A webhook receiver's own connections to the server (its
		// registration, its checks) are the ones dropped: deliveries come
		// on connections the server opens, and it dials them again.
		tcp.CloseAll()           // the connection drops
		mustPublish(t, log, "c") // while the client may be away
		mustPublish(t, log, "d")

		assert.Equal(t, []string{"1 a", "2 b", "3 c", "4 d"}, r.stdout.WaitForLines(t, 4))
	}},
	{"a server that restarts while the client receives becomes a visible gap, and it continues", func(t *testing.T, strategy string) {
		srv, base := startRestartable(t, newLog(t, 16, "run-1"))
		r := receive(t, conformingStrategy(t, strategy, base), strategy, 0)
		srv.publish(t, "a", "b")
		r.stdout.WaitForLines(t, 2)

		// A stream or a socket breaks; a poll asks the new run; a webhook
		// receiver hears nothing, and learns it when its registration is
		// gone.
		srv.restart(t, newLog(t, 16, "run-2"))

		r.stderr.WaitFor(t, "gap: server cannot resume after update 2; updates may be missing; continuing from 0\n")
		srv.publish(t, "c")

		assert.Equal(t, []string{"1 a", "2 b", "1 c"}, r.stdout.WaitForLines(t, 3))
	}},
	{"a server that speaks something else gets an error that names it", func(t *testing.T, strategy string) {
		page := func(http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte("<html>a captive portal</html>"))
			})
		}
		_, base := startServing(t, newLog(t, 16, "run-1"), page)
		base.grpc = base.Host // a gRPC client meets the page too
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
		_, base := startServing(t, log, nil)
		r := receive(t, conformingStrategy(t, strategy, base), strategy, 0)
		r.stdout.WaitForLines(t, 1) // connected, and waiting for more

		r.stop(t) // fails the test unless Run returns nil in time
	}},
}
