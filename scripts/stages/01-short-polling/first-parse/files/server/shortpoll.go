package server

import (
	"errors"
	"net/http"
	"strconv"

	"realtime/01-short-polling/feed"
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
	after, _ := strconv.ParseUint(query.Get("after"), 10, 64)
	return feed.Cursor{After: after, Epoch: query.Get("epoch")}, nil
}
