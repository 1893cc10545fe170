package grpcserver

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

// sendTimeout bounds one Send: a client whose flow-control window stays
// closed for longer has stopped reading. As the WebSocket's writeWait.
const sendTimeout = 10 * time.Second

// cancelKey is the context key of a stream's cancel function.
type cancelKey struct{}

// cancellable gives every stream a context its handler can cancel. grpc-go's
// Send takes no context and no deadline; a Send that flow control holds
// waits until the stream's context ends, and the context this tap returns is
// the one it waits on (see grpc-go issue #1074). A child of the stream's own
// context costs no goroutine, and ends with it.
func cancellable(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	return context.WithValue(ctx, cancelKey{}, cancel), nil
}

// sender sends updates on a stream, each Send bounded by a timeout.
type sender struct {
	stream  grpc.ServerStreamingServer[realtimev1.Update]
	timer   *time.Timer // cancels the stream's context when it fires
	timeout time.Duration
}

// newSender returns a sender on stream, whose context cancellable made.
// Stop it when done.
func newSender(stream grpc.ServerStreamingServer[realtimev1.Update], timeout time.Duration) *sender {
	cancel := stream.Context().Value(cancelKey{}).(context.CancelCauseFunc)
	timer := time.AfterFunc(timeout, func() { cancel(errors.New("send timed out")) })
	timer.Stop() // armed around each Send only: one timer per stream, reused
	return &sender{stream: stream, timer: timer, timeout: timeout}
}

// send sends u. A Send still held when the timeout fires is ended by the
// cancelled context, and send says so with ResourceExhausted: what the
// server's interceptors and stats handlers see. The client sees Canceled:
// grpc-go ends the stream itself, with the failed Send's error as the status,
// before the handler can return one. (If Send finished at the same instant,
// u may still reach the client, which resumes from its own cursor anyway.)
func (s *sender) send(u *realtimev1.Update) error {
	s.timer.Reset(s.timeout)
	err := s.stream.Send(u)
	if !s.timer.Stop() {
		return status.Errorf(codes.ResourceExhausted, "did not take an update within %v", s.timeout)
	}
	return err
}

// stop stops the timer.
func (s *sender) stop() { s.timer.Stop() }
