package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"realtime/05-webhooks/feed"
)

// defaultStreamIdle is how long an event stream may be silent, heartbeats
// included, before the client treats the connection as dead: three of the
// server's 15-second heartbeats. Without it, a connection that died without
// a FIN (a dropped NAT entry, a pulled cable) would be waited on forever.
const defaultStreamIdle = 45 * time.Second

// SSE receives updates from GET /events, one event per update, on one
// long-lived response. It reconnects (through Run) with Last-Event-ID, and
// waits at least the retry time the server sent.
type SSE struct {
	cfg   Config
	retry time.Duration // from the stream's retry field; 0 until sent
}

// RetryDelay returns the reconnection time the server asked for.
func (c *SSE) RetryDelay() (time.Duration, bool) { return c.retry, c.retry > 0 }

// Receive streams until ctx ends or the stream does.
func (c *SSE) Receive(parent context.Context, s *Session) error {
	idle := c.cfg.StreamIdle
	if idle == 0 {
		idle = defaultStreamIdle
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	silent := fmt.Errorf("event stream silent for %v", idle)
	watchdog := time.AfterFunc(idle, func() { cancel(silent) })
	defer watchdog.Stop()

	after, epoch := s.Cursor()
	endpoint := c.cfg.Server.JoinPath("events")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.String(), nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if after > 0 {
		// The whole cursor, as the server sent it in the id field: with the
		// epoch, a restarted server can tell that this id is not its own.
		req.Header.Set("Last-Event-ID", feed.Cursor{After: after, Epoch: epoch}.String())
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return refused(endpoint, resp)
	}
	if mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mediaType != "text/event-stream" {
		return fmt.Errorf("GET %s: answered %q, not an event stream", endpoint, mediaType)
	}

	stream := NewEventStream(&activityReader{r: resp.Body, active: func() { watchdog.Reset(idle) }})
	for {
		event, err := stream.Next()
		if parent.Err() == nil && context.Cause(ctx) == silent {
			return silent
		}
		if retry, ok := stream.Retry(); ok {
			c.retry = retry
		}
		if errors.Is(err, io.EOF) {
			return errors.New("event stream ended")
		}
		if err != nil {
			return err
		}
		if err := c.handle(event, s); err != nil {
			return err
		}
	}
}

// handle hands one event to the session.
func (c *SSE) handle(event Event, s *Session) error {
	switch event.Type {
	case "message":
		var u Update
		if err := json.Unmarshal([]byte(event.Data), &u); err != nil {
			return fmt.Errorf("event %s: decode update: %w", event.LastEventID, err)
		}
		return s.Deliver(u)
	case "hello", "reset":
		var position struct {
			Last  uint64 `json:"last"`
			Epoch string `json:"epoch"`
		}
		if err := json.Unmarshal([]byte(event.Data), &position); err != nil {
			return fmt.Errorf("%s event: %w", event.Type, err)
		}
		if event.Type == "reset" {
			s.Answered(position.Epoch)
			s.Gap(position.Last)
			return nil
		}
		// A hello from another server run comes with a reset, and the
		// epoch changes with the reset, never alone: should the
		// connection drop between the two, the next one still asks with
		// the old epoch, and still hears of the gap.
		if after, epoch := s.Cursor(); after == 0 || epoch == "" || epoch == position.Epoch {
			s.Answered(position.Epoch)
		}
	}
	return nil // other event types are for other clients
}

// activityReader calls active after every read that returns bytes.
type activityReader struct {
	r      io.Reader
	active func()
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.active()
	}
	return n, err
}
