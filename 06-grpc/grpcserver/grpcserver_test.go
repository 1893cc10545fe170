package grpcserver_test

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// started is a gRPC server of log on a port of loopback, and a connection
// to it: a real HTTP/2 connection, as a client in another process has.
type started struct {
	server *grpcserver.Server
	addr   string
	client realtimev1.UpdatesClient
}

// start serves log on 127.0.0.1 and connects to it; both end with the test.
func start(tb testing.TB, log *feed.Log, opts ...grpcserver.Option) started {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	srv := grpcserver.New(log, opts...)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	tb.Cleanup(func() {
		testkit.Receive(tb, served, "Serve to return after the shutdown")
	})
	testkit.ShutdownAtCleanup(tb, srv)
	conn := dial(tb, lis.Addr().String())
	return started{server: srv, addr: lis.Addr().String(), client: realtimev1.NewUpdatesClient(conn)}
}

// dial connects to the server at addr, with opts; the connection closes
// with the test.
func dial(tb testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	// Insecure credentials on loopback only: no TLS to set up in a test.
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(addr, opts...)
	require.NoError(tb, err)
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// newLog returns an empty log of the epoch "run-1".
func newLog(tb testing.TB) *feed.Log {
	tb.Helper()
	log, err := feed.New(feed.DefaultHistory, feed.WithEpoch("run-1"))
	require.NoError(tb, err)
	return log
}
