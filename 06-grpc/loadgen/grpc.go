package loadgen

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

// The floor under a gRPC update on the wire: every message is a 5-byte
// prefix (a compression flag and a 4-byte length) inside an HTTP/2 DATA
// frame, whose header is 9 bytes. Nothing leaner can carry the protobuf.
const (
	grpcMessagePrefix = 5
	http2FrameHeader  = 9
)

// grpcReadBuffer is each load connection's read buffer. grpc-go's default
// is 32 KiB per connection; with one connection per stream and 10,000
// streams that would make the generator's memory, not the server's, what a
// run measures (as wsReadBuffer does for the sockets). Updates here are a
// few dozen bytes.
const grpcReadBuffer = 1024

// GRPC opens cfg.Clients Subscribe streams, spread over cfg.GRPCConns
// connections (HTTP/2 multiplexes: one connection can carry them all), then
// publishes one update cfg.Rounds times and measures how long each stream
// waited for it. With the server's -debug endpoint it also reports what an
// idle stream costs; and it counts the bytes read from every connection
// during the broadcasts, against gRPC's framing floor.
func GRPC(ctx context.Context, cfg Config) (string, error) {
	hc := newHTTPClient(1, 30*time.Second) // for publishing and statistics
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	idle, hasStats := runtimeStats(ctx, hc, cfg)
	start, err := publishOne(ctx, hc, cfg, "before the streams")
	if err != nil {
		return "", err
	}
	var wire atomic.Int64 // bytes read from the server, every connection
	conns := make([]*grpc.ClientConn, cfg.GRPCConns)
	for i := range conns {
		// grpc.NewClient connects on the first call, so the ramp below
		// paces the connections as it paces the streams.
		conn, err := grpc.NewClient(cfg.GRPC,
			grpc.WithTransportCredentials(insecure.NewCredentials()), // loopback load, no TLS
			grpc.WithContextDialer(countingDialer(&wire)),
			grpc.WithReadBufferSize(grpcReadBuffer),
			grpc.WithSharedWriteBuffer(true), // a load client writes almost nothing
		)
		if err != nil {
			return "", fmt.Errorf("-grpc %q: %w", cfg.GRPC, err)
		}
		defer conn.Close()
		conns[i] = conn
	}
	var (
		rounds     = newBroadcasts(cfg.Rounds)
		connected  atomic.Int64 // streams past their header
		errs       atomic.Int64
		messages   atomic.Int64 // updates received, for the bytes per update
		protoBytes atomic.Int64 // their protobuf sizes, for the floor
		started    int
		wg         sync.WaitGroup
	)
	defer wg.Wait()
	defer cancel()
	err = startClients(ctx, cfg, func() {
		updates := realtimev1.NewUpdatesClient(conns[started%len(conns)])
		started++
		wg.Go(func() {
			after := start
			for ctx.Err() == nil {
				// A stream only ends by failing; unless the run is over,
				// that is an error to count.
				_ = grpcStream(ctx, updates, after, &connected, func(u *realtimev1.Update) {
					after = u.GetId()
					messages.Add(1)
					protoBytes.Add(int64(proto.Size(u)))
					rounds.received()
				})
				if ctx.Err() == nil {
					errs.Add(1)
					time.Sleep(jitter(100 * time.Millisecond)) // back off a little, then rejoin
				}
			}
		})
	})
	if err != nil {
		return "", err
	}

	held, err := waitHeld(ctx, hc, cfg, &connected, idle, hasStats)
	if err != nil {
		return "", err
	}
	var report strings.Builder
	fmt.Fprintf(&report, "grpc: %d streams over %s, %d broadcasts\n", cfg.Clients, plural(cfg.GRPCConns, "connection"), cfg.Rounds)
	if hasStats {
		reportCost(&report, cfg, idle, held, "idle stream")
	}
	// Only the broadcasts count: not the handshakes, the stream headers or
	// the update each stream replayed when it opened.
	wire.Store(0)
	messages.Store(0)
	protoBytes.Store(0)
	if err := rounds.measure(ctx, hc, cfg, &report, func() error { return nil }); err != nil {
		return "", err
	}
	if n := float64(messages.Load()); n > 0 {
		frame := float64(grpcMessagePrefix + http2FrameHeader)
		size := float64(protoBytes.Load()) / n
		perUpdate := float64(wire.Load()) / n
		fmt.Fprintf(&report, "wire: %.1f bytes read per update per stream, floor %.1f (%d-byte gRPC prefix, %d-byte HTTP/2 frame header, %.1f-byte Update): %.2f×\n",
			perUpdate, frame+size, grpcMessagePrefix, http2FrameHeader, size, perUpdate/(frame+size))
	}
	fmt.Fprintf(&report, "errors: %d", errs.Load())
	return report.String(), nil
}

// grpcStream calls Subscribe after the given id and reads the stream until
// it ends, counting itself in connected once the server's header has come,
// and calling received with each update.
func grpcStream(ctx context.Context, updates realtimev1.UpdatesClient, after uint64, connected *atomic.Int64, received func(u *realtimev1.Update)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream, whatever ended the loop
	stream, err := updates.Subscribe(ctx, &realtimev1.SubscribeRequest{After: strconv.FormatUint(after, 10)})
	if err != nil {
		return err
	}
	if _, err := stream.Header(); err != nil {
		return err
	}
	connected.Add(1)
	defer connected.Add(-1)
	// One message, decoded into again and again: the generator's cost per
	// update is part of what a run on a shared machine times.
	var u realtimev1.Update
	for {
		if err := stream.RecvMsg(&u); err != nil {
			return err
		}
		received(&u)
	}
}

// countingDialer dials TCP and adds every byte read from the connection
// to read: what the server sent, frames and all.
func countingDialer(read *atomic.Int64) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &readCounter{Conn: conn, read: read}, nil
	}
}

// readCounter counts the bytes read from its connection.
type readCounter struct {
	net.Conn
	read *atomic.Int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}
