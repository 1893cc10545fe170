package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"realtime/06-grpc/feed"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

// updates implements the Updates service, in the shape of grpc-go's
// route_guide: it embeds the generated Unimplemented server, so that a method
// added to the .proto answers Unimplemented until it is written here.
type updates struct {
	realtimev1.UnimplementedUpdatesServer
	log         feed.Store
	queue       int           // updates a subscriber may fall behind before it is dropped
	sendTimeout time.Duration // how long flow control may hold one Send
	streams     *streams      // the open Subscribe streams
	places      semaphore     // a place for each open Subscribe stream
}

// Publish publishes one update, as POST /publish does, and answers it.
func (u *updates) Publish(ctx context.Context, req *realtimev1.PublishRequest) (*realtimev1.Update, error) {
	e, err := u.log.Publish(req.GetData())
	switch {
	case errors.Is(err, feed.ErrUnavailable):
		return nil, status.Error(codes.Unavailable, err.Error()) // worth trying again
	case err != nil:
		// Every other reason is the text's fault: sending it again cannot
		// help.
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return toProto(e.Update), nil
}

// DefaultQueue is how far a subscriber may fall behind before it is
// dropped: as for the event stream and the WebSocket.
const DefaultQueue = 32

// EpochHeader is the header metadata key of the epoch: the server run the
// ids of a Subscribe stream belong to, which a client writes into its cursor.
const EpochHeader = "realtime-epoch"

// Subscribe streams every update after the cursor, then each new one as it
// is published, until the client leaves, the subscriber falls behind, or the
// server shuts down.
func (u *updates) Subscribe(req *realtimev1.SubscribeRequest, stream grpc.ServerStreamingServer[realtimev1.Update]) error {
	cursor, err := parseCursor(req.GetAfter())
	if err != nil {
		return err
	}
	if !u.places.tryAcquire() {
		return u.places.busy()
	}
	defer u.places.release()
	// gRPC would hold the header back until the first update: send it now,
	// so that a client at the head of the log learns the epoch at once.
	if err := stream.SendHeader(metadata.Pairs(EpochHeader, u.log.Epoch())); err != nil {
		return err
	}
	// The one subscribe primitive: history and subscription in the same
	// instant, so that every update is in exactly one of the two.
	history, last, sub, err := u.log.SubscribeAfter(cursor, u.queue)
	defer sub.Close()
	if err != nil {
		return gap(req.GetAfter(), feed.Cursor{After: last, Epoch: u.log.Epoch()}, err)
	}
	sent := feed.Cursor{After: cursor.After, Epoch: u.log.Epoch()} // where the client is
	listed := u.streams.add(stream.Context(), sent)
	defer u.streams.remove(listed)
	out := newSender(stream, u.sendTimeout)
	defer out.stop()
	for _, e := range history {
		if err := out.send(toProto(e.Update)); err != nil {
			return err
		}
		sent.After = e.ID
		listed.sent.Store(e.ID)
	}
	for {
		select {
		case e, open := <-sub.Updates():
			if !open {
				return u.tooSlow(sent)
			}
			if err := out.send(toProto(e.Update)); err != nil {
				return err
			}
			sent.After = e.ID
			listed.sent.Store(e.ID)
		case <-stream.Context().Done():
			// The client left, or the server shuts down: endAtShutdown
			// then answers Unavailable.
			return stream.Context().Err()
		}
	}
}

// errorDomain names this service in the ErrorInfo details it sends: a reason
// is unique within its domain.
const errorDomain = "realtime.v1"

// gap is the status that ends a stream whose cursor after the log cannot
// serve, for the reason given: OutOfRange, with the prose for a person and an
// ErrorInfo for a program, whose metadata says where to continue (here).
// Every transport says the same (the WebSocket's reset, the poll's gap
// answer); this is gRPC's standard way to say it.
func gap(after string, here feed.Cursor, reason error) error {
	st := status.New(codes.OutOfRange, fmt.Sprintf("after %s: %v; continue from %s", feed.Quote(after), reason, here))
	return withErrorInfo(st, "CURSOR_GAP", here)
}

// tooSlow is the status that ends the stream of a subscriber the log dropped
// for falling behind, after the update sent: ResourceExhausted, the code for
// a limit reached, with an ErrorInfo that says where the client was. Unlike a
// gap, this one is retried: the client resumes from its own cursor, and
// catches up from the history.
func (u *updates) tooSlow(sent feed.Cursor) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("fell behind by more than %d updates; continue from %s", u.queue, sent))
	return withErrorInfo(st, "SLOW_SUBSCRIBER", sent)
}

// withErrorInfo adds to st an ErrorInfo of reason whose metadata is the
// cursor: the last id and the epoch, for a program to read.
func withErrorInfo(st *status.Status, reason string, cursor feed.Cursor) error {
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: reason,
		Domain: errorDomain,
		Metadata: map[string]string{
			"last":  strconv.FormatUint(cursor.After, 10),
			"epoch": cursor.Epoch,
		},
	})
	if err != nil {
		return st.Err() // not reached: an ErrorInfo always marshals
	}
	return detailed.Err()
}

// parseCursor reads after as every transport does. Empty is the start:
// proto3 cannot tell a field left out from an empty one, and a subscriber
// that has seen nothing sends neither.
func parseCursor(after string) (feed.Cursor, error) {
	if after == "" {
		return feed.Cursor{}, nil
	}
	cursor, err := feed.ParseCursor(after)
	if err != nil {
		return cursor, status.Errorf(codes.InvalidArgument, "after: %v", err)
	}
	return cursor, nil
}

// toProto is update as the Updates service sends it.
func toProto(update feed.Update) *realtimev1.Update {
	return &realtimev1.Update{Id: update.ID, Data: update.Data, Time: timestamppb.New(update.Time)}
}
