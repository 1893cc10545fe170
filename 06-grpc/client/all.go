package client

import (
	"context"
	"errors"
	"io"
	"sync"
)

// RunAll receives with every strategy of Strategies at once until ctx ends,
// each with a session of its own (its own cursor, from opts, and its own
// reconnects), so each update is printed once per strategy: a learner types
// one line into the server and watches it arrive every way side by side.
// Lines are Tagged with their strategy and latency. Nothing is published:
// cfg.Publish is not read. RunAll returns nil when ctx ends.
func RunAll(ctx context.Context, cfg Config, opts SessionOptions, backoff Backoff) error {
	// One lock for both outputs. Every line a session or Run prints is one
	// Write, so holding the lock for each Write keeps lines whole: two
	// strategies printing at once cannot cut into each other's line.
	var mu sync.Mutex
	opts.Stdout = &lockedWriter{mu: &mu, w: opts.Stdout}
	opts.Stderr = &lockedWriter{mu: &mu, w: opts.Stderr}
	opts.Tagged = true
	cfg.Publish = nil

	names := Strategies()
	strategies := make([]Strategy, len(names))
	for i, name := range names {
		strategy, err := NewStrategy(name, cfg)
		if err != nil {
			return err
		}
		strategies[i] = strategy
	}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		session := opts
		session.Strategy = name
		wg.Go(func() { errs[i] = Run(ctx, strategies[i], NewSession(session), backoff, opts.Stderr) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lockedWriter writes to w holding mu, which other writers share.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
