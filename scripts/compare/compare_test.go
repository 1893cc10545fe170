package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The floor's relay is this program started again: in a test, the test
	// binary.
	relayIfAsked()
	goleak.VerifyTestMain(m)
}

// TestRun_SmokeSizeWritesTheTableTheChartsAndTheResults is the CI's proof
// that the command works end to end: it builds and starts the chapter's
// server, measures every workload at the smallest size, with the broker
// hop's (-nats) too, and writes everything it promises.
func TestRun_SmokeSizeWritesTheTableTheChartsAndTheResults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server: not in -short")
	}
	out := t.TempDir()
	notes := filepath.Join(t.TempDir(), "NOTES.md")
	require.NoError(t, os.WriteFile(notes, []byte("# Notes\n\nbefore\n"+compareMarkers.begin+"\nold table\n"+compareMarkers.end+"\nbetween\n"+
		natsMarkers.begin+"\nold nats table\n"+natsMarkers.end+"\nafter\n"), 0o644))
	readme := filepath.Join(t.TempDir(), "README.md")
	require.NoError(t, os.WriteFile(readme, []byte(compareMarkers.begin+"\nold table\n"+compareMarkers.end+"\n"), 0o644))
	t.Chdir(filepath.Join("..", ".."))

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"compare", "-size", "smoke", "-nats", "-out", out, "-markdown", notes + "," + readme, "-progress", "auto"}, nil, &stdout, &stderr)
	require.NoError(t, err, "stderr:\n%s", stderr.String())

	for _, s := range append([]string{floor, grpcConnEach}, strategies...) {
		assert.Contains(t, stdout.String(), "| "+displayName(s)+" |", "a row for %s", s)
	}
	assert.Contains(t, stdout.String(), "**Goals**")
	assert.Contains(t, stdout.String(), "Measured by `go run ./scripts/compare -nats` (size smoke)")
	assert.Contains(t, stderr.String(), "compare: [0/44 ", "progress as plain lines where stderr is no terminal")
	assert.Contains(t, stderr.String(), "done: dead peer: grpc")
	assert.Contains(t, stderr.String(), "done: latency at 50/s, log in NATS: grpc")
	assert.Contains(t, stderr.String(), "done: broadcast, log in NATS: sse to 10")

	written, err := os.ReadFile(notes)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(written), "# Notes\n\nbefore\n"+compareMarkers.begin+"\nMeasured by `go run ./scripts/compare` (size smoke)"), "the table replaces what was between the markers:\n%s", written)
	assert.Contains(t, string(written), "\n"+compareMarkers.end+"\nbetween\n"+natsMarkers.begin+"\nMeasured by `go run ./scripts/compare -nats` (size smoke)", "the broker hop's table replaces what was between its markers")
	assert.True(t, strings.HasSuffix(string(written), "\n"+natsMarkers.end+"\nafter\n"), "what follows the markers stays:\n%s", written)
	assert.NotContains(t, string(written), "old table")
	assert.NotContains(t, string(written), "old nats table")
	written, err = os.ReadFile(readme)
	require.NoError(t, err)
	assert.NotContains(t, string(written), "-nats", "a file without the broker hop's markers gets only the table")

	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	var results Results
	require.NoError(t, json.Unmarshal(data, &results))
	assert.Len(t, results.Latency, 2*(len(strategies)+1), "every strategy and the floor at both rates")
	assert.Len(t, results.Fanout, len(fanoutStrategies)+1, "every strategy and the floor")
	assert.Len(t, results.DeadPeer, len(deadPeerStrategies))
	for _, l := range results.Latency {
		assert.Positive(t, l.P50, "%s at %g/s", l.Strategy, l.Rate)
		assert.GreaterOrEqual(t, l.Max, l.P99, "%s at %g/s", l.Strategy, l.Rate)
	}
	require.NotNil(t, results.Nats, "the broker hop's results")
	assert.Len(t, results.Nats.Latency, 2*len(strategies), "every strategy at both rates, with the log in NATS")
	for _, l := range results.Nats.Latency {
		assert.Positive(t, l.P50, "%s at %g/s, NATS", l.Strategy, l.Rate)
		assert.GreaterOrEqual(t, l.Max, l.P99, "%s at %g/s, NATS", l.Strategy, l.Rate)
	}
	assert.Len(t, results.Nats.Publish, 2*len(sizes["smoke"].Nats.Publishers), "every publisher count with either log")
	for _, p := range results.Nats.Publish {
		assert.Positive(t, p.Published, "%s, %d publishers", p.Log, p.Publishers)
		assert.Positive(t, p.PerSecond, "%s, %d publishers", p.Log, p.Publishers)
	}
	assert.Len(t, results.Nats.Broadcast, 2, "a broadcast with either log")

	assertCharts(t, out)

	// -from draws the same again from the results alone, measuring nothing.
	redrawn := t.TempDir()
	var again bytes.Buffer
	err = run(context.Background(), []string{"compare", "-from", filepath.Join(out, "results.json"), "-out", redrawn, "-markdown", ""}, nil, &again, io.Discard)
	require.NoError(t, err)
	assertCharts(t, redrawn)
	assert.Contains(t, again.String(), results.Markdown(), "the same table")
	assert.Contains(t, again.String(), results.NatsMarkdown(), "the same broker hop's table")
}

// assertCharts checks that dir holds the four charts, each an SVG document.
func assertCharts(t *testing.T, dir string) {
	t.Helper()
	for _, chart := range []string{"latency.svg", "bytes.svg", "broadcast.svg", "memory.svg"} {
		f, err := os.Open(filepath.Join(dir, chart))
		if !assert.NoError(t, err) {
			continue
		}
		var root struct{ XMLName xml.Name }
		assert.NoError(t, xml.NewDecoder(f).Decode(&root), chart)
		assert.Equal(t, "svg", root.XMLName.Local, chart)
		f.Close()
	}
}

func TestRun_RefusesWhatItCannotDo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-size", "huge"}, `-size "huge": choose full or smoke`},
		{[]string{"-progress", "spinner"}, `-progress "spinner": choose bar, lines or auto`},
		{[]string{"-markdown", "no-such-file.md"}, "no-such-file.md"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
		{[]string{"-from", "no-such-results.json", "-markdown", ""}, "no-such-results.json"},
	} {
		err := run(context.Background(), append([]string{"compare"}, tc.args...), nil, io.Discard, io.Discard)
		if assert.Error(t, err, "%v", tc.args) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
}

func TestParseLoadgen_ReadsTheBroadcastsAndTheIdleCost(t *testing.T) {
	report := `sse: 20 subscribers, 3 broadcasts
server while holding them: 2.00 goroutines, 2.4 KiB heap, 8.0 KiB stack per idle subscriber (48 goroutines, 2 MiB heap+stack in all)
broadcast 1: 20 of 20 clients answered; publish to answer p50 1.11ms, p99 1.34ms, max 1.4ms
broadcast 2: 20 of 20 clients answered; publish to answer p50 730µs, p99 980µs, max 980µs
broadcast 3: 20 of 20 clients answered; publish to answer p50 2ms, p99 3ms, max 3.5ms
errors: 0
`
	fan, idle, err := parseLoadgen(FanoutResult{Strategy: "sse", Subscribers: 20, Rounds: 3}, report)
	require.NoError(t, err)
	assert.Equal(t, FanoutResult{Strategy: "sse", Subscribers: 20, Rounds: 3,
		P50: 1110 * time.Microsecond, P99: 1340 * time.Microsecond, Max: 3500 * time.Microsecond}, fan)
	assert.Equal(t, &IdleResult{Strategy: "sse", Subscribers: 20, Goroutines: 2, HeapKiB: 2.4, StackKiB: 8}, idle)

	for name, bad := range map[string]string{
		"errors":          strings.Replace(report, "errors: 0", "errors: 2", 1),
		"a missed client": strings.Replace(report, "20 of 20", "19 of 20", 1),
		"a lost round":    strings.Replace(report, "broadcast 3", "broadcast", 1),
		"no errors line":  strings.Replace(report, "errors: 0", "", 1),
	} {
		_, _, err := parseLoadgen(FanoutResult{Strategy: "sse", Subscribers: 20, Rounds: 3}, bad)
		assert.Error(t, err, name)
	}
}

func TestBetweenMarkers_ReplacesOnlyWhatIsBetweenThem(t *testing.T) {
	beginMarker, endMarker := compareMarkers.begin, compareMarkers.end
	got, err := betweenMarkers([]byte("a\n"+beginMarker+"\nold\n"+endMarker+"\nb\n"), compareMarkers, "new\n\n")
	require.NoError(t, err)
	assert.Equal(t, "a\n"+beginMarker+"\nnew\n"+endMarker+"\nb\n", string(got))

	both := "a\n" + beginMarker + "\nold\n" + endMarker + "\nb\n" + natsMarkers.begin + "\nold\n" + natsMarkers.end + "\nc\n"
	got, err = betweenMarkers([]byte(both), natsMarkers, "nats")
	require.NoError(t, err)
	assert.Equal(t, "a\n"+beginMarker+"\nold\n"+endMarker+"\nb\n"+natsMarkers.begin+"\nnats\n"+natsMarkers.end+"\nc\n", string(got), "one pair of markers leaves the other alone")
	got, err = betweenMarkers([]byte(both), compareMarkers, "table")
	require.NoError(t, err)
	assert.Equal(t, "a\n"+beginMarker+"\ntable\n"+endMarker+"\nb\n"+natsMarkers.begin+"\nold\n"+natsMarkers.end+"\nc\n", string(got), "one pair of markers leaves the other alone")

	for name, doc := range map[string]string{
		"no begin":  "a\n" + endMarker + "\n",
		"no end":    beginMarker + "\nold\n",
		"two begin": beginMarker + "\n" + endMarker + "\n" + beginMarker + "\n" + endMarker + "\n",
		"only nats": natsMarkers.begin + "\n" + natsMarkers.end + "\n",
	} {
		_, err := betweenMarkers([]byte(doc), compareMarkers, "new")
		assert.Error(t, err, name)
	}
}

func TestNatsMarkdown_ShowsTheBrokerHopAsRatios(t *testing.T) {
	r := &Results{Size: "full"}
	assert.Empty(t, r.NatsMarkdown(), "nothing without -nats")

	r.Nats = &NatsResults{}
	for _, s := range strategies {
		for _, rate := range []float64{2, 50} {
			r.Latency = append(r.Latency, LatencyResult{Strategy: s, Rate: rate, P50: time.Millisecond, P99: 2 * time.Millisecond, CPU: 0.1})
			r.Nats.Latency = append(r.Nats.Latency, LatencyResult{Strategy: s, Rate: rate, P50: 1500 * time.Microsecond, P99: 5 * time.Millisecond, CPU: 0.25})
		}
	}
	r.Nats.Publish = []PublishResult{
		{Log: "memory", Publishers: 1, Elapsed: 5 * time.Second, PerSecond: 4000, P50: 200 * time.Microsecond, P99: 500 * time.Microsecond, CPU: 0.1},
		{Log: "nats", Publishers: 1, Elapsed: 5 * time.Second, PerSecond: 1000, P50: 800 * time.Microsecond, P99: 2 * time.Millisecond, CPU: 0.3},
		{Log: "memory", Publishers: 16, Elapsed: 5 * time.Second, PerSecond: 12000, P50: time.Millisecond, P99: 4 * time.Millisecond, CPU: 0.08},
		{Log: "nats", Publishers: 16, Elapsed: 5 * time.Second, PerSecond: 6000, P50: 2 * time.Millisecond, P99: 6 * time.Millisecond, CPU: -1},
	}
	r.Nats.Broadcast = []LogFanout{
		{Log: "memory", FanoutResult: FanoutResult{Strategy: "sse", Subscribers: 1000, Rounds: 5, P50: 10 * time.Millisecond, P99: 20 * time.Millisecond, Max: 25 * time.Millisecond}},
		{Log: "nats", FanoutResult: FanoutResult{Strategy: "sse", Subscribers: 1000, Rounds: 5, P50: 11 * time.Millisecond, P99: 22 * time.Millisecond, Max: 30 * time.Millisecond}},
	}
	table := r.NatsMarkdown()
	for _, want := range []string{
		"| strategy | 2/s p50 / p99, memory | NATS | × | 50/s p50 / p99, memory | NATS | × | CPU ms per update at 50/s, memory | NATS | × |\n|---|" + strings.Repeat("---:|", 9) + "\n",
		"| sse | 1.00 ms / 2.00 ms | 1.50 ms / 5.00 ms | 1.50 / 2.50 | 1.00 ms / 2.00 ms | 1.50 ms / 5.00 ms | 1.50 / 2.50 | 0.10 | 0.25 | 2.50 |\n",
		"| publishes per second, 1 publisher | 4,000 | 1,000 | 0.25 |\n",
		"| a publish, p50 / p99, 16 publishers | 1.00 ms / 4.00 ms | 2.00 ms / 6.00 ms | 2.00 / 1.50 |\n",
		"| server CPU ms per publish, 16 publishers | 0.080 | — | — |\n",
		"| broadcast to 1,000 SSE subscribers, p50 / p99 / max (5 rounds) | 10.0 ms / 20.0 ms / 25.0 ms | 11.0 ms / 22.0 ms / 30.0 ms | 1.10 / 1.10 / 1.20 |\n",
		"for 5.0 s each",
	} {
		assert.Contains(t, table, want)
	}
}

func TestGoals_SayMetOrMissedAndByHowMuch(t *testing.T) {
	r := &Results{}
	for s, p50 := range map[string]time.Duration{floor: 100, "long": 140, "sse": 120, "ws": 130, "webhook": 160, "grpc": 150} {
		r.Latency = append(r.Latency, LatencyResult{Strategy: s, Rate: 2, P50: p50 * time.Microsecond})
	}
	for s, p99 := range map[string]time.Duration{"long": 30, "sse": 10, "ws": 12, "webhook": 25, "grpc": 15} {
		r.Fanout = append(r.Fanout, FanoutResult{Strategy: s, Subscribers: 10000, P99: p99 * time.Millisecond})
	}
	r.Idle = []IdleResult{{Strategy: "sse", Subscribers: 10000, HeapKiB: 2.4, StackKiB: 8}, {Strategy: "ws", Subscribers: 10000, HeapKiB: 6.4, StackKiB: 8}}
	want := []string{
		"Every push strategy's p50 at 2/s within 1.5× of the loopback floor's: **missed** (long 1.40×, sse 1.20×, ws 1.30×, webhook 1.60×, grpc 1.50×).",
		"WebSocket's and gRPC's p50 at 2/s within 1.2× of SSE's: **missed** (ws 1.08×, grpc 1.25×).",
		"Broadcast to 10,000: every push strategy's p99 within 2× of the best one's: **missed** (long 3.00×, sse 1.00×, ws 1.20×, webhook 2.50×, grpc 1.50×).",
		"Memory per idle subscriber, SSE and WebSocket at most 12 KiB: **missed** (sse 10.4 KiB, ws 14.4 KiB).",
	}
	if diff := cmp.Diff(want, r.Goals()); diff != "" {
		t.Errorf("goals (-want +got):\n%s", diff)
	}
}

func TestPercentile_IsTheNearestRank(t *testing.T) {
	var sorted []time.Duration
	for i := 1; i <= 100; i++ {
		sorted = append(sorted, time.Duration(i))
	}
	assert.Equal(t, time.Duration(50), percentile(sorted, 0.50))
	assert.Equal(t, time.Duration(99), percentile(sorted, 0.99))
	assert.Equal(t, time.Duration(3), percentile(sorted[:3], 0.99), "of three, the 99th is the largest")
	assert.Equal(t, time.Duration(0), percentile(nil, 0.5))
}

// TestRelay_ForwardsUntilFrozenThenPassesNothingOn: a frozen relay is a
// peer that died; the far end must learn nothing from it, a close included.
func TestRelay_ForwardsUntilFrozenThenPassesNothingOn(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer target.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := target.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	r, err := newRelay(target.Addr().String())
	require.NoError(t, err)
	defer r.close()

	c, err := net.Dial("tcp", r.addr())
	require.NoError(t, err)
	far := <-accepted
	require.NotNil(t, far)
	defer far.Close()
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(far, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf), "forwarded before the freeze")

	r.freeze()
	_, err = c.Write([]byte("lost"))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	// Nothing can prove that nothing arrives; a second is many times what
	// forwarding took above.
	require.NoError(t, far.SetReadDeadline(time.Now().Add(time.Second)))
	n, err := far.Read(buf)
	var timeout net.Error
	assert.True(t, errors.As(err, &timeout) && timeout.Timeout(), "neither the bytes nor the close reach the far end: read %d bytes, %v", n, err)
}
