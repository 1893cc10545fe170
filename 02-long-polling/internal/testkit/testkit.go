// Package testkit holds what this chapter's tests share: an output buffer
// that a program can write while a test reads it, a wait on it, a bounded
// receive from a channel, and a publish over HTTP.
package testkit

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"realtime/02-long-polling/feed"
)

// WaitTimeout bounds every wait in the tests: generous, because -race and a
// loaded CI machine are slow, and a passing test never waits that long.
const WaitTimeout = 10 * time.Second

// Buffer is an io.Writer that is safe to read while another goroutine writes.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the complete lines written so far.
func (b *Buffer) Lines() []string {
	text := b.String()
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		return strings.Split(text[:i], "\n")
	}
	return nil
}

// WaitForLines waits until b holds at least n complete lines and returns
// them all.
func (b *Buffer) WaitForLines(tb testing.TB, n int) []string {
	tb.Helper()
	require.Eventually(tb, func() bool { return len(b.Lines()) >= n },
		WaitTimeout, time.Millisecond, "waiting for %d lines; have:\n%s", n, b)
	return b.Lines()
}

// WaitFor waits until b contains text.
func (b *Buffer) WaitFor(tb testing.TB, text string) {
	tb.Helper()
	require.Eventually(tb, func() bool { return strings.Contains(b.String(), text) },
		WaitTimeout, time.Millisecond, "waiting for %q; have:\n%s", text, b)
}

// Receive returns the next value from ch, or fails the test if none comes
// within WaitTimeout, saying what it waited for: a test that would otherwise
// block until go test's own timeout fails at once with a reason. Like <-ch,
// it returns the zero value at once from a closed channel, so it also waits
// for a channel that is closed when something is done. Inside a synctest
// bubble the wait is on the bubble's clock: it ends as soon as nothing else
// can happen. Call it from the test's goroutine only: it stops the test.
func Receive[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	timeout := time.NewTimer(WaitTimeout)
	defer timeout.Stop()
	select {
	case v := <-ch:
		return v
	case <-timeout.C:
		tb.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		var zero T
		return zero // not reached: Fatalf ends the test's goroutine
	}
}

// Publish publishes text with POST /publish on the server at baseURL, as a
// script would, and returns the update the server answered with. Anything
// but 201 Created fails the test, with the server's reason. Call it from the
// test's goroutine only: it stops the test.
func Publish(tb testing.TB, baseURL, text string) feed.Update {
	tb.Helper()
	// A transport of its own, closed after: no idle connection outlives the
	// call, for goleak to find or for another test to reuse.
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: WaitTimeout} // a publish that hangs fails the test
	resp, err := client.Post(baseURL+"/publish", "text/plain; charset=utf-8", strings.NewReader(text))
	require.NoError(tb, err, "POST %s/publish", baseURL)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(tb, err, "POST %s/publish: read the answer", baseURL)
	require.Equal(tb, http.StatusCreated, resp.StatusCode, "POST %s/publish answered: %s", baseURL, body)
	var u feed.Update
	require.NoError(tb, json.Unmarshal(body, &u), "POST %s/publish: decode the answer %s", baseURL, body)
	return u
}
