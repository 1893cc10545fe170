package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"realtime/06-grpc/feed"
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
	// flushAt is how much a replay collects before it writes: the history
	// goes out in pieces of about this size, never in one buffer as large
	// as the history.
	flushAt = 32 << 10
)

// handleSSE streams updates as text/event-stream: a hello event with the
// epoch, then every update after the cursor (Last-Event-ID, or ?after=CURSOR
// on the first connect) as "id: EPOCH-ID" and "data: <update JSON>", live,
// until the client leaves, the server shuts down, or the subscriber falls
// behind. The id is a whole cursor, epoch included, so that a stock
// EventSource hands it back as Last-Event-ID after a server restart and is
// told about the gap. A stream takes a place in held for as long as it
// lasts: with none free, 503.
func handleSSE(log feed.Store, cfg config, held semaphore, detached *detachedStreams) http.Handler {
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

		if conn, ok := hijack(w); ok {
			// Ours from here: the head is the first thing written, and the
			// body ends when the connection closes.
			out := &eventWriter{out: conn, epoch: log.Epoch(), buf: responseHead(header)}
			detached.run(conn, func(ctx context.Context) {
				defer held.release()
				streamEvents(ctx, out, log, cursor, cfg)
			})
			return
		}
		defer held.release()
		defer endStuckWritesOnDone(r.Context(), w)()
		out := &eventWriter{out: responseSink{w, http.NewResponseController(w)}, epoch: log.Epoch()}
		streamEvents(r.Context(), out, log, cursor, cfg)
	})
}

// position is the data of the hello and reset events: the newest id, and
// the server run.
type position struct {
	Last  uint64 `json:"last"`
	Epoch string `json:"epoch"`
}

// streamEvents writes the hello and the history after cursor, then every
// update published after it and a heartbeat between them, until ctx ends,
// the subscriber is dropped or a write fails.
func streamEvents(ctx context.Context, stream *eventWriter, log feed.Store, cursor feed.Cursor, cfg config) {
	history, last, sub, err := log.SubscribeAfter(cursor, cfg.queue)
	defer sub.Close()
	here := position{Last: last, Epoch: log.Epoch()}
	stream.printf("retry: %d\n", cfg.retry.Milliseconds())
	stream.event("hello", here)
	if errors.Is(err, feed.ErrGap) {
		// The id moves the client's Last-Event-ID to where it continues.
		stream.id(last)
		stream.event("reset", here)
	}
	for _, e := range history {
		stream.update(e)
		if len(stream.buf) >= flushAt {
			stream.flush()
		}
	}
	stream.flush()
	stream.trim()

	heartbeat := time.NewTicker(cfg.heartbeat)
	defer heartbeat.Stop()
	for stream.err == nil {
		select {
		case e, open := <-sub.Updates():
			if !open {
				return // dropped for falling behind: the client resumes from its last id
			}
			stream.update(*e)
		case <-heartbeat.C:
			stream.printf(": ping\n\n")
		case <-ctx.Done():
			return // the client left, or the server is shutting down
		}
		stream.flush()
		stream.trim()
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
	epoch string // the server run, the first half of every id
	buf   []byte
	err   error
}

func (s *eventWriter) printf(format string, args ...any) {
	if s.err == nil {
		s.buf = fmt.Appendf(s.buf, format, args...)
	}
}

// id writes the id line of the next event: the cursor of update last.
func (s *eventWriter) id(last uint64) {
	if s.err == nil {
		s.buf = append(s.buf, "id: "...)
		s.buf = append(feed.Cursor{After: last, Epoch: s.epoch}.Append(s.buf), '\n')
	}
}

// event writes an event of type name whose data is v as JSON.
func (s *eventWriter) event(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.err = fmt.Errorf("encode %s event: %w", name, err)
		return
	}
	s.printf("event: %s\ndata: %s\n\n", name, data)
}

// update writes one update as one event, with the JSON the log encoded once
// for every reader: nothing is allocated per subscriber. JSON escapes every
// newline, so the data is always a single line.
func (s *eventWriter) update(e feed.Entry) {
	s.id(e.ID)
	if s.err != nil {
		return
	}
	s.buf = append(s.buf, "data: "...)
	if len(e.JSON) > flushAt {
		// A large update goes out from the log's own bytes: copied into
		// each stream's buffer, it would cost every subscriber its size.
		s.flush()
		s.write(e.JSON)
	} else {
		s.buf = append(s.buf, e.JSON...)
	}
	s.buf = append(s.buf, "\n\n"...)
}

// flush sends what printf collected, in one write.
func (s *eventWriter) flush() {
	if len(s.buf) > 0 {
		s.write(s.buf)
		s.buf = s.buf[:0]
	}
}

// trim drops a buffer that a replay or a large update grew: it is not kept
// for the idle hours after it.
func (s *eventWriter) trim() {
	if cap(s.buf) > maxKeptBuffer {
		s.buf = nil
	}
}

// write sends p at once, unless an earlier write failed.
func (s *eventWriter) write(p []byte) {
	if s.err != nil {
		return
	}
	// Each write gets its own deadline. This also replaces the server-wide
	// WriteTimeout, which counts from the request and would cut the stream.
	// (A ResponseRecorder cannot set one; it needs none.)
	_ = s.out.SetWriteDeadline(time.Now().Add(sseWriteWait))
	_, s.err = s.out.Write(p)
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
// header that EventSource sends when it reconnects, or else ?after=CURSOR.
func parseStreamCursor(r *http.Request) (feed.Cursor, error) {
	cursor, err := parseCursor(r)
	if err != nil {
		return cursor, err
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		cursor, err = feed.ParseCursor(id)
		if err != nil {
			return cursor, fmt.Errorf("Last-Event-ID: %w", err)
		}
	}
	return cursor, nil
}
