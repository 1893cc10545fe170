package client_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/03-sse/client"
	"realtime/03-sse/internal/testkit"
)

func TestSession_NeverPrintsAnUpdateTwice(t *testing.T) {
	var stdout, stderr testkit.Buffer
	s := client.NewSession(client.SessionOptions{Stdout: &stdout, Stderr: &stderr})

	for _, id := range []uint64{1, 2, 2, 1, 3} {
		require.NoError(t, s.Deliver(client.Update{ID: id, Data: "x"}))
	}

	assert.Equal(t, "1 x\n2 x\n3 x\n", stdout.String())
	assert.Empty(t, stderr.String())
	after, _ := s.Cursor()
	assert.Equal(t, uint64(3), after)
}

func TestSession_WarnsWhenIDsAreSkipped(t *testing.T) {
	var stdout, stderr testkit.Buffer
	s := client.NewSession(client.SessionOptions{After: 4, Stdout: &stdout, Stderr: &stderr})

	require.NoError(t, s.Deliver(client.Update{ID: 7, Data: "late"}))

	assert.Equal(t, "gap: updates 5 to 6 were never received\n", stderr.String())
	assert.Equal(t, "7 late\n", stdout.String(), "what did arrive is still printed")
}

func TestSession_PrintsJSONLinesWithLatency(t *testing.T) {
	var stdout testkit.Buffer
	sent := time.Date(2026, 11, 24, 19, 3, 11, 0, time.UTC)
	s := client.NewSession(client.SessionOptions{
		Strategy: "short",
		JSON:     true,
		Stdout:   &stdout,
		Now:      func() time.Time { return sent.Add(1500 * time.Microsecond) },
	})

	s.Answered("run-1")
	require.NoError(t, s.Deliver(client.Update{ID: 42, Data: `say "hi"`, Time: sent}))

	assert.JSONEq(t,
		`{"id":42,"data":"say \"hi\"","time":"2026-11-24T19:03:11Z","cursor":"run-1-42","strategy":"short","latency_ms":1.5}`,
		stdout.String())
}

func TestSession_GapMovesTheCursorToTheServersPosition(t *testing.T) {
	var stdout, stderr testkit.Buffer
	s := client.NewSession(client.SessionOptions{After: 9, Stdout: &stdout, Stderr: &stderr})

	s.Answered("run-2")
	s.Gap(3)

	after, epoch := s.Cursor()
	assert.Equal(t, uint64(3), after)
	assert.Equal(t, "run-2", epoch)
	assert.Equal(t, "gap: server cannot resume after update 9; updates may be missing; continuing from 3\n", stderr.String())
}
