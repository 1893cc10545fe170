package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"realtime/06-grpc/feed"
)

// WebSocket settings, named as in gorilla/websocket's chat example.
const (
	// writeWait bounds one write, the close included: a server that does
	// not take a few bytes in that time is gone.
	writeWait = 10 * time.Second

	// handshakeTimeout bounds the upgrade request, as http.Client's dial
	// and TLS timeouts bound a poll.
	handshakeTimeout = 30 * time.Second

	// MaxMessageBytes is the read limit: the largest message the client
	// accepts. The largest this project sends is a 64 KiB update,
	// JSON-escaped; a server that sends more could make the client grow
	// without limit, and gets the connection closed (1009) instead.
	MaxMessageBytes = 1 << 20

	// pingsPerIdle is how many pings the client sends in each silence
	// window (Config.StreamIdle), as the event stream gets three
	// heartbeats in its own: a pong late by a period or two still counts.
	pingsPerIdle = 3
)

// WS receives updates from GET /ws: one WebSocket that carries a hello,
// then every update after the cursor, then each update live. It reconnects
// (through Run) with after=EPOCH-ID.
type WS struct {
	cfg Config
}

var _ Strategy = (*WS)(nil)

// wsMessage is any message the server sends: an update (no type), or a
// control message that names its type.
type wsMessage struct {
	Type   string    `json:"type"` // "" for an update; "hello", "reset", "published", "error"
	ID     uint64    `json:"id"`   // an update's, or the published one's
	Data   string    `json:"data"`
	Time   time.Time `json:"time"`
	Last   uint64    `json:"last"`   // hello, reset: the server's newest id
	Epoch  string    `json:"epoch"`  // hello, reset: the server's run
	Reason string    `json:"reason"` // error: why a publish was refused
}

// wsPublish is what the client sends: a text to publish.
type wsPublish struct {
	Data string `json:"data"`
}

// unanswered is the publishes sent and not yet answered, oldest first: the
// server answers them in the order they were sent. writePump adds, readPump
// takes, so it has a lock.
type unanswered struct {
	mu    sync.Mutex
	texts []string
}

func (u *unanswered) push(text string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.texts = append(u.texts, text)
}

// pop forgets the oldest publish: its outcome has come.
func (u *unanswered) pop() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.texts) > 0 {
		u.texts = u.texts[1:]
	}
}

// all returns what was never answered.
func (u *unanswered) all() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.texts
}

// Receive reads the socket until ctx ends or the connection does. A close
// frame from the server comes back as a *websocket.CloseError with its code
// and reason. The client pings, and a socket silent (no message, no pong)
// for Config.StreamIdle is dead: a connection can die without a close, and
// only silence tells.
func (c *WS) Receive(ctx context.Context, s *Session) error {
	idle := c.cfg.StreamIdle
	if idle == 0 {
		idle = defaultStreamIdle
	}
	conn, err := c.dial(ctx, s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	sent := &unanswered{}
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		writePump(ctx, conn, idle/pingsPerIdle, c.cfg.Publish, sent)
	}()
	defer func() {
		cancel() // the read failed: writePump ends too
		<-writing
		conn.Close()
		// Sent, and never answered: the server may have published them
		// or not. Sending them again could publish them twice.
		for _, text := range sent.all() {
			s.publishLost(text)
		}
	}()
	err = readPump(conn, s, idle, sent)
	var timeout net.Error
	if errors.As(err, &timeout) && timeout.Timeout() {
		return fmt.Errorf("websocket silent for %v", idle)
	}
	return err
}

// dial opens the socket, asking for the updates after the session's cursor.
// A refusal before the upgrade is returned as the other strategies return
// theirs, Retry-After included.
func (c *WS) dial(ctx context.Context, s *Session) (*websocket.Conn, error) {
	after, epoch := s.Cursor()
	endpoint := c.cfg.Server.JoinPath("ws")
	endpoint.Scheme = "ws"
	if c.cfg.Server.Scheme == "https" {
		endpoint.Scheme = "wss"
	}
	endpoint.RawQuery = url.Values{"after": {feed.Cursor{After: after, Epoch: epoch}.String()}}.Encode()
	dialer := websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: handshakeTimeout}
	conn, resp, err := dialer.DialContext(ctx, endpoint.String(), nil)
	if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
		return nil, refused(endpoint, resp) // gorilla keeps the start of the body
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", endpoint, err)
	}
	conn.SetReadLimit(MaxMessageBytes)
	return conn, nil
}

// readPump hands each message to the session until the connection fails,
// closes, or is silent for idle: every message and every pong moves the
// read deadline. It is the only reader, and the session's only user.
func readPump(conn *websocket.Conn, s *Session, idle time.Duration, sent *unanswered) error {
	alive := func() error { return conn.SetReadDeadline(time.Now().Add(idle)) }
	conn.SetPongHandler(func(string) error { return alive() })
	for {
		if err := alive(); err != nil {
			return err
		}
		_, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		var m wsMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("ws message %s: %w", feed.Quote(string(data)), err)
		}
		switch m.Type {
		case "":
			if err := s.Deliver(Update{ID: m.ID, Data: m.Data, Time: m.Time}); err != nil {
				return err
			}
		case "hello":
			// A hello from another server run comes with a reset, and the
			// epoch changes with the reset, never alone: should the
			// connection drop between the two, the next one still asks
			// with the old epoch, and still hears of the gap.
			if after, epoch := s.Cursor(); after == 0 || epoch == "" || epoch == m.Epoch {
				s.Answered(m.Epoch)
			}
		case "reset":
			s.Answered(m.Epoch)
			s.Gap(m.Last)
		case "published":
			sent.pop()
			s.published(m.ID)
		case "error":
			sent.pop()
			s.notPublished(m.Reason)
		}
	}
}

// writePump is the only goroutine that writes to conn: a ping every
// pingPeriod, whose pong tells readPump the server is there, and each text
// from publish, noted in sent before it goes. A text waits in the channel
// while no socket is open: only a connected writePump takes it. When ctx
// ends it says goodbye with a normal close and closes the connection, which
// ends readPump's read; so does a write that fails.
func writePump(ctx context.Context, conn *websocket.Conn, pingPeriod time.Duration, publish <-chan string, sent *unanswered) {
	defer conn.Close()
	ticker := time.NewTicker(pingPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				return
			}
		case text, open := <-publish:
			if !open {
				publish = nil // nothing more to publish; keep receiving
				continue
			}
			message, err := json.Marshal(wsPublish{Data: text})
			if err != nil {
				return // a string always marshals
			}
			sent.push(text)
			_ = conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := conn.WriteMessage(websocket.TextMessage, message); err != nil {
				return
			}
		case <-ctx.Done():
			goodbye := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
			_ = conn.WriteControl(websocket.CloseMessage, goodbye, time.Now().Add(writeWait))
			return
		}
	}
}
