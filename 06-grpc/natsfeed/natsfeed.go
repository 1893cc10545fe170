// Package natsfeed keeps the update log in a NATS JetStream stream, so that
// several servers share one log: one sequence of ids, one history, one epoch.
//
// The stream's sequence numbers are the update ids, its retention (the newest
// History messages) is the history, and an epoch written into its metadata
// when it is created is the epoch: a client may resume on any server that
// uses the stream, and a stream created afresh is a new run. Publish is a
// JetStream publish.
//
// Each server follows the stream with one ordered consumer into a copy of the
// log in its own memory (a feed.Log), and serves every reader from that copy.
// A consumer per reader would cost the broker a consumer for every open
// stream of every server; one per server costs it one, and a broadcast to
// ten thousand subscribers is still one message from the broker.
//
// A stream deleted and created anew (a NATS restarted without its data, a
// "nats stream rm") is a new run, even though its name is the same: ids
// start again at 1, under another epoch. The server notices, by a periodic
// check and whenever Publish reads back something it did not publish, and
// follows the new stream into a new copy.
package natsfeed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"realtime/06-grpc/feed"
)

// DefaultStream is the stream's name when none is given.
const DefaultStream = "REALTIME"

// epochKey is the stream metadata key that holds the epoch.
const epochKey = "realtime-epoch"

// notAnUpdate stands in for the text of a message in the stream that no
// server made, and that is not an update's text (empty, too large, not
// UTF-8): someone with access to the broker published it. It is U+FFFD, the
// character that stands for one that could not be read.
const notAnUpdate = "\uFFFD"

// DefaultTimeout bounds each call to the broker: a server whose broker is
// gone answers with an error rather than hanging.
const DefaultTimeout = 5 * time.Second

// DefaultCheck is how often a server asks whether the stream is still the
// one it follows: one call to the broker, and how long at most this server
// serves a stream that is gone.
const DefaultCheck = 5 * time.Second

// Config says which stream to use, and how to create it if it does not
// exist yet.
type Config struct {
	// Stream names the stream; DefaultStream if empty. Its subject is
	// "feed." followed by the name.
	Stream string
	// History is how many updates the stream keeps, if this server creates
	// it. A stream that exists keeps what it was created with.
	History int
	// Epoch names the run, if this server creates the stream; random if
	// empty. Tests use it to name runs.
	Epoch string
	// Timeout bounds each call to the broker; DefaultTimeout if zero.
	Timeout time.Duration
	// Check is how often this server asks whether the stream, and the
	// bucket of webhook registrations, are still the ones it follows;
	// DefaultCheck if zero.
	Check time.Duration
}

// Log is the update log in a JetStream stream. It implements feed.Store.
type Log struct {
	js      jetstream.JetStream
	stream  jetstream.Stream // a handle by name: it stays good when the stream is created anew
	name    string
	subject string
	history int
	timeout time.Duration

	run        atomic.Pointer[run] // the life of the stream this server follows now
	restarting sync.Mutex          // one restart at a time, and none during or after Close
	ctx        context.Context     // canceled by Close
	cancel     context.CancelFunc
	watched    chan struct{} // closed when watch has stopped
	suspect    chan *run     // a run whose consumer delivered what its copy cannot hold: watch restarts it
}

var _ feed.Store = (*Log)(nil)

// run is one life of the stream as this server follows it: who it is, this
// server's copy of it, and the consumer that fills the copy. A stream created
// anew is another life, and gets another run: the two never mix.
type run struct {
	created time.Time // the stream's, with its epoch: a stream created anew differs in both
	epoch   string
	copy    *feed.Log // this server's copy, fed by the consumer
	follow  jetstream.ConsumeContext
	ended   atomic.Bool // another run has taken this one's place
	suspect chan<- *run // the Log's
}

// errChanged says the stream is not the life of it that a run follows.
var errChanged = errors.New("the stream was created anew")

// New opens the stream named in cfg on the connection nc, creating it if it
// does not exist, and returns once this server's copy holds everything the
// stream held when New was called. Close stops following it.
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Log, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.History < 1 {
		return nil, fmt.Errorf("history must be at least 1, got %d", cfg.History)
	}
	if cfg.Epoch == "" {
		cfg.Epoch = feed.NewEpoch()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Check <= 0 {
		cfg.Check = DefaultCheck
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	l := &Log{js: js, name: cfg.Stream, subject: "feed." + cfg.Stream, history: cfg.History, timeout: cfg.Timeout,
		watched: make(chan struct{}), suspect: make(chan *run, 1)}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	l.stream, err = l.open(ctx, cfg.Epoch)
	if err != nil {
		return nil, err
	}
	r, err := l.follow(ctx, l.stream.CachedInfo())
	if err != nil {
		return nil, err
	}
	l.run.Store(r)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.watch(cfg.Check)
	return l, nil
}

// open creates the stream with the given epoch, or opens it as it is if it
// exists.
func (l *Log) open(ctx context.Context, epoch string) (jetstream.Stream, error) {
	stream, err := l.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       l.name,
		Subjects:   []string{l.subject},
		MaxMsgs:    int64(l.history),
		Discard:    jetstream.DiscardOld, // the history: the newest History updates
		Storage:    jetstream.FileStorage,
		Metadata:   map[string]string{epochKey: epoch},
		Retention:  jetstream.LimitsPolicy,
		MaxMsgSize: feed.MaxDataBytes, // an update's text, and no more, from whoever publishes
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another server made it first, with its own epoch: use theirs.
		stream, err = l.js.Stream(ctx, l.name)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", l.name, err)
	}
	if stream.CachedInfo().Config.Metadata[epochKey] == "" {
		return nil, fmt.Errorf("stream %s has no %s in its metadata: it was not made by this server", l.name, epochKey)
	}
	return stream, nil
}

// follow starts a run on the stream that info describes: a copy, and an
// ordered consumer that fills it from the stream's start. It returns once
// the copy holds everything the stream held when info was taken.
func (l *Log) follow(ctx context.Context, info *jetstream.StreamInfo) (*run, error) {
	r := &run{created: info.Created, epoch: info.Config.Metadata[epochKey], suspect: l.suspect}
	// The copy starts where the stream does: after a purge, past the ids
	// that are gone, so that a client that read them missed nothing.
	var err error
	r.copy, err = feed.New(int(info.Config.MaxMsgs), feed.WithEpoch(r.epoch), feed.WithLast(max(info.State.FirstSeq, 1)-1))
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", l.name, err)
	}
	consumer, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.subject}})
	if err != nil {
		return nil, fmt.Errorf("stream %s: following it: %w", l.name, err)
	}
	r.follow, err = consumer.Consume(r.add)
	if err != nil {
		return nil, fmt.Errorf("stream %s: following it: %w", l.name, err)
	}
	if err := r.catchUp(ctx, info.State.LastSeq); err != nil {
		l.stop(r)
		return nil, fmt.Errorf("stream %s: %w", l.name, err)
	}
	return r, nil
}

// stop stops r's consumer, and waits, within the timeout, until it has
// stopped. Stopping it waits for a reset in progress, which can wait on a
// broker that is gone for twenty seconds: past the timeout, it goes on
// stopping on its own, and is gone once it has.
func (l *Log) stop(r *run) {
	stopped := make(chan struct{})
	go func() {
		r.follow.Stop()
		<-r.follow.Closed()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(l.timeout):
	}
}

// add copies one message of the stream into this run's copy. The ordered
// consumer hands them over in order, one at a time; after a gap (updates
// that left the stream while this server could not follow it) the copy
// drops its subscribers, who resume and are told of the gap.
func (r *run) add(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		return // not a stream message
	}
	data := string(msg.Data())
	if feed.CheckText(data) != nil {
		// No server made it. It keeps its id, so that the ids stay
		// contiguous (skipping it would look like a gap, and drop every
		// subscriber), but not its text, which no client must get.
		data = notAnUpdate
	}
	_, err = r.copy.Add(feed.Update{ID: meta.Sequence.Stream, Data: data, Time: meta.Timestamp.UTC()})
	if err != nil && !errors.Is(err, feed.ErrEnded) {
		// An id that does not come after the newest: the consumer follows
		// something else than the copy holds (a stream created anew). The
		// consumer cannot stop itself from its own callback; watch can.
		select {
		case r.suspect <- r:
		default: // one is waiting already
		}
	}
}

// is reports whether info describes the life of the stream that r follows.
func (r *run) is(info *jetstream.StreamInfo) bool {
	return info.Created.Equal(r.created) && info.Config.Metadata[epochKey] == r.epoch
}

// catchUp waits until r's copy holds the update with id last. It returns
// errChanged if another run takes r's place meanwhile: r's copy will never
// hold it.
func (r *run) catchUp(ctx context.Context, last uint64) error {
	for {
		changed := r.copy.Changed() // an ended copy's is closed: the check below ends the loop
		switch {
		case r.copy.Last() >= last:
			return nil
		case r.ended.Load():
			return errChanged
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for update %d from the stream: %w", last, ctx.Err())
		}
	}
}

// watch asks, every interval, whether the stream is still the one this
// server follows, until Close.
func (l *Log) watch(interval time.Duration) {
	defer close(l.watched)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			l.check()
		case r := <-l.suspect:
			ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
			_, _ = l.restart(ctx, r) // if it fails, the next check tries again
			cancel()
		case <-l.ctx.Done():
			return
		}
	}
}

// check follows the stream anew if it is not the life of it this server
// follows, or if it is gone. A broker that does not answer is no news: the
// consumer resumes by itself when it is back.
func (l *Log) check() {
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	r := l.run.Load()
	info, err := l.stream.Info(ctx)
	if err == nil && r.is(info) || err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return
	}
	_, _ = l.restart(ctx, r) // if it fails, the next check tries again
}

// restart follows the stream anew, unless another restart already took the
// place of seen, the run its caller found wanting: it makes a new run from
// the stream's start, creating the stream if it is gone (as New would, with
// a new epoch), puts it in place, and ends seen. Ending seen's copy drops
// its subscribers, who resume here, on the new run, and are told by the
// epoch that it is one; and it wakes whoever waits on its Changed, to look
// again.
func (l *Log) restart(ctx context.Context, seen *run) (*run, error) {
	l.restarting.Lock()
	defer l.restarting.Unlock()
	if r := l.run.Load(); r != seen || l.ctx.Err() != nil {
		return r, nil // done already, or closed: nothing more to follow
	}
	info, err := l.stream.Info(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		var stream jetstream.Stream
		if stream, err = l.open(ctx, feed.NewEpoch()); err == nil {
			info = stream.CachedInfo()
		}
	}
	if err != nil {
		return seen, fmt.Errorf("stream %s: %w", l.name, err)
	}
	r, err := l.follow(ctx, info)
	if err != nil {
		return seen, err
	}
	l.run.Store(r)
	seen.ended.Store(true) // before End wakes the waiters, so that they see it
	seen.copy.End()
	l.stop(seen)
	return r, nil
}

// Close stops following the stream and waits until the consumer has
// stopped, or the timeout has passed (a consumer can wait on a broker that
// is gone). The stream itself, and every other server's copy, stay.
func (l *Log) Close() {
	l.cancel()
	<-l.watched
	l.restarting.Lock()
	defer l.restarting.Unlock()
	l.stop(l.run.Load())
}

// Epoch names the run: the epoch the stream was created with.
func (l *Log) Epoch() string { return l.run.Load().epoch }

// Publish appends data to the stream and returns the update once this
// server's copy holds it, so that whoever published reads it back here; if
// the copy does not get it within the timeout, it reads it from the stream.
// When the broker does not answer within the timeout, the error wraps
// feed.ErrUnavailable.
func (l *Log) Publish(data string) (feed.Entry, error) {
	if err := feed.CheckText(data); err != nil {
		return feed.Entry{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	r := l.run.Load()
	before := r.copy.Last()
	ack, err := l.js.Publish(ctx, l.subject, []byte(data))
	if err != nil {
		return feed.Entry{}, fmt.Errorf("%w: publishing to stream %s: %v", feed.ErrUnavailable, l.name, err)
	}
	e, err := readBack(ctx, r, before, ack.Sequence, data)
	if errors.Is(err, errChanged) {
		// The stream that took it is not the one this server followed:
		// follow that one, and read the update back there.
		if r, err = l.restart(ctx, r); err == nil {
			e, err = readBack(ctx, r, 0, ack.Sequence, data)
		}
	}
	if err != nil {
		// The stream took it: an error would have the client send it
		// again, and it would be there twice. Ask the stream.
		e, err = l.fetch(ack.Sequence, data)
	}
	if err != nil {
		return feed.Entry{}, fmt.Errorf("publishing to stream %s: %w", l.name, err)
	}
	return e, nil
}

// fetch returns update id, which Publish published with data, as the stream
// holds it.
func (l *Log) fetch(id uint64, data string) (feed.Entry, error) {
	// A context of its own: Publish's may have run out waiting for the copy.
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	msg, err := l.stream.GetMsg(ctx, id)
	if err != nil {
		return feed.Entry{}, fmt.Errorf("%w: update %d was taken, but cannot be read back: %v", feed.ErrUnavailable, id, err)
	}
	if string(msg.Data) != data {
		return feed.Entry{}, fmt.Errorf("update %d was taken, but the stream holds another in its place", id)
	}
	return feed.NewEntry(feed.Update{ID: id, Data: data, Time: msg.Time.UTC()})
}

// readBack returns update id, which Publish published with data, from r's
// copy, once the copy holds it; before is the newest id the copy held before
// it was published. An id at or below that, or an update with other data,
// is from another life of the stream than r's: readBack then says
// errChanged.
func readBack(ctx context.Context, r *run, before, id uint64, data string) (feed.Entry, error) {
	if id <= before {
		return feed.Entry{}, errChanged // ids only grow in one stream
	}
	if err := r.catchUp(ctx, id); errors.Is(err, errChanged) {
		return feed.Entry{}, err
	} else if err != nil {
		return feed.Entry{}, fmt.Errorf("%w: %v", feed.ErrUnavailable, err)
	}
	entries, _, err := r.copy.After(feed.Cursor{After: id - 1}, feed.Limit{Updates: 1})
	if err != nil || len(entries) == 0 {
		return feed.Entry{}, fmt.Errorf("update %d left the history before it could be read back", id)
	}
	if entries[0].Data != data {
		return feed.Entry{}, errChanged
	}
	return entries[0], nil
}

// Changed returns a channel that the next update this server's copy
// receives closes, or a new run.
func (l *Log) Changed() <-chan struct{} { return l.run.Load().copy.Changed() }

// Last returns the id of the newest update in this server's copy.
func (l *Log) Last() uint64 { return l.run.Load().copy.Last() }

// After is feed.Log's After, on this server's copy, once the copy has caught
// up with the cursor.
func (l *Log) After(c feed.Cursor, limit feed.Limit) ([]feed.Entry, uint64, error) {
	r := l.run.Load()
	l.waitFor(r, c)
	return r.copy.After(c, limit)
}

// SubscribeAfter is feed.Log's SubscribeAfter, on this server's copy, once
// the copy has caught up with the cursor.
func (l *Log) SubscribeAfter(c feed.Cursor, queue int) ([]feed.Entry, uint64, *feed.Subscription, error) {
	r := l.run.Load()
	l.waitFor(r, c)
	return r.copy.SubscribeAfter(c, queue)
}

// waitFor waits, briefly, until r's copy has the update the cursor names. A
// client that read update 10 on another server and moves here may arrive
// before the consumer has brought update 10 here: without the wait it would
// be told its cursor is ahead of the newest update, a gap that is not one. A
// cursor of another run, or ahead of the stream too, is not waited for.
func (l *Log) waitFor(r *run, c feed.Cursor) {
	if c.After <= r.copy.Last() || c.Epoch != "" && c.Epoch != r.epoch {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil || c.After > info.State.LastSeq {
		return
	}
	_ = r.catchUp(ctx, c.After) // past the timeout, the copy answers as it is
}
