package server

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/webhook"
)

// maxRegistrationBytes bounds a registration: a URL and a cursor need far
// less, and the server reads the whole body before it answers.
const maxRegistrationBytes = 4 << 10

// webhooks holds the registrations of this server run. They live as long as
// the process: a receiver notices a restart (its id is unknown, 404) and
// registers again with its cursor.
type webhooks struct {
	log    feed.Store
	cfg    config
	client *http.Client // every delivery goes through it

	// Shutdown has two stages: stopping ends every wait, so that no new
	// attempt starts; cut, a grace period later, ends the attempts in
	// flight.
	stopping context.Context
	stop     context.CancelFunc
	cut      context.Context
	cutNow   context.CancelFunc
	wg       sync.WaitGroup // one per subscription's delivery loop

	mu   sync.Mutex // guards subs; taken before a subscription's mu, never while one is held
	subs map[string]*subscription

	registered uint64 // guarded by mu: registrations so far, for their order in the list
	me         string // names this server in shared registrations' records
}

func newWebhooks(log feed.Store, cfg config) *webhooks {
	h := &webhooks{log: log, cfg: cfg, client: newDeliveryClient(cfg), subs: make(map[string]*subscription), me: newServerID()}
	h.stopping, h.stop = context.WithCancel(context.Background())
	h.cut, h.cutNow = context.WithCancel(context.Background())
	if cfg.webhookStore != nil {
		h.wg.Go(h.watch)
	}
	return h
}

// DefaultWebhookGrace is how long a shutdown lets deliveries in flight
// finish: an answer that takes longer is lost, and the receiver gets the
// update again from the next run (it deduplicates by webhook-id). It is
// shorter than the time RunServer gives a shutdown.
const DefaultWebhookGrace = 3 * time.Second

// shutdown starts no more deliveries, lets those in flight finish for
// DefaultWebhookGrace or until ctx ends, then cuts the rest. Cutting is how
// a shutdown is meant to end, so it is not an error.
func (h *webhooks) shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.stop() // under mu: no registration starts a loop after this
	h.mu.Unlock()
	defer h.client.CloseIdleConnections()
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	grace := time.NewTimer(DefaultWebhookGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
	case <-ctx.Done():
	}
	h.cutNow()
	<-done // a cut attempt returns at once
	return nil
}

// subscription is one registration: where to deliver, with which secret,
// and how far it got.
type subscription struct {
	id     string
	url    *url.URL
	secret webhook.Secret
	stop   context.CancelFunc // ends its deliveries, the one in flight too
	seq    uint64             // its place in GET /webhooks: registration order

	mu    sync.Mutex
	state subscriptionState

	// With shared registrations (WithSharedWebhooks), guarded by mu too:
	rev    uint64        // the newest revision of its record this server knows
	mine   uint64        // the revision this server wrote last, while it holds the lease; else 0
	owner  string        // the server that holds the lease
	lease  time.Time     // until when
	saving sync.Mutex    // one write of the record at a time
	wake   chan struct{} // the record changed: a server waiting for the lease looks again
}

// subscriptionState is what GET /webhooks/{id} shows: enough for the owner of
// the receiver to see why deliveries stopped.
type subscriptionState struct {
	ID          string     `json:"id,omitempty"` // left out of GET /webhooks
	URL         string     `json:"url"`
	Cursor      string     `json:"cursor"`    // the last update delivered, as EPOCH-ID
	Delivered   uint64     `json:"delivered"` // deliveries the receiver accepted
	Failures    int        `json:"failures"`  // failed attempts since the last success
	LastError   string     `json:"last_error,omitempty"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	Disabled    bool       `json:"disabled"`
	Reason      string     `json:"reason,omitempty"` // why it is disabled
}

// snapshot returns the state as it is now.
func (s *subscription) snapshot() subscriptionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// registerRequest is the body of POST /webhooks.
type registerRequest struct {
	URL   string          `json:"url"`
	After json.RawMessage `json:"after"` // a count, or a cursor as a string; missing means 0
}

// handleRegister answers POST /webhooks: 201 with the registration and its
// secret, which no later answer shows again.
func (h *webhooks) handleRegister() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r, maxRegistrationBytes, fmt.Sprintf("registration is larger than %d bytes", maxRegistrationBytes), h.cfg.bodyTimeout)
		if !ok {
			return
		}
		dest, cursor, err := parseRegistration(body, h.cfg.webhookAllow)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if cursor.After == 0 {
			cursor.Epoch = h.log.Epoch() // nothing seen, nothing to lose: start in this run
		}
		sub := &subscription{id: newSubscriptionID(), url: dest, secret: webhook.NewSecret(), wake: make(chan struct{}, 1)}
		sub.state = subscriptionState{ID: sub.id, URL: dest.String(), Cursor: cursor.String()}
		if err := h.create(r.Context(), sub); err != nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "registration could not be saved: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		ctx, stop := context.WithCancel(h.cut)
		sub.stop = stop
		h.mu.Lock()
		if h.stopping.Err() != nil {
			// Shutdown is waiting for the delivery loops: a new one could
			// not be waited for, and would never deliver.
			h.mu.Unlock()
			stop()
			_ = h.forget(r.Context(), sub)
			http.Error(w, "server shutting down: registration refused", http.StatusServiceUnavailable)
			return
		}
		var old *subscription // the disabled registration that gives its place
		if n := len(h.subs); n >= h.cfg.maxWebhooks {
			if old = h.oldestDisabled(); old == nil {
				h.mu.Unlock()
				stop()
				_ = h.forget(r.Context(), sub)
				w.Header().Set("Retry-After", strconv.Itoa(int(busyRetryAfter/time.Second)))
				http.Error(w, fmt.Sprintf("server busy: %d webhooks are registered already; retry in %v", n, busyRetryAfter), http.StatusServiceUnavailable)
				return
			}
			delete(h.subs, old.id)
		}
		h.registered++
		sub.seq = h.registered
		h.subs[sub.id] = sub
		h.wg.Go(func() { h.deliverTo(ctx, sub, cursor) }) // under mu: shutdown's Wait starts after it
		h.mu.Unlock()
		if old != nil {
			old.stop()
			// The other servers drop it when they see it go. Should the
			// delete fail, the record stays, disabled, and the next server
			// at its cap gives its place in turn: deleting it then. Not
			// cut short by a client that hangs up: the place is given.
			_ = h.forget(context.WithoutCancel(r.Context()), old)
		}

		w.Header().Set("Location", "/webhooks/"+sub.id)
		writeJSON(w, http.StatusCreated, struct {
			subscriptionState
			Secret string `json:"secret"`
		}{sub.snapshot(), sub.secret.Encode()})
	})
}

// oldestDisabled returns the disabled registration registered first, or
// nil; h.mu must be held. A disabled registration delivers nothing more and
// is kept only so that its owner can read why: at the cap, a receiver that
// wants updates needs the place more, or registrations whose receivers went
// away without a word would fill the server for good. (With shared
// registrations, the order is the one this server learnt them in.)
func (h *webhooks) oldestDisabled() *subscription {
	var oldest *subscription
	for _, sub := range h.subs {
		if sub.snapshot().Disabled && (oldest == nil || sub.seq < oldest.seq) {
			oldest = sub
		}
	}
	return oldest
}

// parseRegistration reads a registration body: exactly one JSON object with
// a deliverable URL and a cursor.
func parseRegistration(body []byte, allow []netip.Prefix) (*url.URL, feed.Cursor, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields() // a misspelt "after" must not mean "from 0"
	var req registerRequest
	if err := dec.Decode(&req); err != nil {
		return nil, feed.Cursor{}, fmt.Errorf("registration: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, feed.Cursor{}, errors.New("registration: want one JSON object")
	}
	dest, err := parseDestination(req.URL)
	if err != nil {
		return nil, feed.Cursor{}, err
	}
	// An address is refused now, to say so at once; a name is checked
	// each time it is dialled (guardedDialer), by what it resolves to then.
	if ip, err := netip.ParseAddr(strings.Trim(dest.Hostname(), "[]")); err == nil {
		if err := addressAllowed(allow, ip); err != nil {
			return nil, feed.Cursor{}, fmt.Errorf("url: %w", err)
		}
	}
	var after string
	if err := json.Unmarshal(req.After, &after); err != nil {
		after = string(req.After) // a number, written as it came
	}
	if after == "" {
		after = "0"
	}
	cursor, err := feed.ParseCursor(after)
	if err != nil {
		return nil, feed.Cursor{}, fmt.Errorf("after: %w", err)
	}
	return dest, cursor, nil
}

// parseDestination checks that raw is a URL a delivery can be POSTed to.
func parseDestination(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("url is missing")
	}
	dest, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("url: %w", err)
	case strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		// url.Parse lets them through in a query, and the request line
		// would carry them raw: no receiver could be reached.
		return nil, fmt.Errorf("url %s: percent-encode spaces, control characters and non-ASCII", feed.Quote(raw))
	case (dest.Scheme != "http" && dest.Scheme != "https") || dest.Host == "":
		return nil, fmt.Errorf("url %s: want an absolute http or https URL", feed.Quote(raw))
	case dest.Port() != "" && !validPort(dest.Port()):
		return nil, fmt.Errorf("url %s: port %s cannot be dialled; give one from 1 to 65535", feed.Quote(raw), feed.Quote(dest.Port()))
	case dest.User != nil:
		// They would be shown by GET and on the page; a receiver checks the
		// signature instead.
		return nil, fmt.Errorf("url %s: credentials in a URL are refused; the signature authenticates deliveries", feed.Quote(raw))
	}
	return dest, nil
}

// validPort says whether port is one a connection can be made to.
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// newSubscriptionID returns an id nobody can guess: it is all it takes to
// read or delete a registration.
func newSubscriptionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "wh_" + hex.EncodeToString(b)
}

// lookup returns the subscription of the request's {id}, or answers 404.
func (h *webhooks) lookup(w http.ResponseWriter, r *http.Request) (*subscription, bool) {
	h.mu.Lock()
	sub, ok := h.subs[r.PathValue("id")]
	h.mu.Unlock()
	if !ok {
		http.Error(w, "no such webhook registration in this server run; register again", http.StatusNotFound)
	}
	return sub, ok
}

// handleState answers GET /webhooks/{id} with the registration's state.
func (h *webhooks) handleState() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sub, ok := h.lookup(w, r); ok {
			writeJSON(w, http.StatusOK, sub.snapshot())
		}
	})
}

// handleDelete answers DELETE /webhooks/{id}: 204, and nothing is delivered
// to it any more.
func (h *webhooks) handleDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub, ok := h.lookup(w, r)
		if !ok {
			return
		}
		if err := h.forget(r.Context(), sub); err != nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "registration could not be deleted: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		h.mu.Lock()
		delete(h.subs, sub.id)
		h.mu.Unlock()
		sub.stop()
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleList answers GET /webhooks with every registration's state, in the
// order they were registered: a new one comes last, and the list never
// reorders itself as the page shows it again and again.
func (h *webhooks) handleList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		subs := slices.Collect(maps.Values(h.subs))
		h.mu.Unlock()
		slices.SortFunc(subs, func(a, b *subscription) int { return cmp.Compare(a.seq, b.seq) })
		list := make([]subscriptionState, 0, len(subs)) // none is [], not null
		for _, sub := range subs {
			state := sub.snapshot()
			// Like the secret, the id is a key: all it takes to read or
			// delete the registration. The list is open to anyone who can
			// reach the server, so it shows neither.
			state.ID = ""
			list = append(list, state)
		}
		writeJSON(w, http.StatusOK, struct {
			Webhooks []subscriptionState `json:"webhooks"`
		}{list})
	})
}
