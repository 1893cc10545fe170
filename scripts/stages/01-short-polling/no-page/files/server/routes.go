package server

import (
	"net/http"

	"realtime/01-short-polling/feed"
)

// addRoutes is the whole API of this chapter in one place.
func addRoutes(mux *http.ServeMux, log *feed.Log, cfg config) {
	mux.Handle("POST /publish", handlePublish(log, cfg.bodyTimeout))
	mux.Handle("GET /updates", handleShortPoll(log))
}
