package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"realtime/03-sse/feed"
)

// batch is the answer to GET /updates.
type batch struct {
	Updates []feed.Update `json:"updates"`
	Last    uint64        `json:"last"`
	Epoch   string        `json:"epoch"`
}

// handleShortPoll answers GET /updates?after=N[&epoch=E] at once with every
// held update after N, or 410 Gone when N cannot be served.
func handleShortPoll(log *feed.Log) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cursor, err := parseCursor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		updates, last, err := log.After(cursor)
		if errors.Is(err, feed.ErrGap) {
			writeJSON(w, http.StatusGone, gapAnswer{Last: last, Epoch: log.Epoch()})
			return
		}
		if updates == nil {
			updates = []feed.Update{} // "updates": [], never null
		}
		writeJSON(w, http.StatusOK, batch{Updates: updates, Last: last, Epoch: log.Epoch()})
	})
}

// parseCursor reads ?after=N (default 0) and the optional ?epoch=E.
func parseCursor(r *http.Request) (feed.Cursor, error) {
	query := r.URL.Query()
	cursor := feed.Cursor{Epoch: query.Get("epoch")}
	if !query.Has("after") {
		return cursor, nil
	}
	after, err := parseID(query.Get("after"))
	if err != nil {
		return cursor, fmt.Errorf("after: %w", err)
	}
	cursor.After = after
	return cursor, nil
}

// parseID accepts plain decimal digits that fit an id, and says which rule
// a refused value broke.
func parseID(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty; want an update id such as 42")
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a non-negative decimal integer", s)
	}
	return id, nil
}
