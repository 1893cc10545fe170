// Package feed is the versioned update log that every transport reads from.
//
// The log stamps each published text with the next id and the time, keeps the
// newest updates in a bounded history, and answers "what came after this
// cursor?". It is the single place that decides whether a cursor can be
// served, so no transport can skip an update silently.
package feed

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	ErrEmpty    = errors.New("update text is empty or only white space")
	ErrTooLarge = fmt.Errorf("update text is larger than %d bytes", MaxDataBytes)
	ErrNotText  = errors.New("update text is not valid UTF-8")
)

// ErrUnavailable is the reason a log gives when it cannot take an update
// for now (a shared log whose broker cannot be reached): unlike the
// reasons above, sending the same text again later may succeed.
var ErrUnavailable = errors.New("the log cannot be reached")

// Update is one published text, stamped by the server. Every transport
// carries this shape.
type Update struct {
	ID   uint64    `json:"id"`
	Data string    `json:"data"`
	Time time.Time `json:"time"`
}

// Entry is an update as the log holds and hands it out: the update, and its
// JSON, encoded once when it was published. Every reader shares JSON and
// must not modify it. Encoding once per update, instead of once per reader,
// is what keeps a broadcast to thousands of clients cheap.
type Entry struct {
	Update
	JSON []byte `json:"-"`
}

// NewEntry returns u as the log would hold it: a log whose updates are
// stamped elsewhere hands out one it read from there, and not from its copy,
// in the same shape.
func NewEntry(u Update) (Entry, error) {
	encoded, err := encode(u)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Update: u, JSON: encoded}, nil
}

// Limit bounds what one call to After hands out, so that one answer costs
// memory in proportion to the limit, never to the history.
type Limit struct {
	Updates int // at most this many updates
	Bytes   int // and at most this many bytes of JSON; the first update is always handed out, whatever its size
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

// maxEpochBytes bounds the epoch part of a cursor: ours are 16 hex digits.
const maxEpochBytes = 64

// String writes the cursor as clients carry it: "EPOCH-ID", or the bare id
// when the epoch is not known.
func (c Cursor) String() string { return string(c.Append(nil)) }

// Append appends the cursor, as String writes it, to b: a stream that sends
// a cursor with every update does so without allocating.
func (c Cursor) Append(b []byte) []byte {
	if c.Epoch != "" {
		b = append(append(b, c.Epoch...), '-')
	}
	return strconv.AppendUint(b, c.After, 10)
}

// ParseCursor reads a cursor as String writes it: "EPOCH-ID", or a bare id,
// which skips the check for a server restart. The epoch is letters, digits,
// '-' and '_', so a cursor needs no escaping in a URL or a header.
func ParseCursor(s string) (Cursor, error) {
	epoch, id := "", s
	if i := strings.LastIndexByte(s, '-'); i > 0 {
		epoch, id = s[:i], s[i+1:]
		if err := checkEpoch(epoch); err != nil {
			return Cursor{}, fmt.Errorf("%s: %w", Quote(s), err)
		}
	}
	after, err := parseID(id)
	if err != nil {
		return Cursor{}, err
	}
	return Cursor{After: after, Epoch: epoch}, nil
}

// parseID accepts plain decimal digits that fit an id, and says which rule
// a refused value broke.
func parseID(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty; want an update id such as 42, or EPOCH-42")
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s is too large", Quote(s))
	}
	if err != nil || s[0] == '+' {
		return 0, fmt.Errorf("%s is not an update id such as 42, or EPOCH-42", Quote(s))
	}
	return id, nil
}

func checkEpoch(epoch string) error {
	if len(epoch) > maxEpochBytes {
		return fmt.Errorf("the epoch before the last '-' is longer than %d bytes", maxEpochBytes)
	}
	for _, r := range epoch {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_') {
			return errors.New("the epoch may hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// maxQuoted is how much of a refused value an error message repeats: enough
// to recognise it, never a megabyte echoed back.
const maxQuoted = 100

// Quote quotes s for an error message, cut to its first 100 bytes.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(s))
}

// Store is the log as the transports use it. A *Log keeps it in this
// process's memory; a log that several servers share can stand in for it if
// it answers every method alike, which the suite in package feedtest checks.
type Store interface {
	Epoch() string
	Publish(data string) (Entry, error)
	Changed() <-chan struct{}
	Last() uint64
	After(c Cursor, limit Limit) ([]Entry, uint64, error)
	SubscribeAfter(c Cursor, queue int) ([]Entry, uint64, *Subscription, error)
}

// Log is a bounded, append-only sequence of updates, safe for concurrent use
// by any number of publishers and readers.
type Log struct {
	epoch string
	now   func() time.Time

	mu      sync.Mutex
	ring    []Entry // the update with id n sits at ring[(n-base)%history]
	base    uint64  // the id at ring[0]: 1, or the first Add after a gap
	last    uint64  // id of the newest update; 0 before the first publish
	history int

	changed chan struct{} // closed by the next Publish, then replaced; guarded by mu
	ended   bool          // by End: changed stays closed; guarded by mu

	subscribers map[*Subscription]struct{} // guarded by mu
}

// Option configures a Log.
type Option func(*Log)

// WithEpoch fixes the log's epoch instead of drawing a random one; tests use
// it to name runs.
func WithEpoch(epoch string) Option { return func(l *Log) { l.epoch = epoch } }

// WithLast starts the log after update last, holding nothing: a copy of a
// log whose older updates are gone (a stream that was purged) goes on from
// there, and a cursor at last is where it should be, not a gap.
func WithLast(last uint64) Option { return func(l *Log) { l.base, l.last = last+1, last } }

// WithClock replaces time.Now for stamping updates.
func WithClock(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// New returns an empty log that keeps the newest history updates.
// The log draws a random epoch: ids restart at 1 in every server run, so a
// cursor alone cannot tell this run's update 7 from the previous run's.
func New(history int, opts ...Option) (*Log, error) {
	if history < 1 {
		return nil, fmt.Errorf("history must be at least 1, got %d", history)
	}
	l := &Log{history: history, base: 1, now: time.Now, changed: make(chan struct{}), subscribers: make(map[*Subscription]struct{})}
	for _, opt := range opts {
		opt(l)
	}
	if l.epoch == "" {
		l.epoch = NewEpoch()
	}
	return l, nil
}

// NewEpoch draws a new, random epoch: 16 hex digits.
func NewEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return hex.EncodeToString(b[:])
}

// Epoch names this server run.
func (l *Log) Epoch() string { return l.epoch }

// Publish appends data as the next update and returns it. It refuses empty
// or blank text, text over MaxDataBytes, and invalid UTF-8 (JSON would
// replace the bad bytes, and clients would not get what was sent).
func (l *Log) Publish(data string) (Entry, error) {
	if err := CheckText(data); err != nil {
		return Entry{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return Entry{}, ErrEnded
	}
	return l.add(Update{ID: l.last + 1, Data: data, Time: l.now().UTC()})
}

// CheckText returns why data cannot be an update, or nil.
func CheckText(data string) error {
	switch {
	case strings.TrimSpace(data) == "":
		return ErrEmpty
	case len(data) > MaxDataBytes:
		return ErrTooLarge
	case !utf8.ValidString(data):
		return ErrNotText
	}
	return nil
}

// Add appends an update stamped elsewhere: by the stream a copy of the log
// follows. Its id must come after Last. An id past Last+1 means the updates
// in between are gone: the history is emptied and every subscriber dropped,
// so that each resumes from its cursor and is told of the gap.
func (l *Log) Add(u Update) (Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.ended:
		return Entry{}, ErrEnded
	case u.ID <= l.last:
		return Entry{}, fmt.Errorf("update %d is not after the newest, %d", u.ID, l.last)
	case u.ID > l.last+1:
		l.ring = l.ring[:0]
		l.base, l.last = u.ID, u.ID-1
		for sub := range l.subscribers {
			sub.dropped = true
			sub.end()
		}
	}
	return l.add(u)
}

// add appends u, whose id is l.last+1, and hands it to every subscriber;
// l.mu must be held.
func (l *Log) add(u Update) (Entry, error) {
	e, err := NewEntry(u)
	if err != nil {
		return Entry{}, err
	}
	l.last = u.ID
	if len(l.ring) < l.history {
		l.ring = append(l.ring, e)
	} else {
		l.ring[(l.last-l.base)%uint64(l.history)] = e
	}
	close(l.changed) // wake every waiter at once, with no goroutine per waiter
	l.changed = make(chan struct{})
	shared := &e // one copy for every subscriber: a queue of pointers is small
	for sub := range l.subscribers {
		select {
		case sub.updates <- shared:
		default: // full: this subscriber fell behind, and must not hold up the rest
			sub.dropped = true
			sub.end()
		}
	}
	return e, nil
}

// encode returns the JSON of u. It leaves <, > and & as they are: the JSON
// is never embedded in HTML, and "\u003c" is six bytes where "<" is one.
func encode(u Update) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(u); err != nil {
		return nil, fmt.Errorf("encode update %d: %w", u.ID, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ErrEnded is the reason an ended log gives for refusing an update.
var ErrEnded = errors.New("the log has ended")

// End ends the log: a copy of a log that is gone (a stream deleted and
// created anew) ends, and a new copy takes its place. Every subscriber is
// dropped, as after a gap, so that each resumes from its cursor on the new
// copy; every waiter on Changed wakes and looks again. Afterwards Changed
// answers at once, a subscriber is dropped as soon as it subscribes, and
// Publish and Add refuse with ErrEnded; After still answers from what the
// log held. Ending an ended log does nothing.
func (l *Log) End() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.ended = true
	close(l.changed) // and never replaced: there is no next update to wait for
	for sub := range l.subscribers {
		sub.dropped = true
		sub.end()
	}
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

// After returns, in order, the updates after the cursor, as many as limit
// allows, and the newest id: a caller that got fewer than that asks again
// after the last one it got. The slice is the caller's own; the JSON in it is
// shared. If the cursor cannot be served it returns ErrGap (wrapped with the
// reason) and the newest id, so the caller can tell its client where to
// continue.
func (l *Log) After(c Cursor, limit Limit) ([]Entry, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check(c); err != nil {
		return nil, l.last, err
	}
	var entries []Entry
	size := 0
	for id := c.After + 1; id <= l.last && len(entries) < limit.Updates; id++ {
		e := l.ring[(id-l.base)%uint64(l.history)]
		size += len(e.JSON)
		if len(entries) > 0 && size > limit.Bytes {
			break
		}
		entries = append(entries, e)
	}
	return entries, l.last, nil
}

// check decides whether c can be served exactly; l.mu must be held.
func (l *Log) check(c Cursor) error {
	switch {
	case c.After > 0 && c.Epoch != "" && c.Epoch != l.epoch:
		// (A client at 0 of another run has seen nothing it could lose.)
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
// through a queue of fixed size. The Log plays the hub of gorilla/websocket's
// chat example and a Subscription its Client.send: a subscriber that lets the
// queue fill is dropped (its channel is closed and Dropped reports it), so
// the publisher never waits for anyone. A dropped subscriber resumes from its
// cursor, as any reconnecting client does.
type Subscription struct {
	log     *Log
	updates chan *Entry // shared with every other subscriber: never modified
	dropped bool        // guarded by log.mu
}

// SubscribeAfter subscribes with room for queue updates and, in the same
// instant, returns the history after the cursor and the newest id. Every
// update is then in exactly one of the two, by construction: the history
// holds what was published before the call, the subscription what comes
// after. A reader sends the history, then what the subscription delivers,
// with nothing to skip and nothing missed.
//
// If the cursor cannot be served, the history is empty and the error is
// ErrGap (wrapped with the reason); the subscription still delivers every
// update after the newest id, where the client continues. The history is the
// caller's own slice, sharing each update's JSON, so it costs little however
// large the updates are; write it out in bounded pieces.
func (l *Log) SubscribeAfter(c Cursor, queue int) ([]Entry, uint64, *Subscription, error) {
	sub := &Subscription{log: l, updates: make(chan *Entry, queue)}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subscribers[sub] = struct{}{}
	if l.ended {
		sub.dropped = true
		sub.end()
	}
	if err := l.check(c); err != nil {
		return nil, l.last, sub, err
	}
	history := make([]Entry, 0, l.last-c.After)
	for id := c.After + 1; id <= l.last; id++ {
		history = append(history, l.ring[(id-l.base)%uint64(l.history)])
	}
	return history, l.last, sub, nil
}

// Updates returns the channel of updates; it is closed when the subscription
// is closed or dropped. Every subscriber receives the same *Entry: read it,
// never modify it.
func (s *Subscription) Updates() <-chan *Entry { return s.updates }

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
