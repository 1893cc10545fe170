package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// detachedStreams runs the event streams whose handlers have returned.
//
// A handler that holds its request keeps everything net/http allocated for
// the connection: 4 KiB read and write buffers, the response's 2 KiB buffer,
// the parsed request, and a serving goroutine whose stack grew on the way in.
// That is most of what an idle subscriber costs. A stream taken over with
// Hijack, and run on goroutines of its own after the handler returns, keeps
// only the connection, its subscription and two small stacks. net/http no
// longer sees such a connection, so its Shutdown cannot end it: Shutdown
// here does.
type detachedStreams struct {
	ctx    context.Context // ends when the server shuts down
	cancel context.CancelFunc

	mu      sync.Mutex // guards closing, and wg.Add against wg.Wait
	closing bool
	wg      sync.WaitGroup
}

func newDetachedStreams() *detachedStreams {
	ctx, cancel := context.WithCancel(context.Background())
	return &detachedStreams{ctx: ctx, cancel: cancel}
}

// hijack takes the connection of w over from net/http, if it can be: HTTP/2
// and test ResponseWriters cannot, and then the stream stays in the handler.
func hijack(w http.ResponseWriter) (net.Conn, bool) {
	// The buffered reader and writer that come with the connection are not
	// kept: the client sends nothing after its request, and events are
	// written whole. Dropping them is the point.
	conn, _, err := http.NewResponseController(w).Hijack()
	return conn, err == nil
}

// run calls stream on a goroutine of its own with a context that ends when
// the client hangs up or the server shuts down, and closes conn after it.
// A second goroutine reads conn, only to notice the hang-up: the client of an
// event stream sends nothing, so a read returns only when the connection
// ends, or when the client breaks that rule, which ends the stream too.
func (d *detachedStreams) run(conn net.Conn, stream func(ctx context.Context)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		// Too late to start: the context has ended, so stream returns at
		// once, releasing its subscription.
		conn.Close()
		stream(d.ctx)
		return
	}
	ctx, hungUp := context.WithCancel(d.ctx)
	d.wg.Go(func() {
		defer hungUp()
		// One read, not a loop: reading on, a byte per system call, let a
		// client that sent junk spend the server's CPU (20 MiB cost 14.5
		// CPU-seconds), and nothing a client sends here means anything.
		var b [1]byte
		_, _ = conn.Read(b[:])
	})
	d.wg.Go(func() {
		defer conn.Close() // which also ends the reader
		defer hungUp()
		stream(ctx)
	})
}

// shutdown ends every detached stream and waits until their goroutines have
// returned, or until ctx ends.
func (d *detachedStreams) shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
	d.cancel()
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("event streams still open: %w", ctx.Err())
	}
}
