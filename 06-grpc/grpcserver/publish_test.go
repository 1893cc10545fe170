package grpcserver_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"realtime/06-grpc/feed"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

func TestPublish_AppendsToTheLogAndAnswersTheUpdate(t *testing.T) {
	log := newLog(t)
	s := start(t, log)

	got, err := s.client.Publish(t.Context(), &realtimev1.PublishRequest{Data: "driver at 51.5074,-0.1278"})

	require.NoError(t, err)
	entries, _, err := log.After(feed.Cursor{}, feed.Limit{Updates: 10, Bytes: 1 << 20})
	require.NoError(t, err)
	require.Len(t, entries, 1, "updates in the log")
	want := &realtimev1.Update{Id: 1, Data: "driver at 51.5074,-0.1278", Time: timestamppb.New(entries[0].Time)}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	assert.Equal(t, "driver at 51.5074,-0.1278", entries[0].Data)
}

func TestPublish_RefusesWhatPOSTPublishRefuses(t *testing.T) {
	log := newLog(t)
	s := start(t, log)

	for _, tc := range []struct {
		name, data string
		code       codes.Code
		message    string
	}{
		{"empty", "", codes.InvalidArgument, "update text is empty or only white space"},
		{"only white space", " \t\n", codes.InvalidArgument, "update text is empty or only white space"},
		// Refused by gRPC itself, before the text is decoded: a request is
		// read whole, so its size bounds the memory a publish costs.
		{"over 64 KiB", strings.Repeat("x", feed.MaxDataBytes+1), codes.ResourceExhausted, "grpc: received message larger than max (65541 vs. 65540)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.client.Publish(t.Context(), &realtimev1.PublishRequest{Data: tc.data})

			st := status.Convert(err)
			assert.Equal(t, tc.code, st.Code(), "code of %v", err)
			assert.Equal(t, tc.message, st.Message())
		})
	}
	assert.Zero(t, log.Last(), "updates published")

	t.Run("64 KiB is allowed", func(t *testing.T) {
		_, err := s.client.Publish(t.Context(), &realtimev1.PublishRequest{Data: strings.Repeat("x", feed.MaxDataBytes)})
		assert.NoError(t, err)
	})
}
