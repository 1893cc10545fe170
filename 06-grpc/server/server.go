// Package server is the HTTP face of the update log: one handler per
// strategy, all reading the same log (a feed.Store).
package server

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"

	"realtime/06-grpc/feed"
)

// Server is the handler for every route of this chapter. Its event streams
// outlive their requests, so it has a Shutdown of its own.
type Server struct {
	routes   http.Handler // every route, behind the guard
	detached *detachedStreams
	hooks    *webhooks
}

// New returns the handler for every route of this chapter, reading from and
// publishing to log. Every route is behind the guard in guard.go.
func New(log feed.Store, opts ...Option) *Server {
	cfg := config{
		bodyTimeout: DefaultBodyTimeout,
		maxHeld:     DefaultMaxHeld(),
		heartbeat:   DefaultHeartbeat,
		retry:       DefaultRetry,
		queue:       DefaultQueue,
		pingPeriod:  pingPeriod,
		pongWait:    pongWait,
		webhookRetry: retryPolicy{
			base: DefaultWebhookBackoff, max: DefaultWebhookBackoffMax, maxFailures: DefaultWebhookMaxFailures,
		},
		webhookTimeout: DefaultWebhookTimeout,
		webhookAllow:   DefaultWebhookAllow(),
		maxWebhooks:    DefaultMaxWebhooks,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	mux := http.NewServeMux()
	s := &Server{routes: guard(mux, cfg.allowedHosts, cfg.allowedOrigins), detached: newDetachedStreams(), hooks: newWebhooks(log, cfg)}
	addRoutes(mux, log, cfg, s.detached, s.hooks)
	return s
}

// ServeHTTP serves every route of this chapter.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.routes.ServeHTTP(w, r) }

// Shutdown ends the event streams that run apart from their requests and
// the webhook deliveries, and waits for them until ctx ends. Call it with
// http.Server.Shutdown, which cannot see them: it ends everything else.
func (s *Server) Shutdown(ctx context.Context) error {
	return errors.Join(s.detached.shutdown(ctx), s.hooks.shutdown(ctx))
}

// config is what the options set.
type config struct {
	allowedHosts   []string      // names besides loopback that Host may carry
	allowedOrigins []string      // origins besides the server's own whose pages may write to it
	bodyTimeout    time.Duration // publish: how long the request body may take to arrive
	maxHeld        int           // the most requests held open at once, waiting for updates
	runtimeStats   bool          // serve GET /debug/runtime
	heartbeat      time.Duration // SSE: time between comment heartbeats
	retry          time.Duration // SSE: the reconnection time sent to clients
	queue          int           // SSE, WebSocket: updates a subscriber may fall behind before it is dropped
	pingPeriod     time.Duration // WebSocket: time between pings (pingPeriod, but for tests)
	pongWait       time.Duration // WebSocket: silence after which a peer is gone (pongWait, but for tests)

	webhookRetry   retryPolicy    // webhooks: when a failed delivery is tried again, and given up
	webhookTimeout time.Duration  // webhooks: how long one delivery attempt may take
	webhookAllow   []netip.Prefix // webhooks: the addresses deliveries may go to
	maxWebhooks    int            // webhooks: the most registrations at once
	webhookStore   WebhookStore   // webhooks: where registrations are shared with other servers; nil: in memory
	webhookLease   time.Duration  // webhooks: how long a server delivers to a shared one before it renews its claim

	grpcSubscribers func() []GRPCSubscriber // the gRPC server's open streams; nil without one

	// webhooks: nil dials TCP, through the destination check (tests dial in memory)
	webhookDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Option configures the handler New returns.
type Option func(*config)

// WithAllowedHosts lets requests name the server by hosts (names or IP
// addresses, without a port) besides loopback ones: the name of a reverse
// proxy in front of it, or its name on a LAN. Any other Host is refused, so
// that a DNS name rebound to this machine cannot read it.
func WithAllowedHosts(hosts ...string) Option {
	return func(c *config) { c.allowedHosts = append(c.allowedHosts, hosts...) }
}

// WithAllowedOrigins lets pages of the given origins (scheme://host[:port],
// as a browser writes it in Origin) publish and open WebSockets, as the
// server's own pages may: a front end served from another name. A malformed
// origin is never matched.
func WithAllowedOrigins(origins ...string) Option {
	return func(c *config) { c.allowedOrigins = append(c.allowedOrigins, origins...) }
}

// WithBodyTimeout sets how long a publish request's body may take to arrive
// before the request is answered 408 Request Timeout. Zero or less leaves
// only the server's own ReadTimeout.
func WithBodyTimeout(d time.Duration) Option { return func(c *config) { c.bodyTimeout = d } }

// WithRuntimeStats serves GET /debug/runtime (see RuntimeStats), behind the
// guard like every other route: a page rebound to this machine must not read
// it either.
func WithRuntimeStats() Option { return func(c *config) { c.runtimeStats = true } }

// WithMaxHeld caps how many requests may be held open at once, waiting for
// updates; the ones past the cap are answered 503 Service Unavailable with
// Retry-After. Less than 1 refuses every one. The default is DefaultMaxHeld.
func WithMaxHeld(n int) Option { return func(c *config) { c.maxHeld = max(n, 0) } }

// WithHeartbeat sets the time between an event stream's heartbeats.
func WithHeartbeat(d time.Duration) Option { return func(c *config) { c.heartbeat = d } }

// WithRetry sets the reconnection time an event stream sends its clients.
func WithRetry(d time.Duration) Option { return func(c *config) { c.retry = d } }

// WithQueue sets how many updates an event stream's subscriber may fall
// behind before it is disconnected.
func WithQueue(n int) Option { return func(c *config) { c.queue = n } }

// WithWebhookBackoff sets the wait after a failed webhook delivery: from 0 to
// base after the first failure, to 2·base after the second, and so on, at
// most max.
func WithWebhookBackoff(base, max time.Duration) Option {
	return func(c *config) { c.webhookRetry.base, c.webhookRetry.max = base, max }
}

// DefaultMaxWebhooks caps registrations: each costs a goroutine, and while
// its receiver fails, a connection attempt a minute.
const DefaultMaxWebhooks = 1024

// WithMaxWebhooks caps how many webhooks may be registered at once; past the
// cap, POST /webhooks answers 503 with Retry-After.
func WithMaxWebhooks(n int) Option { return func(c *config) { c.maxWebhooks = n } }

// writeJSON answers with v as JSON. Poll answers must never be cached: a
// cached answer is a stale cursor.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The update JSON a batch carries is the log's, written as it is: with
	// HTML escaping on, the encoder would rewrite every <, > and & in it as
	// six bytes, and an answer could be six times its bound.
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	// The status is sent; an encoding error now means the client went away.
	_ = enc.Encode(v)
}

// gapAnswer is what every strategy says when it cannot resume a cursor: where
// the client should continue from.
type gapAnswer struct {
	Last  uint64 `json:"last"`
	Epoch string `json:"epoch"`
}
