package server

import "time"

// WithKeepalive sets how often a WebSocket is pinged, and how long its peer
// may be silent before the server closes it: the tests need less than the
// minute a real peer is given.
func WithKeepalive(pingPeriod, pongWait time.Duration) Option {
	return func(c *config) { c.pingPeriod, c.pongWait = pingPeriod, pongWait }
}
