package loadgen_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/loadgen"
	"realtime/06-grpc/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun_ShortPollingReportsAnswersAndPercentiles(t *testing.T) {
	log, err := feed.New(feed.DefaultHistory)
	require.NoError(t, err)
	api := server.New(log)
	srv := httptest.NewServer(api)
	defer srv.Close()
	testkit.ShutdownAtCleanup(t, api)
	var stdout, stderr bytes.Buffer

	err = loadgen.Run(t.Context(), []string{"loadgen", "-server", srv.URL, "-clients", "5",
		"-interval", "10ms", "-duration", "200ms", "-publish-rate", "50"}, &stdout, &stderr)

	require.NoError(t, err, stderr.String())
	assert.Regexp(t, `^short polling: 5 clients every 10ms for 200ms, \d+ updates published\n\d+ answers \(\d+/s\), 0 errors; answer time p50 \S+, p99 \S+, max \S+\n$`, stdout.String())
	assert.NotZero(t, log.Last(), "the load generator published")
}

func TestRun_RefusesBadFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"zero clients":     {"-clients", "0"},
		"unknown strategy": {"-strategy", "pigeon"},
		"server not a URL": {"-server", "::"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := loadgen.Run(t.Context(), append([]string{"loadgen"}, args...), &stdout, &stderr)
			assert.Error(t, err)
		})
	}
}

func TestRun_LongPollingReportsEveryBroadcastAndTheCostOfHeldPolls(t *testing.T) {
	log, err := feed.New(feed.DefaultHistory)
	require.NoError(t, err)
	mux := http.NewServeMux()
	api := server.New(log)
	mux.Handle("/", api)
	mux.Handle("GET /debug/runtime", server.RuntimeStats())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	testkit.ShutdownAtCleanup(t, api)
	var stdout, stderr bytes.Buffer

	err = loadgen.Run(t.Context(), []string{"loadgen", "-server", srv.URL, "-strategy", "long",
		"-clients", "20", "-rounds", "2", "-wait", "10s", "-ramp", "1000"}, &stdout, &stderr)

	require.NoError(t, err, stderr.String())
	assert.Regexp(t, `^long polling: 20 clients waiting \(wait=10s\), 2 broadcasts
server while holding them: [0-9.]+ goroutines, [0-9.]+ KiB heap, [0-9.]+ KiB stack per waiting client \(\d+ goroutines, \d+ MiB heap\+stack in all\)
broadcast 1: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
broadcast 2: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
errors: 0
$`, stdout.String())
}

func TestRun_SSEReportsEveryBroadcastAndTheCostOfIdleSubscribers(t *testing.T) {
	log, err := feed.New(feed.DefaultHistory)
	require.NoError(t, err)
	mux := http.NewServeMux()
	api := server.New(log)
	mux.Handle("/", api)
	mux.Handle("GET /debug/runtime", server.RuntimeStats())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	testkit.ShutdownAtCleanup(t, api)
	var stdout, stderr bytes.Buffer

	err = loadgen.Run(t.Context(), []string{"loadgen", "-server", srv.URL, "-strategy", "sse",
		"-clients", "20", "-rounds", "2", "-ramp", "1000"}, &stdout, &stderr)

	require.NoError(t, err, stderr.String())
	assert.Regexp(t, `^sse: 20 subscribers, 2 broadcasts
server while holding them: [0-9.]+ goroutines, [0-9.]+ KiB heap, [0-9.]+ KiB stack per idle subscriber \(\d+ goroutines, \d+ MiB heap\+stack in all\)
broadcast 1: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
broadcast 2: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
errors: 0
$`, stdout.String())
}

func TestRun_WSReportsEveryBroadcastAndTheCostOfIdleSockets(t *testing.T) {
	log, err := feed.New(feed.DefaultHistory)
	require.NoError(t, err)
	mux := http.NewServeMux()
	api := server.New(log)
	mux.Handle("/", api)
	mux.Handle("GET /debug/runtime", server.RuntimeStats())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	testkit.ShutdownAtCleanup(t, api)
	var stdout, stderr bytes.Buffer

	err = loadgen.Run(t.Context(), []string{"loadgen", "-server", srv.URL, "-strategy", "ws",
		"-clients", "20", "-rounds", "2", "-ramp", "1000"}, &stdout, &stderr)

	require.NoError(t, err, stderr.String())
	assert.Regexp(t, `^ws: 20 sockets, 2 broadcasts
server while holding them: [0-9.]+ goroutines, [0-9.]+ KiB heap, [0-9.]+ KiB stack per idle socket \(\d+ goroutines, \d+ MiB heap\+stack in all\)
broadcast 1: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
broadcast 2: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
errors: 0
$`, stdout.String())
}

func TestRun_GRPCReportsEveryBroadcastTheCostOfIdleStreamsAndTheWireAgainstItsFloor(t *testing.T) {
	for name, conns := range map[string]struct {
		flag, says string
	}{
		"streams over one connection": {"1", "20 streams over 1 connection"},
		"a connection per stream":     {"20", "20 streams over 20 connections"},
	} {
		t.Run(name, func(t *testing.T) {
			log, err := feed.New(feed.DefaultHistory)
			require.NoError(t, err)
			mux := http.NewServeMux()
			api := server.New(log)
			mux.Handle("/", api)
			mux.Handle("GET /debug/runtime", server.RuntimeStats())
			srv := httptest.NewServer(mux)
			defer srv.Close()
			testkit.ShutdownAtCleanup(t, api)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			rpc := grpcserver.New(log)
			go func() { _ = rpc.Serve(lis) }()
			testkit.ShutdownAtCleanup(t, rpc)
			var stdout, stderr bytes.Buffer

			err = loadgen.Run(t.Context(), []string{"loadgen", "-server", srv.URL, "-strategy", "grpc",
				"-grpc", lis.Addr().String(), "-grpc-conns", conns.flag,
				"-clients", "20", "-rounds", "2", "-ramp", "1000"}, &stdout, &stderr)

			require.NoError(t, err, stderr.String())
			assert.Regexp(t, fmt.Sprintf(`^grpc: %s, 2 broadcasts
server while holding them: [0-9.]+ goroutines, [0-9.]+ KiB heap, [0-9.]+ KiB stack per idle stream \(\d+ goroutines, \d+ MiB heap\+stack in all\)
broadcast 1: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
broadcast 2: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
wire: [0-9.]+ bytes read per update per stream, floor [0-9.]+ \(5-byte gRPC prefix, 9-byte HTTP/2 frame header, [0-9.]+-byte Update\): [0-9.]+×
errors: 0
$`, conns.says), stdout.String())
		})
	}
}

func TestRun_WebhookReportsEveryBroadcastThroughputAndWhatAFailingReceiverCosts(t *testing.T) {
	log, err := feed.New(feed.DefaultHistory)
	require.NoError(t, err)
	api := server.New(log)
	var deletes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/webhooks/") {
			deletes.Add(1)
		}
		api.ServeHTTP(w, r)
	}))
	defer srv.Close()
	testkit.ShutdownAtCleanup(t, api)
	var stdout, stderr bytes.Buffer

	err = loadgen.Run(t.Context(), []string{"loadgen", "-server", srv.URL, "-strategy", "webhook",
		"-clients", "20", "-rounds", "2", "-publish-rate", "50", "-duration", "200ms", "-failing", "1"}, &stdout, &stderr)

	require.NoError(t, err, stderr.String())
	assert.Regexp(t, `^webhook: 20 receivers, 10 updates at 50/s, 2 broadcasts, then 2 broadcasts with 1 receiver failing
steady: 200 of 200 deliveries in \S+ \(\d+/s\); update time to receipt p50 \S+, p99 \S+, max \S+
wire: 1\.00 requests, \d+ bytes per delivery \(both directions, headers included\)
broadcast 1: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
broadcast 2: 20 of 20 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
1 failing, broadcast 1: 19 of 19 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
1 failing, broadcast 2: 19 of 19 clients answered; publish to answer p50 \S+, p99 \S+, max \S+
healthy receivers' p99, median of the broadcasts: \S+ with none failing, \S+ with 1 failing \([0-9.]+×\)
errors: 0
$`, stdout.String())
	assert.Equal(t, int64(20), deletes.Load(), "the load generator deletes its registrations")
}
