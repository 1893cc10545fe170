package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/webhook"
)

// Delivery limits.
const (
	// deliveryBatch is how much of the log a subscription reads at once;
	// it delivers those one by one before it reads again.
	deliveryBatchUpdates = 64
	deliveryBatchBytes   = 256 << 10
	// maxResponseBytes is how much of a receiver's answer is read, and
	// thrown away: enough for the connection to be reused after a short
	// answer, never enough for a receiver to make the sender read forever.
	maxResponseBytes = 4 << 10
	// maxResponseHeaderBytes bounds a receiver's answer headers the same way.
	maxResponseHeaderBytes = 16 << 10
	// maxIdlePerReceiver is how many kept-alive connections to one
	// receiver (host:port) wait for its registrations' next deliveries.
	maxIdlePerReceiver = 64
)

// run delivers the updates after cursor to sub, one at a time and in order,
// until ctx ends (the registration was deleted, or a shutdown cut it) or
// the server stops. It reads the log itself, at its own pace: a webhook is
// promised every update, so it cannot be a subscriber that is dropped when
// it falls behind; it is a reader with a cursor, like a poll.
func (h *webhooks) run(ctx context.Context, sub *subscription, cursor feed.Cursor) {
	for {
		changed := h.log.Changed() // before After: a publish in between still wakes us
		entries, last, err := h.log.After(cursor, feed.Limit{Updates: deliveryBatchUpdates, Bytes: deliveryBatchBytes})
		if err != nil {
			// The receiver would miss updates: tell it where the server is
			// now, with the reset every transport sends, and go on from there.
			here := feed.Cursor{After: last, Epoch: h.log.Epoch()}
			body, _ := json.Marshal(wsPosition{Type: "reset", position: position{Last: here.After, Epoch: here.Epoch}}) // plain fields: cannot fail
			if !h.deliver(ctx, sub, "msg_reset-"+here.String(), body) {
				return
			}
			cursor = here
			sub.delivered(cursor, time.Now())
			if !h.share(ctx, sub) {
				return
			}
			continue
		}
		for _, e := range entries {
			next := feed.Cursor{After: e.ID, Epoch: h.log.Epoch()}
			if !h.deliver(ctx, sub, "msg_"+next.String(), e.JSON) {
				return
			}
			cursor = next
			sub.delivered(cursor, time.Now())
			if !h.share(ctx, sub) {
				return
			}
		}
		if len(entries) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-h.stopping.Done():
			return
		case <-changed:
		}
	}
}

// deliver makes attempts to deliver body until the receiver accepts it
// (true), or the registration is disabled or ctx ends (false). Every attempt
// carries the same id: a receiver that got an earlier one, but whose answer
// was lost, knows this one for the same message.
func (h *webhooks) deliver(ctx context.Context, sub *subscription, id string, body []byte) bool {
	for {
		if h.stopping.Err() != nil {
			return false // the server is stopping: no new attempt
		}
		err := h.post(ctx, sub, id, body)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		delay, disabled := sub.failed(err, h.cfg.webhookRetry, time.Now())
		if !h.share(ctx, sub) || disabled {
			return false
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-h.stopping.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}

// post makes one delivery attempt: body, signed, to sub's URL.
func (h *webhooks) post(ctx context.Context, sub *subscription, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.url.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	now := time.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderID, id)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, sub.secret.Sign(id, now, body))
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The status text is ours, not the receiver's: a reason phrase of
		// megabytes would be kept, and shown, for as long as the registration.
		text := strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
		return &refusal{status: resp.StatusCode, text: strings.TrimSpace(text), retryAfter: retryAfter(resp)}
	}
	return nil
}

// refusal is an answer other than 2xx.
type refusal struct {
	status     int
	text       string        // the status, such as "503 Service Unavailable"
	retryAfter time.Duration // what Retry-After asked for on a 429 or 503; 0 if nothing
}

func (r *refusal) Error() string {
	if r.status/100 == 3 {
		return "receiver answered " + r.text + " (redirects are not followed)"
	}
	return "receiver answered " + r.text
}

// maxRetryAfter bounds the wait a receiver can ask for: a receiver that asks
// for a day is retried, and counted as failing, within minutes.
const maxRetryAfter = 10 * time.Minute

// retryAfter reads Retry-After on a 429 or 503: seconds, or an HTTP date.
func retryAfter(resp *http.Response) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	value := resp.Header.Get("Retry-After")
	var d time.Duration
	if seconds, err := strconv.Atoi(value); err == nil {
		d = time.Duration(seconds) * time.Second
	} else if date, err := http.ParseTime(value); err == nil {
		d = time.Until(date)
	}
	return min(max(d, 0), maxRetryAfter)
}

// retryPolicy is when failed deliveries are tried again, and when a
// registration is given up.
type retryPolicy struct {
	base, max   time.Duration // the backoff after the first failure, and its cap
	maxFailures int           // consecutive failures that disable a registration
}

// Retry defaults: a receiver that is restarting is retried within seconds;
// one that is down is asked at most once a minute, and given up after 20
// failures in a row (about 15 minutes).
const (
	DefaultWebhookBackoff     = time.Second
	DefaultWebhookBackoffMax  = time.Minute
	DefaultWebhookMaxFailures = 20
)

// backoff returns the wait after the n-th consecutive failure (from 1):
// "full jitter", anywhere from 0 to base·2ⁿ⁻¹ (at most max). Senders that
// lost the same receiver at once come back spread out, not in one herd.
func (p retryPolicy) backoff(n int) time.Duration {
	d := p.max
	if n-1 < 63 && p.base <= p.max>>(n-1) { // base·2ⁿ⁻¹ ≤ max, asked without overflowing
		d = p.base << (n - 1)
	}
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// failed records a failed attempt at now, and returns how long to wait
// before the next one, or that the registration is now disabled.
func (s *subscription) failed(err error, policy retryPolicy, now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Failures++
	s.state.LastError = err.Error()
	var answer *refusal
	switch {
	case errors.As(err, &answer) && answer.status == http.StatusGone:
		s.disable("receiver answered " + answer.text + ": it wants no more deliveries")
		return 0, true
	case s.state.Failures >= policy.maxFailures:
		s.disable(fmt.Sprintf("%d deliveries in a row failed; the last: %v", s.state.Failures, err))
		return 0, true
	}
	delay := policy.backoff(s.state.Failures)
	if errors.As(err, &answer) && answer.retryAfter > 0 {
		delay = answer.retryAfter // the receiver knows best when it can take more
	}
	next := now.Add(delay)
	s.state.NextAttempt = &next
	return delay, false
}

// disable stops deliveries for good, saying why; s.mu must be held.
func (s *subscription) disable(reason string) {
	s.state.Disabled = true
	s.state.Reason = reason
	s.state.NextAttempt = nil
}

// delivered records that the receiver accepted the update at cursor.
func (s *subscription) delivered(cursor feed.Cursor, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Cursor = cursor.String()
	s.state.Delivered++
	s.state.LastSuccess = &at
	s.state.Failures = 0
	s.state.LastError = ""
	s.state.NextAttempt = nil
}

// newDeliveryClient returns the HTTP client every delivery goes through.
func newDeliveryClient(cfg config) *http.Client {
	dial := cfg.webhookDial
	if dial == nil {
		dial = guardedDialer(cfg.webhookAllow)
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:       nil, // deliveries go where they are addressed, never through the environment's proxy
			DialContext: dial,
			// One delivery is in flight per registration, so a receiver
			// has as many connections as it has registrations; keep them.
			MaxIdleConnsPerHost: maxIdlePerReceiver,
			IdleConnTimeout:     90 * time.Second,
			// Go's default allows 10 MB of answer headers, kept while
			// the answer is read: a receiver needs to send none.
			MaxResponseHeaderBytes: maxResponseHeaderBytes,
		},
		// A redirect is an answer like any other that is not 2xx: following
		// it would deliver somewhere the registration did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       cfg.webhookTimeout,
	}
}

// DefaultWebhookTimeout is how long one delivery attempt may take, answer
// included, before it counts as failed: a receiver is asked to answer
// quickly and do slow work later.
const DefaultWebhookTimeout = 10 * time.Second
