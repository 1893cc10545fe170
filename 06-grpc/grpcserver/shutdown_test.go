package grpcserver_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

func TestShutdown_EndsOpenSubscribeStreamsWithUnavailableAndReturnsPromptly(t *testing.T) {
	s := start(t, newLog(t))
	// The call outlives the wait for Shutdown below: only the server may
	// end it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*testkit.WaitTimeout)
	defer cancel()
	stream, err := s.client.Subscribe(ctx, &realtimev1.SubscribeRequest{After: "0"})
	require.NoError(t, err)
	_, err = stream.Header() // the subscription exists
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
		defer cancel()
		done <- s.server.Shutdown(ctx)
	}()

	assert.NoError(t, testkit.Receive(t, done, "Shutdown to return"), "Shutdown fell back to Stop")
	_, err = stream.Recv()
	st := status.Convert(err)
	assert.Equal(t, codes.Unavailable, st.Code(), "code of %v", err)
	assert.Equal(t, "server shutting down", st.Message())
}

func TestShutdown_SaysNotServingFirstThenEndsHealthWatchesWithUnavailable(t *testing.T) {
	s := start(t, newLog(t))
	// A health watch is a stream that lasts until its client ends it: only
	// the server's own stopping signal can end it gracefully.
	watch, err := grpc_health_v1.NewHealthClient(dial(t, s.addr)).Watch(callContext(t), &grpc_health_v1.HealthCheckRequest{})
	require.NoError(t, err)
	got, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, grpc_health_v1.HealthCheckResponse_SERVING, got.GetStatus())

	done := shutdown(t, s.server)

	got, err = watch.Recv()
	require.NoError(t, err)
	assert.Equal(t, grpc_health_v1.HealthCheckResponse_NOT_SERVING, got.GetStatus(), "the first news of the shutdown")
	_, err = watch.Recv()
	st := status.Convert(err)
	assert.Equal(t, codes.Unavailable, st.Code(), "the watch ended with %v", err)
	assert.Equal(t, "server shutting down", st.Message())
	assert.NoError(t, testkit.Receive(t, done, "Shutdown to return"), "Shutdown fell back to Stop")
}

func TestShutdown_EndsASubscribeWhoseSendFlowControlHoldsAndReturnsNil(t *testing.T) {
	log := newLog(t)
	// The send timeout is far off: only the shutdown can end the Send.
	s := start(t, log, grpcserver.WithSendTimeout(time.Hour), grpcserver.WithDrainTimeout(100*time.Millisecond))
	conn := dial(t, s.addr, grpc.WithInitialWindowSize(minWindow), grpc.WithInitialConnWindowSize(minWindow))
	// No deadline: a call's deadline would let the server reset the stream.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled, err := realtimev1.NewUpdatesClient(conn).Subscribe(ctx, &realtimev1.SubscribeRequest{After: "0"})
	require.NoError(t, err)
	_, err = stalled.Header()
	require.NoError(t, err)
	// As in the send-timeout test: the window and the server's write buffer
	// fill, and the handler waits in Send.
	publish(t, log, slices.Repeat([]string{strings.Repeat("x", 60_000)}, 5)...)

	done := shutdown(t, s.server)

	assert.NoError(t, testkit.Receive(t, done, "Shutdown to return"), "Shutdown fell back to Stop")
	var last uint64
	for {
		var u *realtimev1.Update
		if u, err = stalled.Recv(); err != nil {
			break
		}
		require.Equal(t, last+1, u.GetId(), "updates in order, with none missing")
		last = u.GetId()
	}
	assert.Equal(t, codes.Unavailable, status.Code(err), "the stalled stream ended with %v", err)
}

func TestShutdown_StopsWhatOutlivesItsContext(t *testing.T) {
	log := newLog(t)
	// The drain is longer than the shutdown's context.
	s := start(t, log, grpcserver.WithSendTimeout(time.Hour), grpcserver.WithDrainTimeout(time.Hour))
	conn := dial(t, s.addr, grpc.WithInitialWindowSize(minWindow), grpc.WithInitialConnWindowSize(minWindow))
	stalled := subscribe(t, realtimev1.NewUpdatesClient(conn), "0")
	_, err := stalled.Header()
	require.NoError(t, err)
	publish(t, log, slices.Repeat([]string{strings.Repeat("x", 60_000)}, 5)...)

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the shutdown's time is up before it starts
	assert.ErrorIs(t, s.server.Shutdown(ctx), context.Canceled)
}

// shutdown shuts server down on a goroutine, within testkit.WaitTimeout,
// and returns where its error will be.
func shutdown(tb testing.TB, server *grpcserver.Server) <-chan error {
	tb.Helper()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
		defer cancel()
		done <- server.Shutdown(ctx)
	}()
	return done
}

func TestServe_ReturnsNilWhenShutdownCameFirst(t *testing.T) {
	srv := grpcserver.New(newLog(t))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	// A program that starts Serve in a goroutine and is stopped at once may
	// well shut the server down before Serve runs: a clean end all the same,
	// as http.Server's ErrServerClosed is.
	require.NoError(t, srv.Shutdown(context.Background()))

	assert.NoError(t, srv.Serve(lis))
}
