package grpcserver_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

// minWindow is the smallest HTTP/2 flow-control window grpc-go accepts (64
// KiB). Setting it also turns off grpc-go's window growth (BDP estimation),
// which could let a stream that is not read buffer megabytes first.
const minWindow = 64 << 10

func TestSubscribe_EndsASubscriberThatStopsReadingWithResourceExhaustedAndNeverStallsAnother(t *testing.T) {
	log := newLog(t)
	s := start(t, log)
	// Both streams on one connection: HTTP/2 must keep the stalled stream's
	// flow control from holding up the other one.
	conn := dial(t, s.addr, grpc.WithInitialWindowSize(minWindow), grpc.WithInitialConnWindowSize(minWindow))
	client := realtimev1.NewUpdatesClient(conn)
	stalled, reading := subscribe(t, client, "0"), subscribe(t, client, "0")
	for _, stream := range []grpc.ServerStreamingClient[realtimev1.Update]{stalled, reading} {
		_, err := stream.Header() // sent once the subscription exists
		require.NoError(t, err)
	}

	// Updates of 60 KB: a few fill the stalled stream's window and the
	// server's write buffer, and the ones after fill its queue. The reading
	// subscriber takes each before the next is published.
	const updates = grpcserver.DefaultQueue + 16
	text := strings.Repeat("x", 60_000)
	for i := range uint64(updates) {
		publish(t, log, text)
		got := receive(t, reading, 1)
		require.Equal(t, i+1, got[0].GetId(), "the reading subscriber gets every update")
	}

	// The stalled subscriber reads again: what was on its way, in order,
	// then the end, saying where it is.
	var last uint64
	var err error
	for {
		var u *realtimev1.Update
		if u, err = stalled.Recv(); err != nil {
			break
		}
		require.Equal(t, last+1, u.GetId(), "the stalled subscriber's updates are in order, with none missing")
		last = u.GetId()
	}
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "code of %v", err)
	assert.Less(t, last, uint64(updates), "the stalled subscriber was ended before the last update")
	want := []any{&errdetails.ErrorInfo{
		Reason: "SLOW_SUBSCRIBER", Domain: "realtime.v1",
		Metadata: map[string]string{"last": strconv.FormatUint(last, 10), "epoch": "run-1"},
	}}
	if diff := cmp.Diff(want, st.Details(), protocmp.Transform()); diff != "" {
		t.Errorf("details (-want +got):\n%s", diff)
	}
	assert.Equal(t, fmt.Sprintf("fell behind by more than %d updates; continue from run-1-%d", grpcserver.DefaultQueue, last), st.Message())
}

func TestSubscribe_EndsASubscriberWhoseSendFlowControlHoldsPastTheSendTimeout(t *testing.T) {
	log := newLog(t)
	ends := make(chan error, 16)
	const sendTimeout = 100 * time.Millisecond
	s := start(t, log, grpcserver.WithSendTimeout(sendTimeout), grpcserver.WithServerOption(grpc.StatsHandler(endsOfCalls(ends))))
	conn := dial(t, s.addr, grpc.WithInitialWindowSize(minWindow), grpc.WithInitialConnWindowSize(minWindow))
	stalled := subscribe(t, realtimev1.NewUpdatesClient(conn), "0")
	_, err := stalled.Header()
	require.NoError(t, err)

	// Enough to fill the window and the server's write buffer, too few to
	// fill the queue: only the blocked Send can end this subscriber.
	const updates = 5
	publish(t, log, slices.Repeat([]string{strings.Repeat("x", 60_000)}, updates)...)

	// The call ends on the server although its client reads nothing.
	end := testkit.Receive(t, ends, "the server to end the call whose client stopped reading")
	assert.Equal(t, codes.ResourceExhausted, status.Code(end), "the call ended with %v", end)

	// When the client reads again, it gets what was on its way, then the
	// end. grpc-go ends a stream whose Send failed with that error, a
	// cancelled context: the status the handler returns after it reaches
	// only the server's stats and interceptors.
	var last uint64
	for {
		var u *realtimev1.Update
		if u, err = stalled.Recv(); err != nil {
			break
		}
		require.Equal(t, last+1, u.GetId(), "updates in order, with none missing")
		last = u.GetId()
	}
	assert.Equal(t, codes.Canceled, status.Code(err), "the stalled stream ended with %v", err)
	assert.Less(t, last, uint64(updates), "the stalled stream ended before the last update")
}

// endsOfCalls is a gRPC stats handler that hands ends the error each call on
// the server ends with (nil for success).
type endsOfCalls chan<- error

func (e endsOfCalls) HandleRPC(_ context.Context, s stats.RPCStats) {
	if end, ok := s.(*stats.End); ok {
		e <- end.Error
	}
}

func (endsOfCalls) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (endsOfCalls) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (endsOfCalls) HandleConn(context.Context, stats.ConnStats)                       {}
