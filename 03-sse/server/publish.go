package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"realtime/03-sse/feed"
)

// handlePublish publishes the request body as one update and answers 201
// with the stamped update.
func handlePublish(log *feed.Log) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, feed.MaxDataBytes))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			http.Error(w, feed.ErrTooLarge.Error(), http.StatusRequestEntityTooLarge)
			return
		case err != nil:
			http.Error(w, fmt.Sprintf("reading body: %v", err), http.StatusBadRequest)
			return
		}
		u, err := log.Publish(string(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusCreated, u)
	})
}
