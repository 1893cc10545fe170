package server

import (
	"net/http"
	"time"
)

// GRPCSubscriber is one open gRPC Subscribe stream, as GET /grpc/subscribers
// lists it: the fields of grpcserver.Subscriber, which converts to it, so
// that this package needs no gRPC.
type GRPCSubscriber struct {
	Peer   string    `json:"peer"`   // the client's address, host:port
	Cursor string    `json:"cursor"` // the last update sent to it, as EPOCH-ID
	Since  time.Time `json:"since"`  // when the stream opened
}

// WithGRPCSubscribers makes GET /grpc/subscribers answer with what list
// returns: the open streams of the gRPC server beside this one, for the
// page, whose browser cannot be a gRPC client itself.
func WithGRPCSubscribers(list func() []GRPCSubscriber) Option {
	return func(c *config) { c.grpcSubscribers = list }
}

// handleGRPCSubscribers answers GET /grpc/subscribers with every open gRPC
// Subscribe stream, in the order they opened; none without a gRPC server.
// Like GET /webhooks, it is open to anyone who can reach the server, and
// shows no secret: a stream has none, and its peer address is what the
// server's own logs would show.
func handleGRPCSubscribers(list func() []GRPCSubscriber) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subscribers := []GRPCSubscriber{} // none is [], not null
		if list != nil {
			subscribers = append(subscribers, list()...)
		}
		writeJSON(w, http.StatusOK, struct {
			Subscribers []GRPCSubscriber `json:"subscribers"`
		}{subscribers})
	})
}
