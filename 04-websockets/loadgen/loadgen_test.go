package loadgen_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/04-websockets/feed"
	"realtime/04-websockets/internal/testkit"
	"realtime/04-websockets/loadgen"
	"realtime/04-websockets/server"
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
