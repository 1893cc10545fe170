package grpcserver_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

func TestSubscribe_ReplaysAfterTheCursorThenStreamsEachNewUpdate(t *testing.T) {
	log := newLog(t)
	publish(t, log, "one", "two", "three")
	s := start(t, log)

	stream := subscribe(t, s.client, "run-1-1")
	got := receive(t, stream, 2)
	// The history has been sent, so the subscription exists: what is
	// published now can only come through it.
	_, err := s.client.Publish(t.Context(), &realtimev1.PublishRequest{Data: "four"})
	require.NoError(t, err)
	got = append(got, receive(t, stream, 1)...)

	want := []*realtimev1.Update{{Id: 2, Data: "two"}, {Id: 3, Data: "three"}, {Id: 4, Data: "four"}}
	if diff := cmp.Diff(want, got, protocmp.Transform(), protocmp.IgnoreFields(&realtimev1.Update{}, "time")); diff != "" {
		t.Errorf("updates (-want +got):\n%s", diff)
	}
}

func TestSubscribe_SendsTheEpochInTheHeaderBeforeAnyUpdate(t *testing.T) {
	s := start(t, newLog(t))

	stream := subscribe(t, s.client, "0")
	// Nothing is published: the header must not wait for an update.
	header, err := stream.Header()

	require.NoError(t, err)
	assert.Equal(t, []string{"run-1"}, header.Get("realtime-epoch"))
}

func TestSubscribe_ReadsTheCursorAsEveryTransportDoes(t *testing.T) {
	log := newLog(t)
	publish(t, log, "one", "two", "three")
	s := start(t, log)

	for _, tc := range []struct {
		name, after string
		first       uint64
	}{
		{"nothing is the start, since proto3 cannot tell it from empty", "", 1},
		{"a bare id skips the epoch check", "2", 3},
		{"EPOCH-ID", "run-1-1", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := receive(t, subscribe(t, s.client, tc.after), 1)
			assert.Equal(t, tc.first, got[0].GetId())
		})
	}
}

func TestSubscribe_RefusesABadCursorWithInvalidArgument(t *testing.T) {
	s := start(t, newLog(t))

	for _, tc := range []struct{ name, after, message string }{
		{"not a number", "soon", `after: "soon" is not an update id such as 42, or EPOCH-42`},
		{"signed", "+1", `after: "+1" is not an update id such as 42, or EPOCH-42`},
		{"past uint64", "run-1-18446744073709551616", `after: "18446744073709551616" is too large`},
		{"an epoch with a space", "run 1-2", `after: "run 1-2": the epoch may hold only letters, digits, '-' and '_'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := subscribe(t, s.client, tc.after).Recv()

			st := status.Convert(err)
			assert.Equal(t, codes.InvalidArgument, st.Code(), "code of %v", err)
			assert.Equal(t, tc.message, st.Message())
		})
	}
}

func TestSubscribe_EndsWithOutOfRangeAndWhereToContinueWhenTheCursorCannotBeServed(t *testing.T) {
	log, err := feed.New(2, feed.WithEpoch("run-1")) // keeps updates 4 and 5 only
	require.NoError(t, err)
	publish(t, log, "one", "two", "three", "four", "five")
	s := start(t, log)

	for _, tc := range []struct{ name, after, message string }{
		{"older than the history", "run-1-1",
			`after "run-1-1": cursor cannot be served: cursor 1 is older than the history, which starts at 4; continue from run-1-5`},
		{"from another server run", "run-0-5",
			`after "run-0-5": cursor cannot be served: epoch "run-0" is from an earlier server run (now "run-1"); continue from run-1-5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := subscribe(t, s.client, tc.after).Recv()

			st := status.Convert(err)
			assert.Equal(t, codes.OutOfRange, st.Code(), "code of %v", err)
			assert.Equal(t, tc.message, st.Message())
			want := []any{&errdetails.ErrorInfo{
				Reason: "CURSOR_GAP", Domain: "realtime.v1",
				Metadata: map[string]string{"last": "5", "epoch": "run-1"},
			}}
			if diff := cmp.Diff(want, st.Details(), protocmp.Transform()); diff != "" {
				t.Errorf("details (-want +got):\n%s", diff)
			}
		})
	}
}

// publish publishes each text into log.
func publish(tb testing.TB, log *feed.Log, texts ...string) {
	tb.Helper()
	for _, text := range texts {
		_, err := log.Publish(text)
		require.NoError(tb, err)
	}
}

// subscribe calls Subscribe with the cursor after. The call ends with the
// test, or after testkit.WaitTimeout: a Recv that waits for an update that
// never comes fails with DeadlineExceeded instead of hanging.
func subscribe(tb testing.TB, client realtimev1.UpdatesClient, after string) grpc.ServerStreamingClient[realtimev1.Update] {
	tb.Helper()
	stream, err := client.Subscribe(callContext(tb), &realtimev1.SubscribeRequest{After: after})
	require.NoError(tb, err)
	return stream
}

// callContext is the context of a streaming call: it ends with the test,
// or after testkit.WaitTimeout.
func callContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// receive receives n updates from stream.
func receive(tb testing.TB, stream grpc.ServerStreamingClient[realtimev1.Update], n int) []*realtimev1.Update {
	tb.Helper()
	var got []*realtimev1.Update
	for range n {
		u, err := stream.Recv()
		require.NoError(tb, err, "after %d updates", len(got))
		got = append(got, u)
	}
	return got
}
