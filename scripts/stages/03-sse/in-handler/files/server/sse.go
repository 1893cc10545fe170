package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"realtime/03-sse/feed"
)

// Event stream settings.
const (
	// DefaultHeartbeat keeps idle streams alive through proxies and NATs
	// that drop connections silent for a minute or so, and lets clients
	// notice a dead connection.
	DefaultHeartbeat = 15 * time.Second
	// DefaultRetry is the reconnection time sent to clients: long enough
	// that a restarting server is not stampeded, short enough to feel live.
	DefaultRetry = 2 * time.Second
	// DefaultQueue is how far a subscriber may fall behind before it is
	// dropped; it then reconnects and catches up from the history.
	DefaultQueue = 32
	// sseWriteWait bounds one write: a client that takes longer to accept
	// an event has stopped reading.
	sseWriteWait = 10 * time.Second
)

// handleSSE streams updates as text/event-stream: a hello event with the
// epoch, then every update after the cursor (Last-Event-ID, or ?after=N on
// the first connect) as "id: <id>" and "data: <update JSON>", live, until the
// client leaves, the server shuts down, or the subscriber falls behind. A
// stream takes a place in held for as long as it lasts: with none free, 503.
func handleSSE(log *feed.Log, cfg config, held semaphore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cursor, err := parseStreamCursor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !held.tryAcquire() {
			held.refuse(w)
			return
		}
		defer held.release()
		// Subscribe before reading the history, so that an update published
		// in between is in one or both, never in neither; ids drop the copy.
		sub := log.Subscribe(cfg.queue)
		defer sub.Close()

		header := w.Header()
		header.Set("Content-Type", "text/event-stream")
		header.Set("Cache-Control", "no-store")
		header.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
		stream := &eventWriter{w: w, rc: http.NewResponseController(w)}
		history, last, err := log.After(cursor)
		stream.printf("retry: %d\nevent: hello\ndata: {\"last\":%d,\"epoch\":%q}\n\n", cfg.retry.Milliseconds(), last, log.Epoch())
		sent := cursor.After
		if errors.Is(err, feed.ErrGap) {
			// The id moves the client's Last-Event-ID to where it continues.
			stream.printf("id: %d\nevent: reset\ndata: {\"last\":%d,\"epoch\":%q}\n\n", last, last, log.Epoch())
			sent = last
		}
		for _, u := range history {
			stream.update(u)
			sent = u.ID
		}
		stream.flush()

		heartbeat := time.NewTicker(cfg.heartbeat)
		defer heartbeat.Stop()
		for stream.err == nil {
			select {
			case u, open := <-sub.Updates():
				if !open {
					return // dropped for falling behind: the client resumes from its last id
				}
				if u.ID <= sent {
					continue // already sent from the history
				}
				stream.update(u)
				sent = u.ID
			case <-heartbeat.C:
				stream.printf(": ping\n\n")
			case <-r.Context().Done():
				return // the client left, or the server is shutting down
			}
			stream.flush()
		}
	})
}

// eventWriter writes events and remembers the first error, after which it
// writes nothing: the client is gone, and the stream ends.
type eventWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func (s *eventWriter) printf(format string, args ...any) {
	if s.err != nil {
		return
	}
	// Each write gets its own deadline. This also replaces the server-wide
	// WriteTimeout, which counts from the request and would cut the stream.
	// (A ResponseRecorder cannot set one; it needs none.)
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteWait))
	_, s.err = fmt.Fprintf(s.w, format, args...)
}

// update writes one update as one event. JSON escapes every newline, so the
// data is always a single line.
func (s *eventWriter) update(u feed.Update) {
	data, err := json.Marshal(u)
	if err != nil {
		s.err = err
		return
	}
	s.printf("id: %d\ndata: %s\n\n", u.ID, data)
}

func (s *eventWriter) flush() {
	if s.err == nil {
		s.err = s.rc.Flush()
	}
}

// parseStreamCursor reads the cursor of an event stream: the Last-Event-ID
// header that EventSource sends when it reconnects, or else ?after=N; and the
// optional ?epoch=E.
func parseStreamCursor(r *http.Request) (feed.Cursor, error) {
	cursor, err := parseCursor(r)
	if err != nil {
		return cursor, err
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		after, err := parseID(id)
		if err != nil {
			return cursor, fmt.Errorf("Last-Event-ID: %w", err)
		}
		cursor.After = after
	}
	return cursor, nil
}
