package server

import (
	"net/http"

	"realtime/06-grpc/feed"
)

// addRoutes is the whole API of this chapter in one place.
func addRoutes(mux *http.ServeMux, log feed.Store, cfg config, detached *detachedStreams, hooks *webhooks) {
	held := make(semaphore, cfg.maxHeld) // one cap for every request that waits for updates
	mux.Handle("GET /{$}", handlePage())
	mux.Handle("GET /page/", handlePageFiles())
	mux.Handle("POST /publish", handlePublish(log, cfg.bodyTimeout))
	mux.Handle("GET /updates", handleLongPoll(log, held, handleShortPoll(log)))
	mux.Handle("GET /events", handleSSE(log, cfg, held, detached))
	mux.Handle("GET /ws", handleWS(log, cfg, held, detached))
	mux.Handle("POST /webhooks", hooks.handleRegister())
	mux.Handle("GET /webhooks", hooks.handleList())
	mux.Handle("GET /webhooks/{id}", hooks.handleState())
	mux.Handle("DELETE /webhooks/{id}", hooks.handleDelete())
	mux.Handle("GET /grpc/subscribers", handleGRPCSubscribers(cfg.grpcSubscribers))
	if cfg.runtimeStats {
		mux.Handle("GET /debug/runtime", RuntimeStats())
	}
}
