package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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

func TestClientLog_IsCaughtUpWithTheLastUpdateOrWithAResetToIt(t *testing.T) {
	start := time.Now()
	before, after := start.Add(-time.Second), start.Add(time.Second)
	run := serverRun{epoch: "b", last: 9, started: start}
	reset := record{at: after, message: announcement + "5; updates may be missing; continuing from 9"}
	for _, tc := range []struct {
		name    string
		records []record
		want    bool
	}{
		{"nothing printed", nil, false},
		{"the last update", []record{{at: after, update: true, epoch: "b", id: 9}}, true},
		{"an update before it", []record{{at: after, update: true, epoch: "b", id: 8}}, false},
		{"the same id of another run", []record{{at: after, update: true, epoch: "a", id: 9}}, false},
		{"told to continue from it, then a retry", []record{{at: before, update: true, epoch: "a", id: 5}, reset, {at: after, message: "sse: EOF; retrying in 2s"}}, true},
		{"told so before the run began", []record{{at: before, message: reset.message}}, false},
		{"told to continue from an earlier one", []record{{at: after, message: announcement + "5; updates may be missing; continuing from 8"}}, false},
		{"an update after the reset decides", []record{reset, {at: after, update: true, epoch: "b", id: 8}}, false},
	} {
		l := &clientLog{records: tc.records}
		assert.Equal(t, tc.want, l.caughtUp(run), tc.name)
	}
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

// TestRun_TheClusteredCISizeLosesNothingUnannounced is the clustered case
// CI runs: three instances on one log in NATS JetStream, every strategy
// through about 200 faults, and two instances killed mid-stream while their
// clients move to another. No strategy may lose, repeat or reorder an
// update unannounced; and as the log outlives the instances (one run), none
// may lose one at all.
func TestRun_TheClusteredCISizeLosesNothingUnannounced(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers for half a minute: not in -short")
	}
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"chaos", "-nats", "-size", "ci", "-root", filepath.Join("..", "..")}, nil, &stdout, &stderr)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	assert.Regexp(t, `^\d+ updates published over 1 server runs, clustered: 3 instances on one NATS JetStream log, 2 killed mid-stream`, stdout.String(),
		"one run of the log, however many instances die; stderr:\n%s", stderr.String())
	// No reset either: the log outlives the instances, and at this size no
	// cursor falls out of its history, so every client resumes where it
	// was, on whichever instance, and prints every update.
	for _, s := range allStrategies {
		row := regexp.MustCompile(`(?m)^\s+` + s + `((?:\s+\S+){11})$`).FindStringSubmatch(stdout.String())
		if assert.NotNil(t, row, "a row for %s", s) {
			f := strings.Fields(row[1])
			assert.Equal(t, []string{"0", "0"}, f[4:6], "%s: lost and announced gaps", s)
		}
	}
	assert.Equal(t, 2, strings.Count(stderr.String(), "started again, on the same log"), "stderr:\n%s", stderr.String())
	t.Log("\n" + stdout.String())
}

// TestChaos_ABrokenResumeFailsNamingEveryStrategy: a server whose feed
// drops the first update after every resumed cursor must fail the run, for
// every strategy, by name; clustered too, where every client resumes on
// another instance after a kill.
func TestChaos_ABrokenResumeFailsNamingEveryStrategy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server: not in -short")
	}
	t.Parallel()
	chapter, err := filepath.Abs(filepath.Join("..", "..", "06-grpc"))
	require.NoError(t, err)
	// Both runs at once, in this test's one place among the parallel tests:
	// they spend their time waiting, not computing.
	outcomes := make([]*outcome, 2)
	errs := make([]error, 2)
	var runs sync.WaitGroup
	for i, clustered := range []bool{false, true} {
		// A client whose last resume skipped the last update never prints
		// it: the catch-up would wait its whole minute.
		sz := size{Duration: 6 * time.Second, Rate: 20, FaultEvery: [2]time.Duration{100 * time.Millisecond, 300 * time.Millisecond}, CatchUp: 5 * time.Second}
		if clustered {
			sz.Restarts = 1 // a kill: the same log, and clients resuming on another instance
		}
		runs.Go(func() {
			outcomes[i], errs[i] = chaos(context.Background(), chapter, options{size: sz, strategies: allStrategies, brokenResume: true, seed: 1, clustered: clustered}, io.Discard)
		})
	}
	runs.Wait()
	for i, name := range []string{"one server", "clustered"} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, errs[i])
			require.Len(t, outcomes[i].runs, 1)
			var failed []string
			for _, r := range outcomes[i].results {
				if assert.False(t, r.OK(), "%s must fail: %+v", r.Strategy, r.Verdict) {
					assert.Positive(t, r.Unannounced, r.Strategy)
				}
				failed = append(failed, r.Strategy+": "+r.problems())
			}
			msg := (&lossError{failed: failed}).Error()
			for _, s := range allStrategies {
				assert.Contains(t, msg, s+": ", "the failure names %s", s)
			}
		})
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
