// Package grpcserver is the gRPC face of the update log: the Updates service
// of proto/realtime/v1, reading from and publishing to the same log as
// every HTTP strategy.
package grpcserver

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"realtime/06-grpc/feed"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
)

// Server serves the Updates service, with the standard health service and
// server reflection beside it. Like http.Server, it has a Serve and a
// Shutdown, so that the program starts and stops it as it does the HTTP
// server.
type Server struct {
	grpc         *grpc.Server
	health       *health.Server
	endStreams   context.CancelFunc // ends every stream
	drainTimeout time.Duration      // how long ended streams may take to deliver what was sent
	streams      *streams           // the open Subscribe streams, for Subscribers
}

// drainTimeout is how long the streams a shutdown ended may take to deliver
// what was already sent, and their status, before the connections close:
// a client that reads takes its last flow-control window (64 KiB to a few
// MiB) in far less on any network this server is meant for; a client that
// does not read would hold its connection, and GracefulStop, for ever. Well
// under the program's shutdown timeout (5 s).
const drainTimeout = time.Second

// Keepalive. A Subscribe stream on a quiet log carries nothing for minutes:
// only pings tell a live client from one that vanished without a word (a
// laptop closed, a NAT that forgot the mapping), whose stream would otherwise
// hold its subscription for ever; and only traffic keeps proxies and NATs
// that drop idle connections from dropping a live one.
const (
	// pingTime is how long a connection may be silent before the server
	// pings it, and pingTimeout how long the ping's answer may take before
	// the connection is closed: a vanished client is noticed within a
	// minute, as a WebSocket peer is (pongWait).
	pingTime    = 45 * time.Second
	pingTimeout = 15 * time.Second
	// minClientPingTime is how often a client may ping before it is sent
	// away (GOAWAY "too_many_pings"): 10 s is the least grpc-go's client
	// allows itself, so no grpc-go client is refused, whatever it is set
	// to. (grpc-go's default is 5 minutes, and it sends away a client that
	// pings a connection without streams at all: PermitWithoutStream.)
	minClientPingTime = 10 * time.Second
)

// maxRequestBytes is the largest request the server reads: a PublishRequest
// of the largest update text (field 1's tag, 1 byte, its length as a varint,
// 3 bytes up to 2 MiB, and the text). gRPC reads a message whole before it is
// decoded, so this bounds the memory one call costs, and a larger one is
// refused with ResourceExhausted before it is read: the default is 4 MiB.
const maxRequestBytes = 1 + 3 + feed.MaxDataBytes

// Option configures the server New returns.
type Option func(*config)

// config is what the options set.
type config struct {
	queue         int                 // updates a subscriber may fall behind before it is dropped
	sendTimeout   time.Duration       // how long flow control may hold one Send (sendTimeout, but for tests)
	drainTimeout  time.Duration       // how long ended streams may drain (drainTimeout, but for tests)
	maxStreams    int                 // the most Subscribe streams open at once
	serverOptions []grpc.ServerOption // more options for the grpc.Server (tests: a stats handler)
}

// WithMaxStreams caps how many Subscribe streams may be open at once; past
// the cap, Subscribe answers Unavailable with a RetryInfo. Less than 1
// refuses every one. The default is DefaultMaxStreams.
func WithMaxStreams(n int) Option { return func(c *config) { c.maxStreams = max(n, 0) } }

// New returns a server of the Updates service, reading from and publishing
// to log.
func New(log feed.Store, opts ...Option) *Server {
	cfg := config{queue: DefaultQueue, sendTimeout: sendTimeout, drainTimeout: drainTimeout, maxStreams: DefaultMaxStreams}
	for _, opt := range opts {
		opt(&cfg)
	}
	stopping, endStreams := context.WithCancel(context.Background())
	serverOptions := append([]grpc.ServerOption{
		grpc.InTapHandle(cancellable),
		grpc.StreamInterceptor(endAtShutdown(stopping)),
		grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: pingTime, Timeout: pingTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minClientPingTime, PermitWithoutStream: true}),
	}, cfg.serverOptions...)
	s := &Server{grpc: grpc.NewServer(serverOptions...), health: health.NewServer(), endStreams: endStreams,
		drainTimeout: cfg.drainTimeout, streams: newStreams()}
	realtimev1.RegisterUpdatesServer(s.grpc, &updates{
		log: log, queue: cfg.queue, sendTimeout: cfg.sendTimeout, streams: s.streams, places: make(semaphore, cfg.maxStreams),
	})
	// The standard health service: "" is the whole server (SERVING from the
	// start), and each service has a status of its own.
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus(realtimev1.Updates_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	// Reflection serves the descriptors of every registered service, which
	// the generated code embeds: grpcurl and Postman need no .proto file.
	reflection.Register(s.grpc)
	return s
}

// Serve accepts connections on lis until Shutdown; it returns nil after a
// Shutdown, like grpc.Server.Serve, and also when the Shutdown came first
// (it closes lis then), where grpc.Server.Serve says ErrServerStopped: a
// program stopped as soon as it started does that, and it is a clean end.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Shutdown stops the server. Health says NOT_SERVING first, so that
// balancers and probes watching it stop sending calls here; every stream
// ends at once, with Unavailable (a Subscribe or a health Watch would
// otherwise last for ever, and GracefulStop waits for it); the other calls in
// flight may finish. After the drain timeout the connections close: what is
// left is data, and the statuses behind it, that a client does not read.
// If ctx ends first, the server stops at once, and Shutdown returns ctx's
// error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.Shutdown()
	s.endStreams()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.grpc.GracefulStop()
	}()
	drained := time.NewTimer(s.drainTimeout)
	defer drained.Stop()
	select {
	case <-stopped:
		return nil
	case <-drained.C:
		// grpc-go cannot reset one stream: its status waits behind the
		// data its client does not take. Closing the connection is the
		// only way, and the client retries as after any cut.
		s.grpc.Stop()
		<-stopped
		return nil
	case <-ctx.Done():
		s.grpc.Stop() // which ends GracefulStop too
		<-stopped
		return ctx.Err()
	}
}

// errShuttingDown ends every stream when the server shuts down. Unavailable
// is the code a client retries: it resumes from its cursor on the next
// server, or this one after a restart.
var errShuttingDown = status.Error(codes.Unavailable, "server shutting down")

// endAtShutdown is a stream interceptor that ends every stream when stopping
// ends: it cancels the stream's context (the one cancellable made), which
// ends a health Watch, a reflection stream and a Send that flow control
// holds, as it ends a Subscribe. The status is errShuttingDown whatever the
// handler answers to its cancelled context; a Send that was cut leaves the
// client Canceled (grpc-go writes that itself, see sender.send).
func endAtShutdown(stopping context.Context) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		cancel := ss.Context().Value(cancelKey{}).(context.CancelCauseFunc)
		// Unregistered when the stream ends: the stopping context keeps no
		// function of a stream that has gone.
		stop := context.AfterFunc(stopping, func() { cancel(errShuttingDown) })
		defer stop()
		err := handler(srv, ss)
		if err != nil && errors.Is(context.Cause(ss.Context()), errShuttingDown) {
			return errShuttingDown
		}
		return err
	}
}
