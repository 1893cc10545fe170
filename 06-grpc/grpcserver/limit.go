package grpcserver

import (
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DefaultMaxStreams is the cap on open Subscribe streams. The HTTP side's
// cap comes from the open-file limit, one connection per held request; gRPC
// streams share connections (grpc-go allows any number on one), so memory
// is what they spend: about 15 KB each (20,000 streams on one connection
// took 296 MB), so 10,000 bound it near 150 MB, which a small machine
// holds, and far past what one process of this tutorial fans out to in time.
const DefaultMaxStreams = 10_000

// busyRetryAfter is the retry delay of a stream refused at the cap: as the
// HTTP side's Retry-After, long enough that refused clients do not hammer a
// full server, short enough that a freed place is soon taken again.
const busyRetryAfter = 5 * time.Second

// semaphore caps the open Subscribe streams. A full one refuses at once
// instead of queueing: a queued stream would cost its memory just the same.
type semaphore chan struct{}

// tryAcquire takes a place if one is free, without waiting.
func (s semaphore) tryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

// release gives back a place that tryAcquire took.
func (s semaphore) release() { <-s }

// busy is the status of a stream refused at the cap: Unavailable, the code
// a client retries with backoff, and a RetryInfo that says when, as
// Retry-After does on a 503.
func (s semaphore) busy() error {
	st := status.New(codes.Unavailable, fmt.Sprintf("server busy: %d Subscribe streams are open already; retry in %v", cap(s), busyRetryAfter))
	detailed, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(busyRetryAfter)})
	if err != nil {
		return st.Err() // not reached: a RetryInfo always marshals
	}
	return detailed.Err()
}
