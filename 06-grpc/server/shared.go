package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/webhook"
)

// WebhookStore keeps webhook registrations where every server of a cluster
// sees them: natsfeed.Registrations keeps them in a JetStream bucket beside
// the shared log.
type WebhookStore interface {
	// Save writes record as id's in place of revision rev, or as a new
	// record if rev is 0, and returns its new revision. If the record
	// changed since rev, or was deleted (for rev 0: if it exists), it
	// writes nothing and ok is false.
	Save(ctx context.Context, id string, record []byte, rev uint64) (newRev uint64, ok bool, err error)
	// Delete removes id's record.
	Delete(ctx context.Context, id string) error
	// Watch calls seen with every record there is, then with each change,
	// whichever server made it (a nil record: deleted), until ctx ends.
	Watch(ctx context.Context, seen func(id string, record []byte, rev uint64)) error
}

// DefaultWebhookLease is how long a server delivers to a shared
// registration before it must renew its claim. It renews three times as
// often; a server that dies holding a claim delays that registration's
// deliveries by at most this long, until another server takes it over.
const DefaultWebhookLease = 10 * time.Second

// WithSharedWebhooks keeps webhook registrations in store, shared with every
// server that uses it: a registration made on any of them can be read or
// deleted on any, and one of them at a time delivers to it, holding a lease
// of the given length (DefaultWebhookLease if 0) that it renews while it
// lives.
func WithSharedWebhooks(store WebhookStore, lease time.Duration) Option {
	return func(c *config) {
		c.webhookStore = store
		c.webhookLease = cmp.Or(lease, DefaultWebhookLease)
	}
}

// record is what the store keeps of a registration: all another server
// needs to deliver to it, and to show its state.
type record struct {
	URL    string            `json:"url"`
	Secret string            `json:"secret"`
	State  subscriptionState `json:"state"`
	Owner  string            `json:"owner,omitempty"` // the server that delivers to it
	Lease  time.Time         `json:"lease,omitzero"`  // until when, unless it renews
}

// newServerID names this server in the records whose lease it holds.
func newServerID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// deliverTo delivers the updates after cursor to sub: at once, with the
// registrations in this server's memory; with shared ones, whenever this
// server holds its lease.
func (h *webhooks) deliverTo(ctx context.Context, sub *subscription, cursor feed.Cursor) {
	if h.cfg.webhookStore == nil {
		h.run(ctx, sub, cursor)
		return
	}
	h.lead(ctx, sub)
}

// create writes a new registration's record, leased to this server, which
// will deliver to it first. Without a store there is nothing to write.
func (h *webhooks) create(ctx context.Context, sub *subscription) error {
	if h.cfg.webhookStore == nil {
		return nil
	}
	sub.owner, sub.lease = h.me, time.Now().Add(h.cfg.webhookLease)
	rev, _, err := h.cfg.webhookStore.Save(ctx, sub.id, sub.record(sub.owner, sub.lease), 0) // a new random id: never taken
	sub.rev, sub.mine = rev, rev
	return err
}

// forget deletes the record of a registration that was refused after it
// was written, or deleted.
func (h *webhooks) forget(ctx context.Context, sub *subscription) error {
	if h.cfg.webhookStore == nil {
		return nil
	}
	return h.cfg.webhookStore.Delete(ctx, sub.id)
}

// record encodes what the store keeps of sub, leased to owner until lease;
// sub.mu must be held, or sub not shared yet.
func (s *subscription) record(owner string, lease time.Time) []byte {
	state := s.state
	state.ID = "" // the record's key
	rec := record{URL: s.url.String(), Secret: s.secret.Encode(), State: state, Owner: owner, Lease: lease}
	b, _ := json.Marshal(rec) // plain fields: cannot fail
	return b
}

// watch follows the store, so that this server knows every registration
// and how it is doing, until the server stops.
func (h *webhooks) watch() {
	for h.stopping.Err() == nil {
		if err := h.cfg.webhookStore.Watch(h.stopping, h.seen); err != nil {
			// The broker is gone for now; try again soon.
			select {
			case <-h.stopping.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// seen takes a record, or its deletion, from the store.
func (h *webhooks) seen(id string, data []byte, rev uint64) {
	h.mu.Lock()
	sub := h.subs[id]
	if data == nil {
		delete(h.subs, id)
		h.mu.Unlock()
		if sub != nil {
			sub.stop() // deleted on another server: no more deliveries here
		}
		return
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		h.mu.Unlock()
		return // not written by a server: nothing to deliver
	}
	if _, err := feed.ParseCursor(rec.State.Cursor); err != nil {
		h.mu.Unlock()
		return // nor is this: a server writes the cursor it got to
	}
	if sub == nil {
		if rec.Owner == h.me || h.stopping.Err() != nil {
			// Being registered here right now (its handler adds it), or
			// too late to deliver.
			h.mu.Unlock()
			return
		}
		if sub = h.adopt(id, rec); sub == nil {
			h.mu.Unlock()
			return
		}
	}
	h.mu.Unlock()

	sub.mu.Lock()
	if rev > sub.rev { // a revision this server did not write (or has not heard back about)
		sub.rev = rev
		sub.owner, sub.lease = rec.Owner, rec.Lease
		if sub.mine == 0 { // another server delivers: show how it is doing
			sub.state = rec.State
			sub.state.ID = id
		}
	}
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default: // it has a wake-up coming already
	}
}

// adopt starts following a registration another server made; h.mu must be
// held. A record that does not make sense is left alone.
func (h *webhooks) adopt(id string, rec record) *subscription {
	dest, err := parseDestination(rec.URL)
	if err != nil {
		return nil
	}
	secret, err := webhook.ParseSecret(rec.Secret)
	if err != nil {
		return nil
	}
	sub := &subscription{id: id, url: dest, secret: secret, wake: make(chan struct{}, 1)}
	ctx, stop := context.WithCancel(h.cut)
	sub.stop = stop
	h.registered++
	sub.seq = h.registered
	h.subs[id] = sub
	h.wg.Go(func() { h.lead(ctx, sub) }) // under mu, not stopping: shutdown's Wait starts after it
	return sub
}

// lead delivers to sub while this server holds its lease, and otherwise
// waits to take the lease over: when the server that holds it lets it go,
// or does not renew it in time.
func (h *webhooks) lead(ctx context.Context, sub *subscription) {
	for ctx.Err() == nil && h.stopping.Err() == nil {
		sub.mu.Lock()
		held, disabled := sub.mine != 0, sub.state.Disabled
		wait := time.Until(sub.lease)
		free := sub.owner == "" || wait <= 0
		sub.mu.Unlock()
		switch {
		case disabled:
			wait = -1 // nothing to deliver, unless the record changes
		case held:
			h.deliverLeased(ctx, sub)
			continue
		case free:
			if ok, _ := h.claim(ctx, sub); ok {
				continue
			}
			wait = h.cfg.webhookLease / 3 // taken by another, or no broker: look again
		}
		h.await(ctx, sub, wait)
	}
}

// await waits until the record of sub changes, or for wait if it is not
// negative, or until ctx ends or the server stops.
func (h *webhooks) await(ctx context.Context, sub *subscription, wait time.Duration) {
	var timeout <-chan time.Time
	if wait >= 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-ctx.Done():
	case <-h.stopping.Done():
	case <-sub.wake:
	case <-timeout:
	}
}

// deliverLeased delivers to sub from the cursor in its record, renewing the
// lease as it goes, until the lease is lost, the registration is deleted or
// disabled, or the server stops; then it lets the lease go, so that another
// server need not wait for it to run out.
func (h *webhooks) deliverLeased(ctx context.Context, sub *subscription) {
	ctx, lost := context.WithCancel(ctx)
	defer lost()
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		h.renew(ctx, sub, lost)
	}()
	sub.mu.Lock()
	cursor, err := feed.ParseCursor(sub.state.Cursor)
	sub.mu.Unlock()
	if err == nil {
		h.run(ctx, sub, cursor)
	}
	lost()
	<-renewed
	if h.stopping.Err() != nil {
		release, cancel := context.WithTimeout(context.Background(), h.cfg.webhookLease/3)
		defer cancel()
		_, _ = h.write(release, sub, "", time.Time{})
	}
}

// renew renews sub's lease three times per lease until ctx ends, and calls
// lost if it cannot: another server has it, or the broker has not answered
// for so long that the lease may run out.
func (h *webhooks) renew(ctx context.Context, sub *subscription, lost context.CancelFunc) {
	tick := time.NewTicker(h.cfg.webhookLease / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ok, err := h.write(ctx, sub, h.me, time.Now().Add(h.cfg.webhookLease))
		if !ok && (err == nil || ctx.Err() == nil && h.expiring(sub)) {
			sub.mu.Lock()
			sub.mine = 0
			sub.mu.Unlock()
			lost()
			return
		}
	}
}

// expiring says whether the lease this server last wrote for sub runs out
// before it could be renewed again.
func (h *webhooks) expiring(sub *subscription) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return time.Until(sub.lease) < h.cfg.webhookLease/3
}

// share writes sub's record after its state changed, renewing the lease
// with it. It returns false if this server may no longer deliver to sub:
// another server has it, or it was deleted. A broker that does not answer
// is not that: the lease says how long this server may go on without it.
func (h *webhooks) share(ctx context.Context, sub *subscription) bool {
	if h.cfg.webhookStore == nil {
		return true
	}
	ok, err := h.write(ctx, sub, h.me, time.Now().Add(h.cfg.webhookLease))
	return ok || err != nil
}

// claim writes sub's record with this server as its owner, in place of
// the newest revision this server has seen: it fails if another server
// wrote it since.
func (h *webhooks) claim(ctx context.Context, sub *subscription) (ok bool, err error) {
	sub.mu.Lock()
	sub.mine = sub.rev
	sub.mu.Unlock()
	ok, err = h.write(ctx, sub, h.me, time.Now().Add(h.cfg.webhookLease))
	if !ok {
		sub.mu.Lock()
		sub.mine = 0
		sub.mu.Unlock()
	}
	return ok, err
}

// write saves sub's record, leased to owner until lease (no owner: let go),
// in place of the revision this server wrote last. ok is false if the
// record changed since, or this server holds no revision of it.
func (h *webhooks) write(ctx context.Context, sub *subscription, owner string, lease time.Time) (ok bool, err error) {
	sub.saving.Lock() // one write at a time, each in place of the last
	defer sub.saving.Unlock()
	sub.mu.Lock()
	rev, data := sub.mine, sub.record(owner, lease)
	sub.mu.Unlock()
	if rev == 0 {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.webhookLease/3)
	defer cancel()
	rev, ok, err = h.cfg.webhookStore.Save(ctx, sub.id, data, rev)
	sub.mu.Lock()
	defer sub.mu.Unlock()
	switch {
	case ok:
		sub.rev = max(sub.rev, rev)
		sub.mine, sub.owner, sub.lease = rev, owner, lease
		if owner == "" {
			sub.mine = 0 // let go
		}
	case err == nil:
		sub.mine = 0 // another server wrote it since: it is theirs now
	}
	return ok, err
}
