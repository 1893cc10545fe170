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
package natsfeed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"realtime/06-grpc/feed"
)

// DefaultStream is the stream's name when none is given.
const DefaultStream = "REALTIME"

// epochKey is the stream metadata key that holds the epoch.
const epochKey = "realtime-epoch"

// DefaultTimeout bounds each call to the broker: a server whose broker is
// gone answers with an error rather than hanging.
const DefaultTimeout = 5 * time.Second

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
}

// Log is the update log in a JetStream stream. It implements feed.Store.
type Log struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	subject string
	epoch   string
	timeout time.Duration
	copy    *feed.Log // this server's copy, fed by the consumer
	follow  jetstream.ConsumeContext
}

var _ feed.Store = (*Log)(nil)

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
		cfg.Epoch = randomEpoch()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	l := &Log{js: js, subject: "feed." + cfg.Stream, timeout: cfg.Timeout}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	l.stream, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      cfg.Stream,
		Subjects:  []string{l.subject},
		MaxMsgs:   int64(cfg.History),
		Discard:   jetstream.DiscardOld, // the history: the newest History updates
		Storage:   jetstream.FileStorage,
		Metadata:  map[string]string{epochKey: cfg.Epoch},
		Retention: jetstream.LimitsPolicy,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another server made it first, with its own epoch: use theirs.
		l.stream, err = js.Stream(ctx, cfg.Stream)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Stream, err)
	}
	info := l.stream.CachedInfo()
	l.epoch = info.Config.Metadata[epochKey]
	if l.epoch == "" {
		return nil, fmt.Errorf("stream %s has no %s in its metadata: it was not made by this server", cfg.Stream, epochKey)
	}
	l.copy, err = feed.New(int(info.Config.MaxMsgs), feed.WithEpoch(l.epoch))
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Stream, err)
	}
	consumer, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.subject}})
	if err != nil {
		return nil, fmt.Errorf("stream %s: following it: %w", cfg.Stream, err)
	}
	l.follow, err = consumer.Consume(l.add)
	if err != nil {
		return nil, fmt.Errorf("stream %s: following it: %w", cfg.Stream, err)
	}
	if err := l.catchUp(ctx, info.State.LastSeq); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func randomEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return hex.EncodeToString(b[:])
}

// add copies one message of the stream into this server's copy. The
// ordered consumer hands them over in order, one at a time; after a gap
// (updates that left the stream while this server could not follow it) the
// copy drops its subscribers, who resume and are told of the gap.
func (l *Log) add(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		return // not a stream message
	}
	u := feed.Update{ID: meta.Sequence.Stream, Data: string(msg.Data()), Time: meta.Timestamp.UTC()}
	_, _ = l.copy.Add(u) // an id already held is a redelivery: nothing to do
}

// catchUp waits until the copy holds the update with id last.
func (l *Log) catchUp(ctx context.Context, last uint64) error {
	for {
		changed := l.copy.Changed()
		if l.copy.Last() >= last {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for update %d from the stream: %w", last, ctx.Err())
		}
	}
}

// Close stops following the stream and waits until the consumer has
// stopped. The stream itself, and every other server's copy, stay.
func (l *Log) Close() {
	l.follow.Stop()
	<-l.follow.Closed()
}

// Epoch names the run: the epoch the stream was created with.
func (l *Log) Epoch() string { return l.epoch }

// Publish appends data to the stream and returns the update once this
// server's copy holds it, so that whoever published reads it back here.
// When the broker does not answer within the timeout, the error wraps
// feed.ErrUnavailable.
func (l *Log) Publish(data string) (feed.Entry, error) {
	if err := feed.CheckText(data); err != nil {
		return feed.Entry{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	ack, err := l.js.Publish(ctx, l.subject, []byte(data))
	if err != nil {
		return feed.Entry{}, fmt.Errorf("%w: publishing to stream %s: %v", feed.ErrUnavailable, l.stream.CachedInfo().Config.Name, err)
	}
	if err := l.catchUp(ctx, ack.Sequence); err != nil {
		return feed.Entry{}, fmt.Errorf("%w: %v", feed.ErrUnavailable, err)
	}
	entries, _, err := l.copy.After(feed.Cursor{After: ack.Sequence - 1}, feed.Limit{Updates: 1})
	if err != nil || len(entries) == 0 {
		return feed.Entry{}, fmt.Errorf("update %d left the history before it could be read back", ack.Sequence)
	}
	return entries[0], nil
}

// Changed returns a channel that the next update this server's copy
// receives closes.
func (l *Log) Changed() <-chan struct{} { return l.copy.Changed() }

// Last returns the id of the newest update in this server's copy.
func (l *Log) Last() uint64 { return l.copy.Last() }

// After is feed.Log's After, on this server's copy, once the copy has caught
// up with the cursor.
func (l *Log) After(c feed.Cursor, limit feed.Limit) ([]feed.Entry, uint64, error) {
	l.waitFor(c)
	return l.copy.After(c, limit)
}

// SubscribeAfter is feed.Log's SubscribeAfter, on this server's copy, once
// the copy has caught up with the cursor.
func (l *Log) SubscribeAfter(c feed.Cursor, queue int) ([]feed.Entry, uint64, *feed.Subscription, error) {
	l.waitFor(c)
	return l.copy.SubscribeAfter(c, queue)
}

// waitFor waits, briefly, until this server's copy has the update the
// cursor names. A client that read update 10 on another server and moves
// here may arrive before the consumer has brought update 10 here: without
// the wait it would be told its cursor is ahead of the newest update, a gap
// that is not one. A cursor of another run, or ahead of the stream too, is
// not waited for.
func (l *Log) waitFor(c feed.Cursor) {
	if c.After <= l.copy.Last() || c.Epoch != "" && c.Epoch != l.epoch {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil || c.After > info.State.LastSeq {
		return
	}
	_ = l.catchUp(ctx, c.After) // past the timeout, the copy answers as it is
}
