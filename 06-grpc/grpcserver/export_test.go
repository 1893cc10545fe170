package grpcserver

import (
	"time"

	"google.golang.org/grpc"
)

// WithSendTimeout sets how long one Send may be held by flow control before
// the stream ends: the tests need less than the 10 s a real client is given.
func WithSendTimeout(d time.Duration) Option { return func(c *config) { c.sendTimeout = d } }

// WithServerOption adds opt to the grpc.Server's options: a test installs a
// stats handler that sees each call end on the server.
func WithServerOption(opt grpc.ServerOption) Option {
	return func(c *config) { c.serverOptions = append(c.serverOptions, opt) }
}

// WithDrainTimeout sets how long the streams the shutdown ended may take to
// deliver what was sent before the connections are closed.
func WithDrainTimeout(d time.Duration) Option { return func(c *config) { c.drainTimeout = d } }
