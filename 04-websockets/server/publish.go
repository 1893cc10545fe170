package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"realtime/04-websockets/feed"
)

// DefaultBodyTimeout is how long a publish request's body may take to arrive:
// 64 KiB in 10 s is 52 kbit/s, slower than any link that still works. It is
// shorter than the WriteTimeout that RunServer sets (15 s), which counts from
// the same request headers, so that the 408 can still be written.
const DefaultBodyTimeout = 10 * time.Second

// handlePublish publishes the request body as one update and answers 201
// with the stamped update.
func handlePublish(log *feed.Log, bodyTimeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server's ReadTimeout would also end a body that stops
		// arriving, but by closing the connection without a word. A deadline
		// of the handler's own turns it into an answer. (A ResponseRecorder
		// cannot set one; its body is already all there.)
		if bodyTimeout > 0 {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, feed.MaxDataBytes))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			http.Error(w, feed.ErrTooLarge.Error(), http.StatusRequestEntityTooLarge)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			reason := fmt.Sprintf("request body not complete after %v: %d bytes arrived", bodyTimeout, len(body))
			http.Error(w, reason, http.StatusRequestTimeout)
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
