package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

// dialGRPC connects to the gRPC listener of the server srv, as printed.
func dialGRPC(tb testing.TB, srv *program) realtimev1.UpdatesClient {
	tb.Helper()
	conn, err := grpc.NewClient(grpcAddress(tb, srv), grpc.WithTransportCredentials(insecure.NewCredentials())) // loopback only
	require.NoError(tb, err)
	tb.Cleanup(func() { conn.Close() })
	return realtimev1.NewUpdatesClient(conn)
}

func TestServer_EveryInputPublishesIntoTheOneLogThatHTTPAndGRPCServe(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	rpc := dialGRPC(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), testkit.WaitTimeout)
	defer cancel()

	srv.type_(t, "typed")
	srv.stdout.WaitFor(t, "published 1")
	testkit.Publish(t, url, "posted")
	called, err := rpc.Publish(ctx, &realtimev1.PublishRequest{Data: "called"})
	require.NoError(t, err)
	assert.Equal(t, uint64(3), called.GetId())

	want := []string{"1 typed", "2 posted", "3 called"}
	stream, err := rpc.Subscribe(ctx, &realtimev1.SubscribeRequest{})
	require.NoError(t, err)
	var viaGRPC []string
	for range want {
		u, err := stream.Recv()
		require.NoError(t, err)
		viaGRPC = append(viaGRPC, fmt.Sprintf("%d %s", u.GetId(), u.GetData()))
	}
	if diff := cmp.Diff(want, viaGRPC); diff != "" {
		t.Errorf("updates through gRPC (-want +got):\n%s", diff)
	}

	resp, err := http.Get(url + "/updates?after=0")
	require.NoError(t, err)
	defer resp.Body.Close()
	var poll struct {
		Updates []struct {
			ID   uint64 `json:"id"`
			Data string `json:"data"`
		} `json:"updates"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&poll))
	var viaHTTP []string
	for _, u := range poll.Updates {
		viaHTTP = append(viaHTTP, fmt.Sprintf("%d %s", u.ID, u.Data))
	}
	if diff := cmp.Diff(want, viaHTTP); diff != "" {
		t.Errorf("updates through HTTP (-want +got):\n%s", diff)
	}
}

func TestServer_EndsOpenGRPCStreamsWhenItShutsDown(t *testing.T) {
	srv, _ := startServer(t, "127.0.0.1:0")
	rpc := dialGRPC(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), testkit.WaitTimeout) // a stream left open fails the test, not hangs it
	defer cancel()
	stream, err := rpc.Subscribe(ctx, &realtimev1.SubscribeRequest{})
	require.NoError(t, err)
	_, err = stream.Header()
	require.NoError(t, err, "the stream is open: the server sent its epoch")

	require.NoError(t, srv.stop(t))

	_, err = stream.Recv()
	assert.Equal(t, codes.Unavailable, status.Code(err), "a clean end that says the server is going: %v", err)
}

func TestServer_ListsItsOpenGRPCStreamsOnGETGRPCSubscribers(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	rpc := dialGRPC(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), testkit.WaitTimeout)
	defer cancel()
	stream, err := rpc.Subscribe(ctx, &realtimev1.SubscribeRequest{})
	require.NoError(t, err)
	_, err = stream.Header()
	require.NoError(t, err, "the stream is open: the server sent its epoch")

	type subscribers struct {
		Subscribers []struct {
			Cursor string `json:"cursor"`
		} `json:"subscribers"`
	}
	// The header leaves as Subscribe starts; the stream is listed a moment
	// later, once it has read the log: ask until it is (a bounded poll).
	var list subscribers
	for deadline := time.Now().Add(testkit.WaitTimeout); len(list.Subscribers) == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		resp, err := http.Get(url + "/grpc/subscribers")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		list = subscribers{}
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		require.NoError(t, err)
	}
	require.Len(t, list.Subscribers, 1, "the HTTP server lists the gRPC server's one stream")
	assert.Regexp(t, `^[0-9A-Za-z_-]+-0$`, list.Subscribers[0].Cursor, "sent nothing yet: at 0 of this run")
}

func TestServer_RefusesGRPCStreamsPastMaxStreams(t *testing.T) {
	srv, _ := startServer(t, "127.0.0.1:0", "-max-streams", "1")
	rpc := dialGRPC(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), testkit.WaitTimeout) // a stream left open fails the test, not hangs it
	defer cancel()
	held, err := rpc.Subscribe(ctx, &realtimev1.SubscribeRequest{})
	require.NoError(t, err)
	_, err = held.Header()
	require.NoError(t, err, "the stream holds the only place")

	refused, err := rpc.Subscribe(ctx, &realtimev1.SubscribeRequest{})
	require.NoError(t, err)
	_, err = refused.Recv()
	assert.Equal(t, codes.Unavailable, status.Code(err), "refused with %v", err)
}
