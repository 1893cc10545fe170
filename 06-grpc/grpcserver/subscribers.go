package grpcserver

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/peer"

	"realtime/06-grpc/feed"
)

// Subscriber is one open Subscribe stream, as the server's page shows it:
// whose it is, how far it has been sent, and since when. Nothing in it is a
// secret: a stream has none.
type Subscriber struct {
	Peer   string    // the client's address, host:port, as the server sees it
	Cursor string    // the last update sent to it, as EPOCH-ID: where it would resume
	Since  time.Time // when the stream opened
}

// Subscribers returns every open Subscribe stream, in the order they
// opened: a new one comes last, and the list never reorders itself.
func (s *Server) Subscribers() []Subscriber { return s.streams.list() }

// streams is the set of open Subscribe streams.
type streams struct {
	mu     sync.Mutex
	open   map[*openStream]struct{} // guarded by mu
	opened uint64                   // guarded by mu: streams so far, for their order in the list
}

// openStream is one open Subscribe stream.
type openStream struct {
	seq   uint64 // its place in the list: opening order
	peer  string
	since time.Time
	epoch string
	// sent is the last id sent: written by the stream's handler after each
	// Send, read by whoever lists the streams. Atomic, so that a Send
	// costs no lock that a listing could hold up.
	sent atomic.Uint64
}

func newStreams() *streams { return &streams{open: make(map[*openStream]struct{})} }

// add notes a stream of the client ctx comes from, at cursor; remove it
// when the stream ends.
func (s *streams) add(ctx context.Context, cursor feed.Cursor) *openStream {
	o := &openStream{since: time.Now(), epoch: cursor.Epoch}
	if p, ok := peer.FromContext(ctx); ok {
		o.peer = p.Addr.String()
	}
	o.sent.Store(cursor.After)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened++
	o.seq = s.opened
	s.open[o] = struct{}{}
	return o
}

// remove forgets the stream o.
func (s *streams) remove(o *openStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, o)
}

// list returns every open stream, in opening order.
func (s *streams) list() []Subscriber {
	s.mu.Lock()
	open := slices.Collect(maps.Keys(s.open))
	s.mu.Unlock()
	slices.SortFunc(open, func(a, b *openStream) int { return cmp.Compare(a.seq, b.seq) })
	list := make([]Subscriber, 0, len(open))
	for _, o := range open {
		cursor := feed.Cursor{After: o.sent.Load(), Epoch: o.epoch}
		list = append(list, Subscriber{Peer: o.peer, Cursor: cursor.String(), Since: o.since})
	}
	return list
}
