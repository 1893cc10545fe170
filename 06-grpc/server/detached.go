package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
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
	// A write to a client that stopped reading blocks until its deadline
	// (sseWriteWait), longer than a shutdown may take. Closing the connection
	// when the stream's context ends ends such a write at once, and fails
	// every later one; a deadline moved to now would end the write in
	// progress, but the stream's next write sets a new one.
	stopClosing := context.AfterFunc(ctx, func() { conn.Close() })
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
		defer stopClosing() // a stream that ends by itself closes conn here
		stream(ctx)
	})
}

// start calls serve on a goroutine of its own with a context that ends when
// the server shuts down; shutdown waits for serve to return. A WebSocket,
// whose connection gorilla/websocket has taken over, runs here. Once the
// server is shutting down it is too late to start: start reports false, and
// the caller closes what it would have served.
func (d *detachedStreams) start(serve func(ctx context.Context)) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return false
	}
	d.wg.Go(func() { serve(d.ctx) })
	return true
}

// endStuckWritesOnDone is run's AfterFunc for a stream that stays in its
// handler: when ctx ends (the client left, or the server shuts down: its
// BaseContext ends every request's), w's write deadline moves to now, so
// that a write to a client that stopped reading returns at once. The
// connection is net/http's, not ours to close; once a write has failed,
// net/http fails every later one. Call the returned func before the handler
// returns: it waits for the deadline to be moved, if that has begun, since w
// must not be used after the handler returns.
func endStuckWritesOnDone(ctx context.Context, w http.ResponseWriter) (stop func()) {
	rc := http.NewResponseController(w)
	moved := make(chan struct{})
	stopMoving := context.AfterFunc(ctx, func() {
		defer close(moved)
		_ = rc.SetWriteDeadline(time.Now()) // unsupported by test writers, which need none
	})
	return func() {
		if !stopMoving() {
			<-moved
		}
	}
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
