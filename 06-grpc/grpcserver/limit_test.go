package grpcserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

func TestSubscribe_RefusesStreamsPastMaxStreamsWithUnavailableAndWhenToRetry(t *testing.T) {
	log := newLog(t)
	ends := make(chan error, 16)
	s := start(t, log, grpcserver.WithMaxStreams(1), grpcserver.WithServerOption(grpc.StatsHandler(endsOfCalls(ends))))
	ctx, cancel := context.WithCancel(callContext(t))
	first, err := s.client.Subscribe(ctx, &realtimev1.SubscribeRequest{})
	require.NoError(t, err)
	_, err = first.Header() // the stream holds the only place
	require.NoError(t, err)

	_, err = subscribe(t, s.client, "0").Recv()
	st := status.Convert(err)
	require.Equal(t, codes.Unavailable, st.Code(), "code of %v", err)
	assert.Equal(t, "server busy: 1 Subscribe streams are open already; retry in 5s", st.Message())
	want := []any{&errdetails.RetryInfo{RetryDelay: durationpb.New(5 * time.Second)}}
	if diff := cmp.Diff(want, st.Details(), protocmp.Transform()); diff != "" {
		t.Errorf("details (-want +got):\n%s", diff)
	}
	_, err = s.client.Publish(callContext(t), &realtimev1.PublishRequest{Data: "still publishing"})
	require.NoError(t, err, "Publish is not a stream")

	// The first subscriber leaves: its place is free again.
	cancel()
	for range 3 { // the refused Subscribe, the Publish, the first Subscribe
		testkit.Receive(t, ends, "the calls to end on the server")
	}
	got := receive(t, subscribe(t, s.client, "0"), 1)
	assert.Equal(t, "still publishing", got[0].GetData())
}
