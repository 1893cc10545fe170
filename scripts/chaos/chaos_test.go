package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// printed is what a client wrote: "E-N" is update N of run E, anything
// else a message.
func printed(lines ...string) []record {
	var rs []record
	for _, l := range lines {
		var epoch string
		var id uint64
		if n, _ := fmt.Sscanf(strings.Replace(l, "-", " ", 1), "%s %d", &epoch, &id); n == 2 && len(epoch) == 1 {
			rs = append(rs, record{update: true, epoch: epoch, id: id})
		} else {
			rs = append(rs, record{message: l})
		}
	}
	return rs
}

func TestCheck(t *testing.T) {
	one := []serverRun{{epoch: "a", last: 4}}
	two := []serverRun{{epoch: "a", last: 4}, {epoch: "b", last: 3}}
	three := []serverRun{{epoch: "a", last: 4}, {epoch: "b", last: 3}, {epoch: "c", last: 2}}
	reset := announcement + "2; updates may be missing; continuing from 1"
	for _, tc := range []struct {
		name   string
		runs   []serverRun
		output []record
		want   Verdict
	}{
		{"every update once, in order", one, printed("a-1", "a-2", "a-3", "a-4"),
			Verdict{Printed: 4}},
		{"a duplicate", one, printed("a-1", "a-2", "a-2", "a-3", "a-4"),
			Verdict{Printed: 4, Duplicated: 1}},
		{"out of order", one, printed("a-1", "a-3", "a-2", "a-4"),
			Verdict{Printed: 4, Reordered: 1, Lost: 1, Unannounced: 1}},
		{"a skipped update, unannounced", one, printed("a-1", "a-3", "a-4"),
			Verdict{Printed: 3, Lost: 1, Unannounced: 1}},
		{"a skipped update the client noticed is still the server's fault", one,
			printed("a-1", "gap: updates 2 to 2 were never received", "a-3", "a-4"),
			Verdict{Printed: 3, Lost: 1, Unannounced: 1, Detected: 1}},
		{"a gap the server announced", one, printed("a-1", announcement+"1; updates may be missing; continuing from 3", "a-4"),
			Verdict{Printed: 2, Lost: 2, Announced: 1}},
		{"the tail never printed", one, printed("a-1", "a-2"),
			Verdict{Printed: 2, Lost: 2, Unannounced: 2}},
		{"a restart, announced", two, printed("a-1", "a-2", reset, "b-2", "b-3"),
			Verdict{Printed: 4, Lost: 3, Announced: 1}},
		{"a restart, unannounced", two, printed("a-1", "a-2", "b-2", "b-3"),
			Verdict{Printed: 4, Lost: 3, Unannounced: 3}},
		{"a whole run missed, announced", three, printed("a-1", "a-2", "a-3", "a-4", reset, "c-1", "c-2"),
			Verdict{Printed: 6, Lost: 3, Announced: 1}},
		{"an update of an earlier run after a later one", two, printed("a-1", "a-2", "a-3", reset, "b-1", "a-4", "b-2", "b-3"),
			Verdict{Printed: 7, Lost: 1, Reordered: 1, Announced: 1}},
		{"nothing printed", one, nil,
			Verdict{Lost: 4, Unannounced: 4}},
		{"an epoch of no run", one, printed("a-1", "a-2", "a-3", "a-4", "z-5"),
			Verdict{Printed: 4, Malformed: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := check("sse", tc.output, nil, tc.runs)
			tc.want.Strategy = "sse"
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.want.Unannounced == 0 && tc.want.Duplicated == 0 && tc.want.Reordered == 0 && tc.want.Malformed == 0, got.OK())
		})
	}
}

func TestClientLog_ReadsTheClientsJSONLinesAndMessagesInOrder(t *testing.T) {
	var l clientLog
	out, errs := l.stdout(), l.stderr()
	_, err := io.WriteString(out, `{"id":7,"data":"x","cursor":"0123456789abcdef-7"}`+"\n")
	require.NoError(t, err)
	_, err = io.WriteString(errs, "gap: server cannot")
	require.NoError(t, err)
	_, err = io.WriteString(errs, " resume after update 7\n")
	require.NoError(t, err)
	_, err = io.WriteString(out, `{"id":8,"cursor":"0123456789abcdef-9"}`+"\nnot json\n")
	require.NoError(t, err)
	records, bad := l.snapshot()
	require.Len(t, records, 2)
	assert.Equal(t, record{at: records[0].at, update: true, epoch: "0123456789abcdef", id: 7}, records[0])
	assert.Equal(t, "gap: server cannot resume after update 7", records[1].message, "a message written in pieces is one line")
	assert.Equal(t, []string{`{"id":8,"cursor":"0123456789abcdef-9"}`, "not json"}, bad, "a cursor that is not the id's, and a line that is not JSON")
}

// TestRun_TheCISizeLosesNothingUnannounced is the fault suite CI runs: every
// strategy through about 200 faults and two server restarts.
func TestRun_TheCISizeLosesNothingUnannounced(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server for half a minute: not in -short")
	}
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"chaos", "-size", "ci", "-root", filepath.Join("..", "..")}, nil, &stdout, &stderr)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	for _, s := range allStrategies {
		assert.Regexp(t, `(?m)^\s+`+s+`\s+\d+`, stdout.String(), "a row for %s", s)
	}
	t.Log("\n" + stdout.String())
}

// TestChaos_ABrokenResumeFailsNamingEveryStrategy: a server whose feed
// drops the first update after every resumed cursor must fail the run, for
// every strategy, by name.
func TestChaos_ABrokenResumeFailsNamingEveryStrategy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server: not in -short")
	}
	t.Parallel()
	chapter, err := filepath.Abs(filepath.Join("..", "..", "06-grpc"))
	require.NoError(t, err)
	sz := size{Duration: 6 * time.Second, Rate: 20, FaultEvery: [2]time.Duration{100 * time.Millisecond, 300 * time.Millisecond}}
	results, runs, err := chaos(context.Background(), chapter, options{size: sz, strategies: allStrategies, brokenResume: true, seed: 1}, io.Discard)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	var failed []string
	for _, r := range results {
		if assert.False(t, r.OK(), "%s must fail: %+v", r.Strategy, r.Verdict) {
			assert.Positive(t, r.Unannounced, r.Strategy)
		}
		failed = append(failed, r.Strategy+": "+r.problems())
	}
	msg := (&lossError{failed: failed}).Error()
	for _, s := range allStrategies {
		assert.Contains(t, msg, s+": ", "the failure names %s", s)
	}
}

func TestBreakResume_RefusesAFeedItCannotBreak(t *testing.T) {
	chapter := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(chapter, "feed"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(chapter, "feed", "feed.go"), []byte("package feed\n"), 0o644))
	_, err := breakResume(chapter, t.TempDir())
	assert.ErrorContains(t, err, "the feed changed")
}

func TestRun_RefusesWhatItCannotDo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-size", "huge"}, `-size "huge": choose ci or full`},
		{[]string{"-strategies", "sse,pigeon"}, `unknown strategy "pigeon"`},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
	} {
		err := run(context.Background(), append([]string{"chaos"}, tc.args...), nil, io.Discard, io.Discard)
		if assert.Error(t, err, "%v", tc.args) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
}
