// Package feed is the versioned update log that every transport reads from.
//
// The log stamps each published text with the next id and the time, keeps the
// newest updates in a bounded history, and answers "what came after this
// cursor?". It is the single place that decides whether a cursor can be
// served, so no transport can skip an update silently.
package feed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultHistory is how many updates a Log keeps when none is asked for.
const DefaultHistory = 1024

// MaxDataBytes bounds one update's text, so that one publisher cannot make
// every client download megabytes.
const MaxDataBytes = 64 << 10

// Reasons Publish refuses a text.
var (
	ErrEmpty    = errors.New("update text is empty")
	ErrTooLarge = fmt.Errorf("update text is larger than %d bytes", MaxDataBytes)
	ErrNotText  = errors.New("update text is not valid UTF-8")
)

// Update is one published text, stamped by the server. Every transport
// carries this shape.
type Update struct {
	ID   uint64    `json:"id"`
	Data string    `json:"data"`
	Time time.Time `json:"time"`
}

// ErrGap reports a cursor that the log cannot serve without losing updates:
// older than the history it holds, newer than anything it published, or from
// an earlier server run (another epoch). The caller must tell its client, who
// then continues from the log's current position.
var ErrGap = errors.New("cursor cannot be served")

// Cursor is a client's position: the id of the last update it handled, and
// the epoch of the server run that id belongs to. An empty Epoch means "the
// client does not know", and only the id is checked.
type Cursor struct {
	After uint64
	Epoch string
}

// Log is a bounded, append-only sequence of updates, safe for concurrent use
// by any number of publishers and readers.
type Log struct {
	epoch string
	now   func() time.Time

	mu      sync.Mutex
	ring    []Update // the update with id n sits at ring[(n-1)%history]
	last    uint64   // id of the newest update; 0 before the first publish
	history int

	changed chan struct{} // closed by the next Publish, then replaced; guarded by mu

	subscribers map[*Subscription]struct{} // guarded by mu
}

// Option configures a Log.
type Option func(*Log)

// WithEpoch fixes the log's epoch instead of drawing a random one; tests use
// it to name runs.
func WithEpoch(epoch string) Option { return func(l *Log) { l.epoch = epoch } }

// WithClock replaces time.Now for stamping updates.
func WithClock(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// New returns an empty log that keeps the newest history updates.
// The log draws a random epoch: ids restart at 1 in every server run, so a
// cursor alone cannot tell this run's update 7 from the previous run's.
func New(history int, opts ...Option) (*Log, error) {
	if history < 1 {
		return nil, fmt.Errorf("history must be at least 1, got %d", history)
	}
	l := &Log{history: history, now: time.Now, changed: make(chan struct{}), subscribers: make(map[*Subscription]struct{})}
	for _, opt := range opts {
		opt(l)
	}
	if l.epoch == "" {
		l.epoch = randomEpoch()
	}
	return l, nil
}

func randomEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return hex.EncodeToString(b[:])
}

// Epoch names this server run.
func (l *Log) Epoch() string { return l.epoch }

// Publish appends data as the next update and returns it. It refuses empty
// text, text over MaxDataBytes, and invalid UTF-8 (JSON would replace the bad
// bytes, and clients would not get what was sent).
func (l *Log) Publish(data string) (Update, error) {
	switch {
	case data == "":
		return Update{}, ErrEmpty
	case len(data) > MaxDataBytes:
		return Update{}, ErrTooLarge
	case !utf8.ValidString(data):
		return Update{}, ErrNotText
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	u := Update{ID: l.last, Data: data, Time: l.now().UTC()}
	if len(l.ring) < l.history {
		l.ring = append(l.ring, u)
	} else {
		l.ring[(l.last-1)%uint64(l.history)] = u
	}
	close(l.changed) // wake every waiter at once, with no goroutine per waiter
	l.changed = make(chan struct{})
	for sub := range l.subscribers {
		sub.updates <- u
	}
	return u, nil
}

// Changed returns a channel that the next Publish closes. Take it before
// asking After: an update published between the two then still wakes the
// waiter, instead of slipping past it.
func (l *Log) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Last returns the id of the newest update, 0 before the first.
func (l *Log) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// After returns, in order, every update after the cursor, and the newest id.
// The slice is the caller's own. If the cursor cannot be served it returns
// ErrGap (wrapped with the reason) and the newest id, so the caller can tell
// its client where to continue.
func (l *Log) After(c Cursor) ([]Update, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check(c); err != nil {
		return nil, l.last, err
	}
	if c.After == l.last {
		return nil, l.last, nil
	}
	updates := make([]Update, 0, l.last-c.After)
	for id := c.After + 1; id <= l.last; id++ {
		updates = append(updates, l.ring[(id-1)%uint64(l.history)])
	}
	return updates, l.last, nil
}

// check decides whether c can be served exactly; l.mu must be held.
func (l *Log) check(c Cursor) error {
	switch {
	case c.Epoch != "" && c.Epoch != l.epoch:
		return fmt.Errorf("%w: epoch %q is from an earlier server run (now %q)", ErrGap, c.Epoch, l.epoch)
	case c.After > l.last:
		// Ids restart in every run: a cursor ahead of us is from an earlier one.
		return fmt.Errorf("%w: cursor %d is ahead of the newest update %d", ErrGap, c.After, l.last)
	case c.After < l.oldest()-1:
		return fmt.Errorf("%w: cursor %d is older than the history, which starts at %d", ErrGap, c.After, l.oldest())
	}
	return nil
}

// oldest returns the id of the oldest update held, or 1 while the log is
// empty; l.mu must be held.
func (l *Log) oldest() uint64 {
	return l.last - uint64(len(l.ring)) + 1
}

// Subscription delivers every update published after it was made, in order,
// through a queue of fixed size. A subscriber that lets the queue fill is
// dropped: its channel is closed and Dropped reports it, so the publisher
// never waits for anyone. A dropped subscriber resumes from its cursor with
// After, as any reconnecting client does.
type Subscription struct {
	log     *Log
	updates chan Update
	dropped bool // guarded by log.mu
}

// Subscribe returns a subscription with room for queue updates. Subscribe
// before reading the history with After: an update published in between is
// then in both, and the reader skips the copy by id, instead of in neither.
func (l *Log) Subscribe(queue int) *Subscription {
	sub := &Subscription{log: l, updates: make(chan Update, queue)}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subscribers[sub] = struct{}{}
	return sub
}

// Updates returns the channel of updates; it is closed when the subscription
// is closed or dropped.
func (s *Subscription) Updates() <-chan Update { return s.updates }

// Dropped reports whether the subscription ended because it fell behind.
func (s *Subscription) Dropped() bool {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.dropped
}

// Close ends the subscription. It is safe to call more than once.
func (s *Subscription) Close() {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	s.end()
}

// end removes s and closes its channel; s.log.mu must be held.
func (s *Subscription) end() {
	if _, ok := s.log.subscribers[s]; ok {
		delete(s.log.subscribers, s)
		close(s.updates)
	}
}
