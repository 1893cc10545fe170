package client_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/client"
	"realtime/06-grpc/internal/testkit"
)

func TestShortPoll_AsksForTheRestAtOnceWhenAnAnswerIsOneBatchOfSeveral(t *testing.T) {
	log := newLog(t, 1024, "run-1")
	var want []string
	for i := range 600 { // more than one answer holds
		text := fmt.Sprint("update ", i+1)
		mustPublish(t, log, text)
		want = append(want, fmt.Sprint(i+1, " ", text))
	}
	// An interval the test could never wait for: only asking again at once
	// gets the rest.
	strategy, err := client.NewStrategy("short", client.Config{Server: startServer(t, log, nil), Interval: time.Hour})
	require.NoError(t, err)
	r := receive(t, strategy, "short", 0)

	got := r.stdout.WaitForLines(t, len(want))

	assert.Equal(t, want, got)
}

func TestShortPoll_ReportsAGapForACursorOfAnEarlierServerRun(t *testing.T) {
	log := newLog(t, 16, "run-2") // ids restart: run-2's update 3 is not run-1's
	mustPublish(t, log, "a", "b", "c")
	var stdout, stderr testkit.Buffer
	session := client.NewSession(client.SessionOptions{Strategy: "short", After: 2, Epoch: "run-1", Stdout: &stdout, Stderr: &stderr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx, shortPoll(t, startServer(t, log, nil)), session, fastRetry, &stderr) }()

	stderr.WaitFor(t, "gap: server cannot resume after update 2; updates may be missing; continuing from 3\n")
	mustPublish(t, log, "d")
	got := stdout.WaitForLines(t, 1)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(testkit.WaitTimeout):
		t.Fatal("Run did not return after its context ended")
	}

	assert.Equal(t, []string{"4 d"}, got, "nothing of run-2 before the gap is passed off as what followed run-1's 2")
}

func TestRun_EscapesWhatAFailingServerSays(t *testing.T) {
	hostile := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "\x1b[2J\x1b[31mall clear", http.StatusServiceUnavailable)
		})
	}
	r := receive(t, shortPoll(t, startServer(t, newLog(t, 1, "run-1"), hostile)), "short", 0)

	r.stderr.WaitFor(t, `503 Service Unavailable: \x1b[2J\x1b[31mall clear; retrying in`)
	assert.NotContains(t, r.stderr.String(), "\x1b", "no escape sequence reaches the terminal")
}

func TestRun_WaitsAsLongAsABusyServerAsks(t *testing.T) {
	log := newLog(t, 16, "run-1")
	mustPublish(t, log, "a")
	var refusedOnce atomic.Bool
	busyOnce := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if refusedOnce.CompareAndSwap(false, true) {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "too many held requests", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	r := receive(t, shortPoll(t, startServer(t, log, busyOnce)), "short", 0) // a backoff of milliseconds

	r.stderr.WaitFor(t, "503 Service Unavailable: too many held requests; retrying in 1s\n")
	assert.Equal(t, []string{"1 a"}, r.stdout.WaitForLines(t, 1), "and then it comes back")
}
