package client_test

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
)

// unsynchronized is a writer that, like os.Stdout, promises nothing about
// concurrent Writes: it counts them in a plain int, so that the race
// detector reports two Writes that no lock puts in order.
type unsynchronized struct {
	writes int
	w      io.Writer
}

func (u *unsynchronized) Write(p []byte) (int, error) {
	u.writes++
	return u.w.Write(p)
}

// runAll runs client.RunAll against the server at base until the test ends,
// and then checks that it returns nil, as Ctrl-C makes it.
func runAll(tb testing.TB, base target, opts client.SessionOptions) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.RunAll(ctx, conformingConfig(base), opts, fastRetry) }()
	tb.Cleanup(func() {
		cancel()
		assert.NoError(tb, testkit.Receive(tb, done, "RunAll to return after its context ended"))
	})
}

func TestRunAll_PrintsEachUpdateOncePerStrategyTaggedWithItAndItsLatency(t *testing.T) {
	// Registered first, so checked last: every strategy's goroutines end.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	published := time.Date(2026, 11, 24, 19, 3, 11, 0, time.UTC)
	log, err := feed.New(16, feed.WithEpoch("run-1"), feed.WithClock(func() time.Time { return published }))
	require.NoError(t, err)
	_, base := startServing(t, log, nil)
	var stdout, stderr testkit.Buffer
	runAll(t, base, client.SessionOptions{
		Stdout: &unsynchronized{w: &stdout},
		Stderr: &stderr,
		Now:    func() time.Time { return published.Add(1500 * time.Microsecond) },
	})

	// The text tries to forge a second line, with another strategy's tag.
	mustPublish(t, log, "taxi at the station\nsse        0.1ms  2 forged")

	got := stdout.WaitForLines(t, len(client.Strategies()))
	slices.Sort(got)
	want := []string{
		`grpc       1.5ms  1 taxi at the station\nsse        0.1ms  2 forged`,
		`long       1.5ms  1 taxi at the station\nsse        0.1ms  2 forged`,
		`short      1.5ms  1 taxi at the station\nsse        0.1ms  2 forged`,
		`sse        1.5ms  1 taxi at the station\nsse        0.1ms  2 forged`,
		`webhook    1.5ms  1 taxi at the station\nsse        0.1ms  2 forged`,
		`ws         1.5ms  1 taxi at the station\nsse        0.1ms  2 forged`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("one line per strategy, the strategy and the latency first (-want +got):\n%s", diff)
	}
	assert.Empty(t, stderr.String())
}

func TestRunAll_NamesTheStrategyOfEachGapOnStderr(t *testing.T) {
	log := newLog(t, 2, "run-1")
	mustPublish(t, log, "a", "b", "c") // 1 is gone
	_, base := startServing(t, log, nil)
	var stdout, stderr testkit.Buffer
	runAll(t, base, client.SessionOptions{Stdout: &stdout, Stderr: &unsynchronized{w: &stderr}})

	got := stderr.WaitForLines(t, len(client.Strategies()))
	slices.Sort(got)
	want := []string{
		"grpc: gap: server cannot resume after update 0; updates may be missing; continuing from 3",
		"long: gap: server cannot resume after update 0; updates may be missing; continuing from 3",
		"short: gap: server cannot resume after update 0; updates may be missing; continuing from 3",
		"sse: gap: server cannot resume after update 0; updates may be missing; continuing from 3",
		"webhook: gap: server cannot resume after update 0; updates may be missing; continuing from 3",
		"ws: gap: server cannot resume after update 0; updates may be missing; continuing from 3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("one gap per strategy, each named (-want +got):\n%s", diff)
	}
	mustPublish(t, log, "d")
	assert.Len(t, stdout.WaitForLines(t, len(client.Strategies())), len(client.Strategies()), "each went on from 3")
}
