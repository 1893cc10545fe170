package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"realtime/06-grpc/feed"
)

// DefaultBodyTimeout is how long a publish request's body may take to arrive:
// 64 KiB in 10 s is 52 kbit/s, slower than any link that still works. It is
// shorter than the WriteTimeout that RunServer sets (15 s), which counts from
// the same request headers, so that the 408 can still be written.
const DefaultBodyTimeout = 10 * time.Second

// handlePublish publishes the request body as one update and answers 201
// with the stamped update.
func handlePublish(log feed.Store, bodyTimeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r, feed.MaxDataBytes, feed.ErrTooLarge.Error(), bodyTimeout)
		if !ok {
			return
		}
		u, err := log.Publish(string(body))
		switch {
		case errors.Is(err, feed.ErrUnavailable):
			w.Header().Set("Retry-After", "1")
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusCreated, u)
	})
}

// readBody reads a request body of at most limit bytes that arrives within
// timeout. When it cannot, it answers the request itself (413 with tooLarge,
// 408, or 400) and returns false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, tooLarge string, timeout time.Duration) ([]byte, bool) {
	// The server's ReadTimeout would also end a body that stops arriving,
	// but by closing the connection without a word. A deadline of the
	// handler's own turns it into an answer. (A ResponseRecorder cannot set
	// one; its body is already all there.)
	if timeout > 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		http.Error(w, tooLarge, http.StatusRequestEntityTooLarge)
		return nil, false
	case errors.Is(err, os.ErrDeadlineExceeded):
		reason := fmt.Sprintf("request body not complete after %v: %d bytes arrived", timeout, len(body))
		http.Error(w, reason, http.StatusRequestTimeout)
		return nil, false
	case err != nil:
		http.Error(w, fmt.Sprintf("reading body: %v", err), http.StatusBadRequest)
		return nil, false
	}
	return body, true
}
