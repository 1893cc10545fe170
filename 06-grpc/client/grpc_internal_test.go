package client

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
)

// cuttable is a connection that the test cuts as a network fails without a
// word (a laptop lid closed, a NAT that forgot the mapping): from then on,
// what is written goes nowhere, nothing more arrives, and no FIN or reset
// says so, not even when the far end closes.
type cuttable struct {
	net.Conn
	cut       *atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *cuttable) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.cut.Load() {
		<-c.closed // until this end gives up
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *cuttable) Write(p []byte) (int, error) {
	if c.cut.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *cuttable) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// The keepalive's timers run for tens of seconds: the test runs the real
// server and the client in a synctest bubble, over bufconn's in-memory
// connections, so that the seconds pass at once and exactly.
func TestGRPC_NoticesAConnectionThatWentSilentAsAnEventStreamDoes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(16, feed.WithEpoch("run-1"))
		require.NoError(t, err)
		_, err = log.Publish("taxi at the station")
		require.NoError(t, err)
		lis := bufconn.Listen(1 << 20)
		srv := grpcserver.New(log)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(lis) }()
		t.Cleanup(func() { testkit.Receive(t, served, "Serve to return after the shutdown") })
		testkit.ShutdownAtCleanup(t, srv)
		var cut atomic.Bool
		strategy := &GRPC{
			cfg: Config{GRPC: "passthrough:///bufconn"},
			dial: func(ctx context.Context, _ string) (net.Conn, error) {
				conn, err := lis.DialContext(ctx)
				return &cuttable{Conn: conn, cut: &cut, closed: make(chan struct{})}, err
			},
		}
		var out testkit.Buffer
		done := make(chan error, 1)
		go func() { done <- strategy.Receive(t.Context(), NewSession(SessionOptions{Stdout: &out, Stderr: &out})) }()
		synctest.Wait() // subscribed, and the history printed
		require.Equal(t, "1 taxi at the station\n", out.String())

		cut.Store(true)
		start := time.Now()
		// Not testkit.Receive: its 10 s are less than the wait. The bubble's
		// clock jumps to the next timer, so waiting 10 minutes is instant.
		select {
		case err = <-done:
		case <-time.After(10 * time.Minute):
			t.Fatalf("Receive still waits on a connection silent for 10 minutes")
		}

		assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		assert.LessOrEqual(t, time.Since(start), defaultStreamIdle, "noticed within the event stream's silence limit")
	})
}
