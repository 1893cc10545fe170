// Package testkit holds what this chapter's tests share: an output buffer
// that a program can write while a test reads it, and a wait on it.
package testkit

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
