package natsfeed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxRecordBytes bounds one registration's record: a URL, a secret and the
// state GET /webhooks/{id} shows take a few kilobytes at most.
const maxRecordBytes = 64 << 10

// Registrations keeps webhook registrations in a JetStream key-value bucket
// beside the stream, so that every server on the stream sees every
// registration, and a change to one is seen by all of them. A record's
// revision (its sequence in the bucket) lets a server change it only if
// nobody changed it since that server read it: that is how the servers agree
// which of them delivers to a registration.
//
// A bucket deleted and created anew (a NATS restarted without its data)
// holds none of the registrations: Watch reports each one it knew as
// deleted, as a restarted server forgets its own, and their receivers
// register again.
type Registrations struct {
	js     jetstream.JetStream
	config jetstream.KeyValueConfig // to create the bucket again if it is gone
	check  time.Duration
	kv     jetstream.KeyValue // a handle by name: it stays good when the bucket is created anew
}

// NewRegistrations opens the bucket of the stream named in cfg (the
// stream's name with "_WEBHOOKS"), creating it if it does not exist.
func NewRegistrations(ctx context.Context, nc *nats.Conn, cfg Config) (*Registrations, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := &Registrations{js: js, check: cmp.Or(cfg.Check, DefaultCheck), config: jetstream.KeyValueConfig{
		Bucket:       cfg.Stream + "_WEBHOOKS",
		Description:  "webhook registrations of the servers on stream " + cfg.Stream,
		History:      1, // a record's past is of no use to anyone
		MaxValueSize: maxRecordBytes,
		Storage:      jetstream.FileStorage,
	}}
	if r.kv, err = r.open(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// open creates the bucket, or opens it as it is if it exists.
func (r *Registrations) open(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := r.js.CreateKeyValue(ctx, r.config)
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = r.js.KeyValue(ctx, r.config.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", r.config.Bucket, err)
	}
	return kv, nil
}

// changed says whether the bucket is gone, or is another than the one
// created then. A broker that does not answer is no news.
func (r *Registrations) changed(ctx context.Context, created time.Time) bool {
	now, err := r.created(ctx)
	gone := errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
	return gone || err == nil && !now.Equal(created)
}

// created returns when the bucket was created: a bucket created anew is
// another bucket.
func (r *Registrations) created(ctx context.Context) (time.Time, error) {
	status, err := r.kv.Status(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if s, ok := status.(*jetstream.KeyValueBucketStatus); ok {
		return s.StreamInfo().Created, nil
	}
	return time.Time{}, nil
}

// Save writes record as id's, in place of revision rev, or as a new record
// if rev is 0, and returns its new revision. If the record was changed or
// deleted since rev (or, for rev 0, exists), it writes nothing and ok is
// false.
func (r *Registrations) Save(ctx context.Context, id string, record []byte, rev uint64) (uint64, bool, error) {
	var err error
	if rev == 0 {
		rev, err = r.kv.Create(ctx, id, record)
	} else {
		rev, err = r.kv.Update(ctx, id, record, rev)
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrKeyExists),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("webhook registration %s: %w", id, err)
	}
	return rev, true, nil
}

// Delete removes id's record.
func (r *Registrations) Delete(ctx context.Context, id string) error {
	if err := r.kv.Delete(ctx, id); err != nil {
		return fmt.Errorf("webhook registration %s: %w", id, err)
	}
	return nil
}

// Watch calls seen with every record there is, then with each change as it
// happens, from whichever server made it, until ctx ends; a deleted record
// comes with a nil record. It returns nil when ctx ends, and an error if the
// bucket cannot be watched. Every Config.Check it asks whether the bucket
// is still the one it watches; if it is gone, or was created anew, each
// record it reported is reported deleted, and the bucket is created again.
func (r *Registrations) Watch(ctx context.Context, seen func(id string, record []byte, rev uint64)) error {
	known := make(map[string]bool) // the records reported, and not deleted since
	for {
		err := r.watch(ctx, known, seen)
		if !errors.Is(err, errBucketChanged) {
			return err
		}
		for id := range known {
			seen(id, nil, 0)
		}
		clear(known)
		if _, err := r.open(ctx); err != nil {
			return fmt.Errorf("watching webhook registrations: %w", err)
		}
	}
}

// errBucketChanged says the bucket watched is gone, or was created anew.
var errBucketChanged = errors.New("the bucket was created anew")

// watch is Watch on the bucket as it is now, until ctx ends or the bucket
// changes; known holds the ids of the records it reported.
func (r *Registrations) watch(ctx context.Context, known map[string]bool, seen func(id string, record []byte, rev uint64)) error {
	created, err := r.created(ctx)
	if err != nil {
		return fmt.Errorf("watching webhook registrations: %w", err)
	}
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching webhook registrations: %w", err)
	}
	defer w.Stop()
	tick := time.NewTicker(r.check)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if r.changed(ctx, created) {
				return errBucketChanged
			}
		case e, ok := <-w.Updates():
			switch {
			case !ok && r.changed(ctx, created):
				return errBucketChanged // the watch ends with the bucket it watched
			case !ok:
				return errors.New("watching webhook registrations: the watch ended")
			case e == nil:
				// The marker after the records that were there already.
			case e.Operation() == jetstream.KeyValuePut:
				known[e.Key()] = true
				seen(e.Key(), e.Value(), e.Revision())
			default:
				delete(known, e.Key())
				seen(e.Key(), nil, e.Revision())
			}
		}
	}
}
