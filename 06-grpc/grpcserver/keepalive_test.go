package grpcserver_test

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/test/bufconn"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

// Keepalive runs on timers of minutes: these tests run the server and its
// clients in a synctest bubble, over bufconn's in-memory connections, so
// that the minutes pass at once and exactly.

func TestKeepalive_NeverSendsAwayAClientThatPingsEvery10sWhileIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lis := serveInBubble(t, newLog(t))
		// 10 s is the least a grpc-go client may ask for; it pings an idle
		// connection too (without streams), to keep NAT mappings and
		// proxies' idle timers from dropping it.
		conn := dialInBubble(t, lis, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true,
		}))
		_, err := realtimev1.NewUpdatesClient(conn).Publish(t.Context(), &realtimev1.PublishRequest{Data: "connected"})
		require.NoError(t, err)
		require.Equal(t, connectivity.Ready, conn.GetState())

		changed := make(chan struct{})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() {
			if conn.WaitForStateChange(ctx, connectivity.Ready) {
				close(changed)
			}
		}()
		time.Sleep(10 * time.Minute) // 60 pings, on the bubble's clock
		synctest.Wait()

		select {
		case <-changed:
			t.Fatalf("the connection left READY for %v while the client pinged within its policy", conn.GetState())
		default:
		}
	})
}

func TestKeepalive_ClosesTheConnectionOfAClientThatStopsAnsweringWithinAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lis := serveInBubble(t, newLog(t))
		// A client that vanished (a laptop closed, a NAT that forgot the
		// mapping) sends nothing, and answers no ping.
		conn, err := lis.DialContext(t.Context())
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte(http2.ClientPreface))
		require.NoError(t, err)
		framer := http2.NewFramer(conn, conn)
		require.NoError(t, framer.WriteSettings())
		start := time.Now()

		closed := make(chan error, 1)
		go func() {
			for {
				if _, err := framer.ReadFrame(); err != nil { // the server's pings go unanswered
					closed <- err
					return
				}
			}
		}()
		// Not testkit.Receive: its 10 s are less than the wait. In the
		// bubble, a wait that nothing can end fails as a deadlock.
		<-closed

		assert.LessOrEqual(t, time.Since(start), time.Minute, "the silent client's connection was closed after")
	})
}

// serveInBubble serves log on an in-memory listener, in the test's synctest
// bubble; the server shuts down at the end of the test.
func serveInBubble(tb testing.TB, log *feed.Log, opts ...grpcserver.Option) *bufconn.Listener {
	tb.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpcserver.New(log, opts...)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	tb.Cleanup(func() { testkit.Receive(tb, served, "Serve to return after the shutdown") })
	testkit.ShutdownAtCleanup(tb, srv)
	return lis
}

// dialInBubble connects to lis with opts; the connection closes at the end
// of the test.
func dialInBubble(tb testing.TB, lis *bufconn.Listener, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	conn, err := grpc.NewClient("passthrough:///bufconn", opts...)
	require.NoError(tb, err)
	tb.Cleanup(func() { conn.Close() })
	return conn
}
