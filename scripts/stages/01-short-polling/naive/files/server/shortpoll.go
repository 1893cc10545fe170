package server

import (
	"net/http"

	"realtime/01-short-polling/feed"
)

// batch is the answer to GET /updates.
type batch struct {
	Updates []feed.Update `json:"updates"`
	Last    uint64        `json:"last"`
	Epoch   string        `json:"epoch"`
}

// handleShortPoll answers with the latest update, whatever the client saw.
func handleShortPoll(log *feed.Log) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		latest := []feed.Update{}
		if last := log.Last(); last > 0 {
			latest, _, _ = log.After(feed.Cursor{After: last - 1})
		}
		writeJSON(w, http.StatusOK, batch{Updates: latest, Last: log.Last(), Epoch: log.Epoch()})
	})
}
