package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	// maxKeptBuffer is the largest event buffer a stream keeps between
	// writes: enough for a few ordinary events, so an idle stream holds
	// little.
	maxKeptBuffer = 1 << 10
)

// handleSSE streams updates as text/event-stream: a hello event with the
// epoch, then every update after the cursor (Last-Event-ID, or ?after=N on
// the first connect) as "id: <id>" and "data: <update JSON>", live, until the
// client leaves, the server shuts down, or the subscriber falls behind. A
// stream takes a place in held for as long as it lasts: with none free, 503.
func handleSSE(log *feed.Log, cfg config, held semaphore, detached *detachedStreams) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cursor, err := parseStreamCursor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		header := w.Header()
		header.Set("Content-Type", "text/event-stream")
		header.Set("Cache-Control", "no-store")
		header.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
		if r.Method == http.MethodHead {
			return // the headers are the whole answer
		}
		if !held.tryAcquire() {
			held.refuse(w)
			return
		}
		// Subscribe before reading the history, so that an update published
		// in between is in one or both, never in neither; ids drop the copy.
		sub := log.Subscribe(cfg.queue)

		if conn, ok := hijack(w); ok {
			// Ours from here: the head is the first thing written, and the
			// body ends when the connection closes.
			out := &eventWriter{out: conn, buf: responseHead(header)}
			detached.run(conn, func(ctx context.Context) {
				defer held.release()
				streamEvents(ctx, out, log, sub, cursor, cfg)
			})
			return
		}
		defer held.release()
		defer endStuckWritesOnDone(r.Context(), w)()
		out := &eventWriter{out: responseSink{w, http.NewResponseController(w)}}
		streamEvents(r.Context(), out, log, sub, cursor, cfg)
	})
}

// streamEvents writes the hello and the history after cursor, then every
// update sub delivers and a heartbeat between them, until ctx ends, the
// subscriber is dropped or a write fails. It closes sub.
func streamEvents(ctx context.Context, stream *eventWriter, log *feed.Log, sub *feed.Subscription, cursor feed.Cursor, cfg config) {
	defer sub.Close()
	history, last, _ := log.After(cursor)
	stream.printf("retry: %d\nevent: hello\ndata: {\"last\":%d,\"epoch\":%q}\n\n", cfg.retry.Milliseconds(), last, log.Epoch())
	sent := cursor.After
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
		case <-ctx.Done():
			return // the client left, or the server is shutting down
		}
		stream.flush()
	}
}

// eventWriter collects events and sends them on flush, and remembers the
// first error, after which it writes nothing: the client is gone, and the
// stream ends.
type eventWriter struct {
	out interface {
		io.Writer
		SetWriteDeadline(time.Time) error
	}
	buf []byte
	err error
}

func (s *eventWriter) printf(format string, args ...any) {
	if s.err == nil {
		s.buf = fmt.Appendf(s.buf, format, args...)
	}
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

// flush sends what printf collected, in one write.
func (s *eventWriter) flush() {
	if s.err != nil || len(s.buf) == 0 {
		return
	}
	// Each write gets its own deadline. This also replaces the server-wide
	// WriteTimeout, which counts from the request and would cut the stream.
	// (A ResponseRecorder cannot set one; it needs none.)
	_ = s.out.SetWriteDeadline(time.Now().Add(sseWriteWait))
	_, s.err = s.out.Write(s.buf)
	s.buf = s.buf[:0]
	if cap(s.buf) > maxKeptBuffer {
		s.buf = nil // a long replay's buffer is not kept for the idle hours after it
	}
}

// responseSink streams through a ResponseWriter that cannot be hijacked.
// net/http buffers a response (4 KiB and more) and would send nothing, not
// even the headers, until the buffer fills: each write is flushed at once.
type responseSink struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s responseSink) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, s.rc.Flush()
}

func (s responseSink) SetWriteDeadline(t time.Time) error { return s.rc.SetWriteDeadline(t) }

// responseHead is the status line and header of a hijacked stream. Without
// a length or chunking, the body is everything until the connection closes
// (RFC 9112, section 6.3), which for a stream is exactly right.
func responseHead(header http.Header) []byte {
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	header.Set("Connection", "close")
	header.Set("Date", time.Now().UTC().Format(http.TimeFormat)) // as net/http would
	// Writing to a bytes.Buffer does not fail.
	_ = header.Write(&head)
	head.WriteString("\r\n")
	return head.Bytes()
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
