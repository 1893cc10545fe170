package client_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

// startGRPC serves log with the real gRPC server on a port of loopback until
// the test ends, and returns its address.
func startGRPC(tb testing.TB, log *feed.Log) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	srv := grpcserver.New(log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	tb.Cleanup(func() { testkit.Receive(tb, served, "Serve to return after the shutdown") })
	testkit.ShutdownAtCleanup(tb, srv)
	return lis.Addr().String()
}

// grpcStrategy returns the gRPC strategy for the server at addr.
func grpcStrategy(tb testing.TB, addr string) client.Strategy {
	tb.Helper()
	strategy, err := client.NewStrategy("grpc", client.Config{GRPC: addr})
	require.NoError(tb, err)
	return strategy
}

func TestGRPC_PrintsEachUpdateWithTheCursorOfTheEpochInTheHeader(t *testing.T) {
	log := newLog(t, 16, "run-1")
	mustPublish(t, log, "taxi at the station")
	addr := startGRPC(t, log)
	r := receiveJSON(t, grpcStrategy(t, addr), "grpc")

	r.stdout.WaitForLines(t, 1)
	mustPublish(t, log, "taxi on the bridge")
	got := r.stdout.WaitForLines(t, 2)

	assert.Regexp(t, `^\{"id":1,"data":"taxi at the station","time":"[^"]+","cursor":"run-1-1","strategy":"grpc","latency_ms":[0-9.]+\}$`, got[0])
	assert.Regexp(t, `^\{"id":2,"data":"taxi on the bridge",.*"cursor":"run-1-2","strategy":"grpc"`, got[1])
	assert.Empty(t, r.stderr.String())
}

// slowOnce is an Updates server that ends the first stream as the real one
// ends a subscriber that fell behind, after two updates, and records the
// cursor each Subscribe asked for.
type slowOnce struct {
	realtimev1.UnimplementedUpdatesServer
	cursors chan string
}

func (s *slowOnce) Subscribe(req *realtimev1.SubscribeRequest, stream grpc.ServerStreamingServer[realtimev1.Update]) error {
	s.cursors <- req.GetAfter()
	if err := stream.SendHeader(metadata.Pairs("realtime-epoch", "run-1")); err != nil {
		return err
	}
	if req.GetAfter() != "0" {
		if err := stream.Send(&realtimev1.Update{Id: 3, Data: "c", Time: timestamppb.Now()}); err != nil {
			return err
		}
		<-stream.Context().Done()
		return nil
	}
	for id, data := range []string{"a", "b"} {
		if err := stream.Send(&realtimev1.Update{Id: uint64(id + 1), Data: data, Time: timestamppb.Now()}); err != nil {
			return err
		}
	}
	slow, err := status.New(codes.ResourceExhausted, "fell behind").WithDetails(&errdetails.ErrorInfo{
		Reason: "SLOW_SUBSCRIBER", Domain: "realtime.v1", Metadata: map[string]string{"last": "2"},
	})
	if err != nil {
		return err
	}
	return slow.Err()
}

func TestGRPC_ASubscriberEndedForFallingBehindResumesFromItsCursor(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	service := &slowOnce{cursors: make(chan string, 2)}
	realtimev1.RegisterUpdatesServer(srv, service)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		testkit.Receive(t, served, "Serve to return after Stop")
	})
	r := receive(t, grpcStrategy(t, lis.Addr().String()), "grpc", 0)

	got := r.stdout.WaitForLines(t, 3)

	assert.Equal(t, []string{"1 a", "2 b", "3 c"}, got)
	assert.Equal(t, "0", testkit.Receive(t, service.cursors, "the first Subscribe"))
	assert.Equal(t, "run-1-2", testkit.Receive(t, service.cursors, "the Subscribe after the stream ended"))
	assert.Contains(t, r.stderr.String(), "ResourceExhausted")
}

// receiveJSON runs strategy from the start, printing -json lines, until the
// test ends.
func receiveJSON(tb testing.TB, strategy client.Strategy, name string) *receiver {
	tb.Helper()
	r := &receiver{done: make(chan error, 1)}
	session := client.NewSession(client.SessionOptions{Strategy: name, JSON: true, Stdout: &r.stdout, Stderr: &r.stderr})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- client.Run(ctx, strategy, session, fastRetry, &r.stderr) }()
	tb.Cleanup(func() { r.stop(tb) })
	return r
}
