package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/webhook"
)

// Webhook limits and timeouts.
const (
	// MaxDeliveryBytes is the largest delivery the receiver reads. An
	// update carries at most feed.MaxDataBytes of text, and JSON writes a
	// control character as six bytes (\u0001): six times that, with room
	// for the id and the time, is the largest update there is. A larger
	// body is no update, and without a cap anyone who finds the port could
	// make the receiver hold any amount.
	MaxDeliveryBytes = 6*feed.MaxDataBytes + 1<<10

	// deliveryHeaderTimeout and deliveryReadTimeout bound how long one
	// delivery may take to arrive: neither the sender nor anyone else can
	// hold a connection open by sending slowly.
	deliveryHeaderTimeout = 10 * time.Second
	deliveryReadTimeout   = 30 * time.Second

	// webhookRequestTimeout bounds registering, and each check of the
	// registration: the server answers both at once.
	webhookRequestTimeout = 10 * time.Second

	// defaultCheckInterval is Config.CheckInterval's default: a restarted
	// server is noticed within seconds, for one small GET each time.
	defaultCheckInterval = 5 * time.Second

	// unregisterTimeout bounds the DELETE on the way out: the user is
	// waiting for the program to end, and a registration left behind costs
	// only failed deliveries until the server disables it.
	unregisterTimeout = 2 * time.Second

	// maxUndeleted bounds the registrations kept to be deleted later. A
	// receiver leaves one behind per outage of the server; past this many,
	// the oldest are left to the server, which disables them after its
	// retries.
	maxUndeleted = 100

	// answerGrace is how long the receiver, on its way out, lets the
	// deliveries being handled finish: the one that could not be printed
	// is answered 500, and a cut connection would tell the sender nothing.
	answerGrace = time.Second

	// handledFor is how long a webhook-id is remembered after its last
	// copy arrived. A delivery is accepted within webhook.Tolerance of its
	// timestamp, and it arrived at most that long before it: after twice
	// the tolerance no copy of it passes Verify, and the id can go.
	handledFor = 2 * webhook.Tolerance

	// defaultListen is where the receiver listens when Config.Listen is
	// empty: loopback, as the server does, on a port the system picks.
	defaultListen = "127.0.0.1:0"
)

// Webhook receives updates as the server's POSTs. It listens on
// Config.Listen, registers http://ADDRESS/hook (or Config.Callback) with
// POST /webhooks and the session's cursor, and hands each delivery whose
// signature verifies to the session. The server keeps the cursor and
// retries; the receiver's part is to check who is calling, to answer 2xx
// only once an update is printed, and to know a delivery it has handled
// before. When ctx ends it deletes its registration.
type Webhook struct {
	cfg Config

	// undeleted holds the ids of registrations the receiver gave up but
	// could not delete, the server being out of reach: each is deleted
	// once the server answers again. Left behind, one would fail every
	// delivery to a receiver that is gone, and hold one of the server's
	// places, disabled or not, for as long as the server runs.
	mu        sync.Mutex
	undeleted []string
}

var _ Strategy = (*Webhook)(nil)

// registerRequest is the body of POST /webhooks.
type registerRequest struct {
	URL   string `json:"url"`
	After string `json:"after"` // the session's cursor: EPOCH-ID, or a bare id
}

// registration is what POST /webhooks answers, and GET /webhooks/{id}
// less the secret.
type registration struct {
	ID       string `json:"id"`
	Cursor   string `json:"cursor"` // as the server took it: EPOCH-0 when registered from 0
	Secret   string `json:"secret"`
	Disabled bool   `json:"disabled"`
	Reason   string `json:"reason"` // why it is disabled
}

// delivery is any delivery's body: an update (no type), or a reset.
type delivery struct {
	Type string `json:"type"` // "" for an update; "reset"
	Update
	Last  uint64 `json:"last"`  // reset: the server's newest id
	Epoch string `json:"epoch"` // reset: the server's run
}

// Receive listens, registers, and hands deliveries to s until ctx ends,
// printing fails, or the registration is gone, disabled or cannot be
// checked; Run then registers again, with the session's cursor.
func (c *Webhook) Receive(ctx context.Context, s *Session) error {
	listen := c.cfg.Listen
	if listen == "" {
		listen = defaultListen
	}
	listener, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen for webhooks: %w", err)
	}
	defer listener.Close() // Serve closes it too; this is for a failed registration
	// The session is this goroutine's until the receiver serves: a delivery
	// that comes first waits in the listener's queue.
	hook := c.cfg.Callback
	if hook == "" {
		hook = "http://" + listener.Addr().String() + "/hook"
	}
	reg, secret, err := c.register(ctx, s, hook)
	if err != nil {
		return err
	}
	// The server answers again. Before serving: the registrations given
	// up are gone before the new one delivers.
	c.deleteUndeleted(ctx)
	rcv := &webhookReceiver{session: s, secret: secret, failed: make(chan error, 1)}
	srv := &http.Server{Handler: rcv, ReadHeaderTimeout: deliveryHeaderTimeout, ReadTimeout: deliveryReadTimeout}
	serving := make(chan struct{})
	go func() {
		defer close(serving)
		_ = srv.Serve(listener) // returns when Shutdown or Close is called
	}()
	defer func() {
		// No new delivery; those being answered get a moment to finish,
		// and any still open after it are cut.
		stopCtx, cancel := context.WithTimeout(context.Background(), answerGrace)
		defer cancel()
		if srv.Shutdown(stopCtx) != nil {
			srv.Close()
		}
		<-serving
		rcv.stop()
	}()
	defer c.unregister(ctx, reg.ID) // first: the server stops sending before the receiver goes
	interval := c.cfg.CheckInterval
	if interval == 0 {
		interval = defaultCheckInterval
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-rcv.failed:
			return err
		case <-ticker.C:
			if err := c.check(ctx, reg.ID); err != nil {
				return err
			}
		}
	}
}

// check asks the server about registration id, and says why it is of no
// more use: gone (the server restarted, and a new run knows no id of the
// last), disabled, or the server cannot be reached.
func (c *Webhook) check(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, webhookRequestTimeout)
	defer cancel()
	endpoint := c.cfg.Server.JoinPath("webhooks", id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.String(), nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return fmt.Errorf("registration %s is gone: the server restarted, or dropped it: %w", id, refused(endpoint, resp))
	default:
		return refused(endpoint, resp)
	}
	var state registration
	if err := json.NewDecoder(resp.Body).Decode(&state); err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", endpoint, err)
	}
	if state.Disabled {
		return fmt.Errorf("registration %s is disabled: %s", id, terminalSafe(state.Reason))
	}
	return nil
}

// register asks the server to deliver to hook the updates after the
// session's cursor, and returns the registration and its secret.
func (c *Webhook) register(ctx context.Context, s *Session, hook string) (registration, webhook.Secret, error) {
	after, epoch := s.Cursor()
	body, err := json.Marshal(registerRequest{URL: hook, After: feed.Cursor{After: after, Epoch: epoch}.String()})
	if err != nil {
		return registration{}, webhook.Secret{}, err // strings always marshal
	}
	ctx, cancel := context.WithTimeout(ctx, webhookRequestTimeout)
	defer cancel()
	endpoint := c.cfg.Server.JoinPath("webhooks")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return registration{}, webhook.Secret{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return registration{}, webhook.Secret{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return registration{}, webhook.Secret{}, refused(endpoint, resp)
	}
	var reg registration
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil {
		return registration{}, webhook.Secret{}, fmt.Errorf("POST %s: decode answer: %w", endpoint, err)
	}
	secret, err := webhook.ParseSecret(reg.Secret)
	if err != nil {
		return registration{}, webhook.Secret{}, fmt.Errorf("POST %s: %w", endpoint, err)
	}
	cursor, err := feed.ParseCursor(reg.Cursor)
	if err != nil {
		return registration{}, webhook.Secret{}, fmt.Errorf("POST %s: cursor: %w", endpoint, err)
	}
	// The cursor the server took is the one sent, with the server's epoch
	// when it was 0: a registration never moves the session to another run
	// (a reset delivery does).
	s.Answered(cursor.Epoch)
	return reg, secret, nil
}

// unregister deletes the registration, so that the server stops delivering
// to a receiver that is gone. It is the last thing said, so its outcome is
// not waited for long: a registration the server could not be asked to
// delete is kept, and deleted when the server answers again.
func (c *Webhook) unregister(ctx context.Context, id string) {
	if c.delete(ctx, id) {
		c.keepUndeleted(id)
	}
}

// keepUndeleted keeps ids to be deleted later, and at most maxUndeleted.
func (c *Webhook) keepUndeleted(ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.undeleted = append(c.undeleted, ids...)
	if n := len(c.undeleted); n > maxUndeleted {
		c.undeleted = slices.Delete(c.undeleted, 0, n-maxUndeleted)
	}
}

// deleteUndeleted deletes the registrations unregister could not. It stops
// at the first that fails again, and keeps it and the rest for next time.
func (c *Webhook) deleteUndeleted(ctx context.Context) {
	c.mu.Lock()
	ids := c.undeleted
	c.undeleted = nil
	c.mu.Unlock()
	for i, id := range ids {
		if ctx.Err() != nil || c.delete(ctx, id) {
			c.keepUndeleted(ids[i:]...)
			return
		}
	}
}

// delete asks the server to delete registration id, for at most
// unregisterTimeout, and says whether to ask again later: the server could
// not be reached, or answered 5xx or 429. Any other answer is final: 204,
// 404 (the server restarted, or it was deleted already), or a refusal
// that asking again would not change.
func (c *Webhook) delete(ctx context.Context, id string) (again bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unregisterTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.cfg.Server.JoinPath("webhooks", id).String(), nil)
	if err != nil {
		return false // no request can be made of it, now or later
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return true
	}
	resp.Body.Close()
	return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
}

// webhookReceiver answers deliveries. It serves every path: the signature
// says who is calling, not the URL.
type webhookReceiver struct {
	secret webhook.Secret
	failed chan error // the first failure to print

	// mu hands the session to one delivery at a time: the session belongs
	// to one goroutine at a time, and a sender (or anyone) may post several
	// at once.
	mu      sync.Mutex
	session *Session // nil once Receive returns
	handled handledIDs
}

func (rcv *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "webhook deliveries are POSTed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxDeliveryBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		http.Error(w, fmt.Sprintf("delivery is larger than %d bytes: no update is", MaxDeliveryBytes), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, "read delivery: "+err.Error(), http.StatusBadRequest)
		return
	}
	// The signature is over the bytes as they came: decoding and encoding
	// again could change them.
	if err := rcv.secret.Verify(r.Header, body, time.Now()); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var d delivery
	if err := json.Unmarshal(body, &d); err != nil {
		http.Error(w, "delivery: "+err.Error(), http.StatusBadRequest)
		return
	}

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	s := rcv.session
	if s == nil {
		http.Error(w, "receiver is stopping", http.StatusServiceUnavailable)
		return
	}
	id, now := r.Header.Get(webhook.HeaderID), time.Now()
	if rcv.handled.seen(id, now) {
		// A replay, or a retry whose first answer was lost: handled
		// already, and acknowledged, or the sender tries again and again.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	switch d.Type {
	case "":
		if _, epoch := s.Cursor(); epoch == "" {
			// Registered with a bare id, the session learns the server's
			// run from the webhook-id, msg_EPOCH-ID: registering again with
			// it, after a restart, the new run can tell that the cursor is
			// not its own, and say so with a reset.
			if cursor, err := feed.ParseCursor(strings.TrimPrefix(id, "msg_")); err == nil {
				s.Answered(cursor.Epoch)
			}
		}
		if err := s.Deliver(d.Update); err != nil {
			http.Error(w, "print update: "+err.Error(), http.StatusInternalServerError)
			select {
			case rcv.failed <- err:
			default: // Receive is ending already
			}
			return
		}
	case "reset":
		s.Answered(d.Epoch)
		s.Gap(d.Last)
	}
	rcv.handled.remember(id, now)
	w.WriteHeader(http.StatusNoContent) // only now: 2xx is what makes the sender forget it
}

// stop waits for the delivery being handled, if any, and keeps every later
// one from the session, which is Receive's again.
func (rcv *webhookReceiver) stop() {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	rcv.session = nil
}

// handledIDs remembers the webhook-ids handled lately, each until no copy
// of it can pass Verify any more (handledFor). A retry signed afresh after
// that is handled again: an update is still printed once, since the session
// drops ids it has passed, and a reset only repeats its warning.
type handledIDs struct {
	forgetAt  map[string]time.Time
	pruneSize int // forget the expired ids when the map grows to this size
}

// minPruneSize keeps a quiet receiver from sweeping its few ids on every
// delivery.
const minPruneSize = 64

func (h *handledIDs) seen(id string, now time.Time) bool {
	at, ok := h.forgetAt[id]
	if ok && now.Before(at) {
		h.forgetAt[id] = now.Add(handledFor) // a fresh copy: it may be replayed for as long
		return true
	}
	return false
}

// remember records id; sweeping only when the map has doubled keeps the
// cost of each delivery constant, on average.
func (h *handledIDs) remember(id string, now time.Time) {
	if h.forgetAt == nil {
		h.forgetAt = make(map[string]time.Time)
	}
	if len(h.forgetAt) >= h.pruneSize {
		for old, at := range h.forgetAt {
			if !now.Before(at) {
				delete(h.forgetAt, old)
			}
		}
		h.pruneSize = max(2*len(h.forgetAt), minPruneSize)
	}
	h.forgetAt[id] = now.Add(handledFor)
}
