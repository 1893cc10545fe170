package server_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
	"realtime/06-grpc/server"
)

// startGRPC serves log over gRPC on a port of loopback, as RunServer does
// beside the HTTP server, and returns the server and its address; it shuts
// down with the test.
func startGRPC(tb testing.TB, log feed.Store) (*grpcserver.Server, string) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	rpc := grpcserver.New(log)
	served := make(chan error, 1)
	go func() { served <- rpc.Serve(lis) }()
	tb.Cleanup(func() { testkit.Receive(tb, served, "gRPC's Serve to return after the shutdown") })
	testkit.ShutdownAtCleanup(tb, rpc)
	return rpc, lis.Addr().String()
}

// dialGRPC connects to the gRPC server at addr, and sends on local, unless
// it is nil, the local address of each connection it opens: the peer
// address the server sees. The connection closes with the test.
func dialGRPC(tb testing.TB, addr string, local chan<- string) realtimev1.UpdatesClient {
	tb.Helper()
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil && local != nil {
			local <- conn.LocalAddr().String()
		}
		return conn, err
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // loopback only
		grpc.WithContextDialer(dial))
	require.NoError(tb, err)
	tb.Cleanup(func() { conn.Close() })
	return realtimev1.NewUpdatesClient(conn)
}

// grpcSubscribers is the list of rpc as the HTTP server takes it, as
// RunServer hands it over.
func grpcSubscribers(rpc *grpcserver.Server) func() []server.GRPCSubscriber {
	return func() []server.GRPCSubscriber {
		var list []server.GRPCSubscriber
		for _, s := range rpc.Subscribers() {
			list = append(list, server.GRPCSubscriber(s))
		}
		return list
	}
}

// listGRPCSubscribers answers GET /grpc/subscribers on srv.
func listGRPCSubscribers(tb testing.TB, srv *httptest.Server) []server.GRPCSubscriber {
	tb.Helper()
	resp, body := get(tb, srv, http.MethodGet, "/grpc/subscribers", nil)
	require.Equal(tb, http.StatusOK, resp.StatusCode, body)
	var answer struct {
		Subscribers []server.GRPCSubscriber `json:"subscribers"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	require.NoError(tb, dec.Decode(&answer), body)
	require.NotNil(tb, answer.Subscribers, "none is [], not null: %s", body)
	return answer.Subscribers
}

func TestGRPCSubscribers_ListsEachOpenSubscribeStreamUntilItEnds(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	rpc, addr := startGRPC(t, log)
	api := server.New(log, server.WithGRPCSubscribers(grpcSubscribers(rpc)))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(t, api)
	assert.Empty(t, listGRPCSubscribers(t, srv), "no stream yet")

	local := make(chan string, 1)
	client := dialGRPC(t, addr, local)
	ctx, cancel := context.WithTimeout(t.Context(), testkit.WaitTimeout)
	defer cancel()
	opened := time.Now()
	stream, err := client.Subscribe(ctx, &realtimev1.SubscribeRequest{})
	require.NoError(t, err)
	_, err = stream.Header()
	require.NoError(t, err, "the stream is open: the server sent its epoch")
	peer := testkit.Receive(t, local, "the client's connection")
	testkit.Publish(t, srv.URL, "a")
	_, err = stream.Recv()
	require.NoError(t, err)

	var list []server.GRPCSubscriber
	// The server notes the cursor after Send returns, which may be after
	// the client has the update: ask until it shows.
	require.Eventually(t, func() bool {
		list = listGRPCSubscribers(t, srv)
		return len(list) == 1 && list[0].Cursor == "run-1-1"
	}, testkit.WaitTimeout, 10*time.Millisecond, "the stream, with the cursor it has been sent up to: %+v", list)
	want := []server.GRPCSubscriber{{Peer: peer, Cursor: "run-1-1", Since: list[0].Since}}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("the open stream (-want +got):\n%s", diff)
	}
	assert.WithinRange(t, list[0].Since, opened, time.Now(), "since: when the stream opened")

	cancel() // the client ends its stream
	require.Eventually(t, func() bool { return len(listGRPCSubscribers(t, srv)) == 0 },
		testkit.WaitTimeout, 10*time.Millisecond, "the ended stream leaves the list")
}
