package server

import (
	"context"
	"net"
	"time"
)

// WithKeepalive sets how often a WebSocket is pinged, and how long its peer
// may be silent before the server closes it: the tests need less than the
// minute a real peer is given.
func WithKeepalive(pingPeriod, pongWait time.Duration) Option {
	return func(c *config) { c.pingPeriod, c.pongWait = pingPeriod, pongWait }
}

// WithWebhookMaxFailures sets how many failed deliveries in a row disable a
// registration, so that a test need not fail twenty times.
func WithWebhookMaxFailures(n int) Option { return func(c *config) { c.webhookRetry.maxFailures = n } }

// WithWebhookDialer makes deliveries dial with dial instead of TCP: a test in
// a synctest bubble delivers over an in-memory network.
func WithWebhookDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(c *config) { c.webhookDial = dial }
}
