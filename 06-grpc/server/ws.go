package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"realtime/06-grpc/feed"
)

// WebSocket settings. The names, and the shape of a connection (a read pump
// and a write pump), are those of gorilla/websocket's chat example.
const (
	// writeWait bounds one write: a client that takes longer to accept a
	// message has stopped reading.
	writeWait = 10 * time.Second
	// pongWait is how long a peer may be silent, pongs included, before it
	// counts as gone: a connection can die without a close (a laptop
	// sleeps, a NAT forgets the mapping), and only silence tells.
	pongWait = 60 * time.Second
	// pingPeriod is how often the server pings: within pongWait, so that a
	// live peer's pong always arrives in time, and often enough that
	// proxies and NATs that drop idle connections (often after 60 s or
	// more) see traffic.
	pingPeriod = pongWait * 9 / 10
	// closeWait is how long the server waits for the peer to answer its
	// close frame before it closes the connection: a peer that never
	// answers costs no more than this.
	closeWait = time.Second
	// maxMessageSize is the largest message a client may send: a publish of
	// the largest update text with every byte escaped, as \u0001 is, in
	// six. A message is read whole before it is published, so this bounds
	// the memory a message costs.
	maxMessageSize = len(`{"data":""}`) + 6*feed.MaxDataBytes
	// readBufferSize is the read buffer every socket keeps: room for a
	// publish of a few hundred bytes, and for any control frame (at most
	// 125 bytes).
	readBufferSize = 512
)

// handleWS serves GET /ws?after=CURSOR: a WebSocket that carries a hello
// with the server's position, then every update after the cursor, then each
// update as it is published, one text message each: the update JSON.
// Messages that are not updates are JSON objects with a type field. A socket
// takes a place in held for as long as it is open: with none free, 503.
func handleWS(log feed.Store, cfg config, held semaphore, detached *detachedStreams) http.Handler {
	upgrader := websocket.Upgrader{
		// An open socket keeps its read buffer for as long as it lives, and
		// most sockets are idle: clients send a publish now and then, and
		// gorilla reads a message larger than the buffer past it. Without
		// a size, gorilla would keep the 4 KiB buffer net/http read the
		// handshake with.
		ReadBufferSize: readBufferSize,
		// A write buffer is taken from the pool for each message and given
		// back after it: an idle socket holds none.
		WriteBufferPool: &sync.Pool{},
		// checkOrigin has checked it, and said why when it refused.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	allowed := make(map[string]bool, len(cfg.allowedOrigins))
	for _, origin := range cfg.allowedOrigins {
		allowed[origin] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkOrigin(r, allowed); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		cursor, err := parseCursor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !held.tryAcquire() {
			held.refuse(w) // before the upgrade: an answer every client can read
			return
		}
		// gorilla/websocket writes the 101 itself, with only the header it
		// is given: this one, so that the guard's nosniff is on it too.
		conn, err := upgrader.Upgrade(w, r, w.Header())
		if err != nil {
			held.release()
			return // Upgrade has answered, with the reason
		}
		// The connection is ours from here, and outlives the handler.
		s := &socket{conn: conn, log: log, cfg: cfg, outcomes: make(chan wsOutcome), closing: make(chan wsClose),
			pongs: make(chan string, 1)}
		serve := func(ctx context.Context) {
			defer held.release()
			s.serve(ctx, cursor)
		}
		if !detached.start(serve) {
			held.release()
			conn.Close() // the server is shutting down
		}
	})
}

// checkOrigin refuses the handshake of a page from another origin. The
// handshake is a GET, which the guard's cross-origin protection lets through,
// and a browser lets any page open a socket to any server, sending the page's
// Origin: this check is all that stops a page elsewhere from publishing, and
// reading, through its visitor's browser. A request without Origin is not a
// browser's (curl, the Go client), and no page can send it.
func checkOrigin(r *http.Request, allowed map[string]bool) error {
	origin := r.Header.Get("Origin")
	if origin == "" || allowed[origin] {
		return nil
	}
	if u, err := url.Parse(origin); err == nil && (u.Scheme == "http" || u.Scheme == "https") && strings.EqualFold(u.Host, r.Host) {
		return nil // the server's own page
	}
	return fmt.Errorf("refused: a page of origin %s may not open a WebSocket here; "+
		"start the server with -allow-origin ORIGIN to allow one", feed.Quote(origin))
}

// socket is one WebSocket connection.
type socket struct {
	conn     *websocket.Conn
	log      feed.Store
	cfg      config
	outcomes chan wsOutcome // from readPump to writePump, which sends them
	closing  chan wsClose   // from readPump: the close frame writePump sends last
	pongs    chan string    // from readPump: the answer to the peer's latest ping
}

// wsPosition is the hello and the reset: where the server is.
type wsPosition struct {
	Type string `json:"type"`
	position
}

// wsOutcome answers a publish: the new update's id, or why it was refused.
type wsOutcome struct {
	Type   string `json:"type"` // "published" or "error"
	ID     uint64 `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// wsClose is a close frame: a code of RFC 6455, section 7.4, and a reason.
type wsClose struct {
	code   int
	reason string
}

// errPeerGone ends a socket whose peer closed it, broke the connection, or
// fell silent: there is nobody left to say goodbye to.
var errPeerGone = errors.New("peer gone")

// serve runs the socket until the server shuts down, the peer leaves or a
// write fails: readPump on a goroutine of its own, writePump on this one.
// Only writePump writes, as gorilla/websocket requires (one writer at a
// time).
func (s *socket) serve(shutdown context.Context, cursor feed.Cursor) {
	// At shutdown a socket has closeWait to say goodbye, whatever it is
	// doing: a write to a peer that stopped reading would wait for writeWait,
	// longer than a shutdown may take. Closing the connection ends it.
	served, cut := make(chan struct{}), make(chan struct{})
	stopCut := context.AfterFunc(shutdown, func() {
		defer close(cut)
		timer := time.NewTimer(closeWait)
		defer timer.Stop()
		select {
		case <-served:
		case <-timer.C:
			s.conn.Close()
		}
	})
	defer func() {
		close(served)
		if !stopCut() {
			<-cut
		}
	}()

	ctx, cancel := context.WithCancelCause(shutdown)
	defer cancel(nil)
	reading := make(chan struct{})
	go func() {
		defer close(reading)
		defer cancel(errPeerGone) // writePump stops too
		s.readPump(ctx)
	}()
	s.writePump(ctx, cursor)
	// readPump may be waiting to hand writePump an outcome: nobody takes it now.
	cancel(nil)
	// The closing handshake: a peer answers a close frame with its own, and
	// readPump returns. Past closeWait, the peer has had its chance.
	timer := time.NewTimer(closeWait)
	select {
	case <-reading:
	case <-timer.C:
	}
	timer.Stop()
	s.conn.Close() // which ends readPump's read
	<-reading
}

// readPump publishes each message the client sends and hands the outcome to
// writePump, until the connection fails or closes, or ctx ends. A message it
// cannot publish closes the socket: it hands writePump the close frame, and
// reads on, publishing nothing, until the peer's close answers it. Reading
// is also what answers the peer's pings and close.
func (s *socket) readPump(ctx context.Context) {
	// Any frame shows that the peer is there; a pong is what it sends when
	// it has nothing else to say.
	alive := func() { _ = s.conn.SetReadDeadline(time.Now().Add(s.cfg.pongWait)) }
	alive()
	s.conn.SetPongHandler(func(string) error {
		alive()
		return nil
	})
	// gorilla's own close handler would answer a close from here: the
	// answer goes to writePump below.
	s.conn.SetCloseHandler(func(int, string) error { return nil })
	// gorilla's own ping handler writes the pong from here; writePump does,
	// so that it stays the only writer. RFC 6455 lets an endpoint answer
	// only the latest of several pings.
	s.conn.SetPingHandler(func(data string) error {
		alive()
		select {
		case <-s.pongs: // an older ping, not answered yet
		default:
		}
		s.pongs <- data
		return nil
	})
	for {
		kind, r, err := s.conn.NextReader()
		var peerClosed *websocket.CloseError
		if errors.As(err, &peerClosed) {
			// Answer with the peer's own code, as RFC 6455 asks, and go.
			select {
			case s.closing <- wsClose{code: peerClosed.Code}:
			case <-ctx.Done():
			}
			return
		}
		if err != nil {
			return
		}
		alive()
		text, refused := readPublish(kind, r)
		if refused != nil {
			select {
			case s.closing <- *refused:
			case <-ctx.Done():
				return
			}
			s.drain()
			return
		}
		outcome := wsOutcome{Type: "published"}
		if e, err := s.log.Publish(text); err != nil {
			outcome = wsOutcome{Type: "error", Reason: err.Error()}
		} else {
			outcome.ID = e.ID
		}
		select {
		case s.outcomes <- outcome:
		case <-ctx.Done():
			return
		}
	}
}

// readPublish reads one message: the text of a publish, or the close frame
// that says what is wrong with it.
func readPublish(kind int, r io.Reader) (string, *wsClose) {
	if kind != websocket.TextMessage {
		return "", &wsClose{websocket.CloseUnsupportedData, `only text messages are read: {"data":"TEXT"} publishes TEXT`}
	}
	// One byte more than the limit tells a message at the limit from one
	// over it, and reading stops there, however large the message is.
	message, err := io.ReadAll(io.LimitReader(r, int64(maxMessageSize)+1))
	switch {
	case err != nil:
		return "", &wsClose{websocket.CloseProtocolError, "reading the message: " + err.Error()}
	case len(message) > maxMessageSize:
		return "", &wsClose{websocket.CloseMessageTooBig, fmt.Sprintf("a message is at most %d bytes", maxMessageSize)}
	case !utf8.Valid(message):
		// JSON decoding would quietly turn the bad bytes into U+FFFD, and
		// publish a text nobody sent.
		return "", &wsClose{websocket.CloseInvalidFramePayloadData, "a text message must be UTF-8"}
	}
	var publish struct {
		Data *string `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(message))
	dec.DisallowUnknownFields()
	if dec.Decode(&publish) != nil || publish.Data == nil || dec.Decode(&struct{}{}) != io.EOF {
		return "", &wsClose{websocket.CloseUnsupportedData, `not a publish: send {"data":"TEXT"}`}
	}
	return *publish.Data, nil
}

// drain reads and discards until the connection fails or closes.
func (s *socket) drain() {
	for {
		if _, _, err := s.conn.NextReader(); err != nil {
			return
		}
	}
}

// writePump sends the hello and the history after cursor, then every update
// published after it, until ctx ends, a write fails, readPump hands it a close
// frame, or the socket falls behind and the feed drops it.
func (s *socket) writePump(ctx context.Context, cursor feed.Cursor) {
	history, last, sub, err := s.log.SubscribeAfter(cursor, s.cfg.queue)
	defer sub.Close()
	here := position{Last: last, Epoch: s.log.Epoch()}
	if !s.writeJSON(wsPosition{Type: "hello", position: here}) {
		return
	}
	sent := feed.Cursor{After: cursor.After, Epoch: here.Epoch} // where the client is
	if errors.Is(err, feed.ErrGap) {
		if !s.writeJSON(wsPosition{Type: "reset", position: here}) {
			return
		}
		sent.After = last
	}
	// One message per update, each written as it is: the replay goes out in
	// writes of one update, never in a buffer as large as the history.
	for _, e := range history {
		if !s.write(e.JSON) {
			return
		}
		sent.After = e.ID
	}
	ping := time.NewTicker(s.cfg.pingPeriod)
	defer ping.Stop()
	for {
		select {
		case e, open := <-sub.Updates():
			if !open {
				// Dropped for falling behind. The client is told where to
				// resume: it catches up from the history, or hears of the gap.
				// (At most 113 bytes with the longest epoch: a close reason
				// has room for 123.)
				s.close(wsClose{websocket.CloseTryAgainLater, "too slow; resume with after=" + sent.String()})
				return
			}
			if !s.write(e.JSON) {
				return
			}
			sent.After = e.ID
		case outcome := <-s.outcomes:
			if !s.writeJSON(outcome) {
				return
			}
		case c := <-s.closing:
			s.close(c)
			return
		case <-ping.C:
			if s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)) != nil {
				return
			}
		case data := <-s.pongs:
			if s.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeWait)) != nil {
				return
			}
		case <-ctx.Done():
			if context.Cause(ctx) != errPeerGone {
				s.close(wsClose{websocket.CloseGoingAway, "server shutting down"})
			}
			return
		}
	}
}

// close sends the close frame c. The connection closes after it, in serve.
// A peer that does not take a close frame within closeWait is not reading.
func (s *socket) close(c wsClose) {
	frame := websocket.FormatCloseMessage(c.code, c.reason) // a peer's 1005 (no code) is answered with none
	_ = s.conn.WriteControl(websocket.CloseMessage, frame, time.Now().Add(closeWait))
}

// writeJSON sends v as one text message.
func (s *socket) writeJSON(v any) bool {
	data, err := json.Marshal(v)
	return err == nil && s.write(data)
}

// write sends one text message, and reports whether it went.
func (s *socket) write(data []byte) bool {
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeWait))
	return s.conn.WriteMessage(websocket.TextMessage, data) == nil
}
