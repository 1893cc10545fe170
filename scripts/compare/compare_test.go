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
// server, measures every workload at the smallest size, and writes
// everything it promises.
func TestRun_SmokeSizeWritesTheTableTheChartsAndTheResults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server: not in -short")
	}
	out := t.TempDir()
	notes := filepath.Join(t.TempDir(), "NOTES.md")
	require.NoError(t, os.WriteFile(notes, []byte("# Notes\n\nbefore\n"+beginMarker+"\nold table\n"+endMarker+"\nafter\n"), 0o644))
	t.Chdir(filepath.Join("..", ".."))

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"compare", "-size", "smoke", "-out", out, "-markdown", notes, "-progress", "auto"}, nil, &stdout, &stderr)
	require.NoError(t, err, "stderr:\n%s", stderr.String())

	for _, s := range append([]string{floor, grpcConnEach}, strategies...) {
		assert.Contains(t, stdout.String(), "| "+displayName(s)+" |", "a row for %s", s)
	}
	assert.Contains(t, stdout.String(), "**Goals**")
	assert.Contains(t, stderr.String(), "compare: [0/26 ", "progress as plain lines where stderr is no terminal")
	assert.Contains(t, stderr.String(), "done: dead peer: grpc")

	written, err := os.ReadFile(notes)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(written), "# Notes\n\nbefore\n"+beginMarker+"\nMeasured by `go run ./scripts/compare` (size smoke)"), "the table replaces what was between the markers:\n%s", written)
	assert.True(t, strings.HasSuffix(string(written), "\n"+endMarker+"\nafter\n"), "what follows the markers stays:\n%s", written)
	assert.NotContains(t, string(written), "old table")

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

	assertCharts(t, out)

	// -from draws the same again from the results alone, measuring nothing.
	redrawn := t.TempDir()
	var again bytes.Buffer
	err = run(context.Background(), []string{"compare", "-from", filepath.Join(out, "results.json"), "-out", redrawn, "-markdown", ""}, nil, &again, io.Discard)
	require.NoError(t, err)
	assertCharts(t, redrawn)
	assert.Contains(t, again.String(), results.Markdown(), "the same table")
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
	got, err := betweenMarkers([]byte("a\n"+beginMarker+"\nold\n"+endMarker+"\nb\n"), "new\n\n")
	require.NoError(t, err)
	assert.Equal(t, "a\n"+beginMarker+"\nnew\n"+endMarker+"\nb\n", string(got))

	for name, doc := range map[string]string{
		"no begin":  "a\n" + endMarker + "\n",
		"no end":    beginMarker + "\nold\n",
		"two begin": beginMarker + "\n" + endMarker + "\n" + beginMarker + "\n" + endMarker + "\n",
	} {
		_, err := betweenMarkers([]byte(doc), "new")
		assert.Error(t, err, name)
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
