package server

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"realtime/06-grpc/feed"
)

// Long polling limits.
const (
	// MaxWait is the longest hold a client may ask for. Past a minute,
	// proxies and NAT tables start dropping connections that look idle.
	MaxWait = 60 * time.Second
	// holdJitter is the largest share of a wait cut at random, so that polls
	// that started together (after a restart, say) do not time out, and come
	// back, together.
	holdJitter = 0.1
	// writeMargin is how long writing an answer may take once the hold ends.
	writeMargin = 10 * time.Second
)

// handleLongPoll answers GET /updates?after=N&wait=D. With something to say
// (updates after N, or a gap), or with no wait, it answers at once, as short
// polling does; with nothing new it holds the request until an update is
// published, the wait ends (204), or the client or server goes away. With
// every place in held taken, it refuses to hold: 503.
func handleLongPoll(log feed.Store, held semaphore, answer http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		value, given, err := queryValue(r, "wait")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !given {
			answer.ServeHTTP(w, r)
			return
		}
		wait, err := parseWait(value)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cursor, err := parseCursor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		changed := log.Changed() // before After: see Changed
		if updates, _, err := log.After(cursor, feed.Limit{Updates: 1}); len(updates) > 0 || err != nil || wait == 0 {
			answer.ServeHTTP(w, r)
			return
		}
		if !held.tryAcquire() {
			held.refuse(w)
			return
		}
		defer held.release()

		hold := wait - time.Duration(rand.Float64()*holdJitter*float64(wait))
		// The server's WriteTimeout runs from the end of the request headers,
		// so a hold longer than it would lose its answer. This request's
		// deadline is moved past the hold. (A ResponseRecorder cannot; then
		// there is no deadline to move.)
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(hold + writeMargin))
		timer := time.NewTimer(hold)
		defer timer.Stop()
		select {
		case <-changed:
			answer.ServeHTTP(w, r)
		case <-timer.C:
			noContent(w)
		case <-r.Context().Done():
			// The client left (nobody reads this), or the server is shutting
			// down: "nothing new, ask again" sends the client to reconnect.
			noContent(w)
		}
	})
}

// parseWait reads ?wait=D, a Go duration from 0 to MaxWait.
func parseWait(s string) (time.Duration, error) {
	wait, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("wait: %s is not a duration such as 30s", feed.Quote(s))
	case wait < 0:
		return 0, fmt.Errorf("wait: %v is negative", wait)
	case wait > MaxWait:
		return 0, fmt.Errorf("wait: %v is longer than the longest wait, %v", wait, MaxWait)
	}
	return wait, nil
}

func noContent(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
