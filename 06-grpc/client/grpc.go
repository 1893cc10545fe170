package client

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"realtime/06-grpc/feed"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

// What the Updates service says beside its messages, as
// proto/realtime/v1/updates.proto documents it.
const (
	// epochHeader is the header metadata that names the server run the
	// stream's ids belong to.
	epochHeader = "realtime-epoch"

	// gapReason is the google.rpc.ErrorInfo reason of an OUT_OF_RANGE end:
	// the cursor cannot be served; its metadata holds "last" and "epoch".
	gapReason = "CURSOR_GAP"
)

// Keepalive: gRPC's own pings, in place of the event stream's heartbeats and
// the socket's pings. A stream on a quiet log carries nothing for minutes, and
// a connection that died without a FIN looks the same: after
// grpcKeepaliveTime of silence the client pings, and a ping unanswered for
// grpcKeepaliveTimeout closes the connection, so a dead one is noticed within
// 45s, the event stream's silence limit (defaultStreamIdle). The server's
// enforcement policy lets a client ping every 10s, the least grpc-go sends;
// pinging more often than the policy allows would get the connection closed
// (GOAWAY too_many_pings).
const (
	grpcKeepaliveTime    = 30 * time.Second
	grpcKeepaliveTimeout = 15 * time.Second
)

// GRPC receives updates from the Updates service's Subscribe at Config.GRPC:
// one server stream that carries every update after the cursor, then each
// update live. It reconnects (through Run) from its cursor.
type GRPC struct {
	cfg  Config
	dial func(ctx context.Context, addr string) (net.Conn, error) // nil: TCP; tests dial in memory
}

var _ Strategy = (*GRPC)(nil)

// Receive subscribes on a connection of its own, and streams until ctx ends
// or the stream does. A gap ends the stream; Receive reports it and
// subscribes again, from the server's position, on the same connection.
func (c *GRPC) Receive(ctx context.Context, s *Session) error {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: grpcKeepaliveTime, Timeout: grpcKeepaliveTimeout}),
	}
	if c.dial != nil {
		opts = append(opts, grpc.WithContextDialer(c.dial))
	}
	conn, err := grpc.NewClient(c.cfg.GRPC, opts...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", c.cfg.GRPC, err)
	}
	defer conn.Close()
	updates := realtimev1.NewUpdatesClient(conn)
	for {
		err := c.subscribe(ctx, updates, s)
		last, epoch, ok := gap(err)
		if after, known := s.Cursor(); !ok || (after == last && known == epoch) {
			// Anything but a gap, or a gap at the position the server gave
			// last time: Run waits, and tries again.
			return fmt.Errorf("Subscribe %s: %w", c.cfg.GRPC, err)
		}
		s.Answered(epoch)
		s.Gap(last)
	}
}

// subscribe streams from the session's cursor until the stream ends, and
// returns why.
func (c *GRPC) subscribe(ctx context.Context, updates realtimev1.UpdatesClient, s *Session) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream, whatever ended the loop
	after, epoch := s.Cursor()
	stream, err := updates.Subscribe(ctx, &realtimev1.SubscribeRequest{After: feed.Cursor{After: after, Epoch: epoch}.String()})
	if err != nil {
		return err
	}
	// Header waits for the server's first word. On a failed stream it
	// returns nothing, and Recv returns the status.
	header, err := stream.Header()
	if err != nil {
		return err
	}
	if epochs := header.Get(epochHeader); len(epochs) > 0 {
		s.Answered(epochs[0])
	}
	for {
		u, err := stream.Recv()
		if err != nil {
			return err
		}
		if len(header.Get(epochHeader)) == 0 {
			return fmt.Errorf("no %s in the stream's header metadata", epochHeader)
		}
		if err := s.Deliver(Update{ID: u.GetId(), Data: u.GetData(), Time: u.GetTime().AsTime()}); err != nil {
			return err
		}
	}
}

// gap returns the server's position from a status that ends a stream
// because the cursor cannot be served: OUT_OF_RANGE with an ErrorInfo.
func gap(err error) (last uint64, epoch string, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus || st.Code() != codes.OutOfRange {
		return 0, "", false
	}
	for _, detail := range st.Details() {
		info, isInfo := detail.(*errdetails.ErrorInfo)
		if !isInfo || info.GetReason() != gapReason {
			continue
		}
		last, err := strconv.ParseUint(info.GetMetadata()["last"], 10, 64)
		if err != nil {
			return 0, "", false
		}
		return last, info.GetMetadata()["epoch"], true
	}
	return 0, "", false
}
