package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// WS opens cfg.Clients WebSockets, then publishes one update cfg.Rounds
// times and measures how long each socket waited for it. With the server's
// -debug endpoint it also reports what an idle socket costs.
func WS(ctx context.Context, cfg Config) (string, error) {
	hc := newHTTPClient(1, 30*time.Second) // for publishing and statistics
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	idle, hasStats := runtimeStats(ctx, hc, cfg)
	start, err := publishOne(ctx, hc, cfg, "before the sockets")
	if err != nil {
		return "", err
	}
	var (
		rounds    = newBroadcasts(cfg.Rounds)
		connected atomic.Int64 // sockets past their hello
		errs      atomic.Int64
		wg        sync.WaitGroup
		dialer    = wsDialer()
	)
	defer wg.Wait()
	defer cancel()
	err = startClients(ctx, cfg, func() {
		wg.Go(func() {
			after := start
			for ctx.Err() == nil {
				// A socket only ends by failing; unless the run is over,
				// that is an error to count.
				_ = wsStream(ctx, dialer, cfg, after, &connected, func(id uint64) {
					after = id
					rounds.received()
				})
				if ctx.Err() == nil {
					errs.Add(1)
					time.Sleep(jitter(100 * time.Millisecond)) // back off a little, then rejoin
				}
			}
		})
	})
	if err != nil {
		return "", err
	}

	held, err := waitHeld(ctx, hc, cfg, &connected, idle, hasStats)
	if err != nil {
		return "", err
	}
	var report strings.Builder
	fmt.Fprintf(&report, "ws: %d sockets, %d broadcasts\n", cfg.Clients, cfg.Rounds)
	if hasStats {
		reportCost(&report, cfg, idle, held, "idle socket")
	}
	if err := rounds.measure(ctx, hc, cfg, &report, func() error { return nil }); err != nil {
		return "", err
	}
	fmt.Fprintf(&report, "errors: %d", errs.Load())
	return report.String(), nil
}

// wsReadBuffer is the load client's read buffer. Updates here are a few
// dozen bytes; gorilla's default of 4 KiB, times 10,000 sockets, would make
// the generator's memory, not the server's, the thing a run measures.
const wsReadBuffer = 512

// wsDialer returns gorilla's client, sized for many idle sockets in one
// process: a small read buffer, and write buffers from a pool, since a load
// client writes nothing but the pongs and the close, which gorilla sends
// from a buffer of their own. After the handshake gorilla's client runs no
// goroutine: each socket costs its one reading goroutine, as the SSE
// generator's streams do.
func wsDialer() *websocket.Dialer {
	return &websocket.Dialer{
		ReadBufferSize:   wsReadBuffer,
		WriteBufferPool:  &sync.Pool{},
		HandshakeTimeout: 30 * time.Second,
	}
}

// wsStream opens GET /ws after the given id and reads it until it ends,
// counting itself in connected while it is open, and calling received with
// each update's id.
func wsStream(ctx context.Context, dialer *websocket.Dialer, cfg Config, after uint64, connected *atomic.Int64, received func(id uint64)) error {
	u := *cfg.Server
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1) // http -> ws, https -> wss
	u.Path = "/ws"
	u.RawQuery = "after=" + strconv.FormatUint(after, 10)
	conn, resp, err := dialer.DialContext(ctx, u.String(), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // ends the read in progress
	defer stop()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		// An update is the update JSON, which the server writes with its
		// id first; a control message starts with its type. Reading the id
		// off the front, as the SSE generator reads it off the id line,
		// keeps the generator's cost per message small: on a machine it
		// shares with the server, its parsing is part of what a run times.
		if id, ok := leadingID(data); ok {
			received(id)
		} else if bytes.HasPrefix(data, []byte(`{"type":"hello"`)) {
			connected.Add(1)
			defer connected.Add(-1)
		}
	}
}

// leadingID reads the id of an update message, {"id":42,...}.
func leadingID(message []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(message, []byte(`{"id":`))
	end := bytes.IndexByte(rest, ',')
	if !ok || end < 0 {
		return 0, false
	}
	id, err := strconv.ParseUint(string(rest[:end]), 10, 64)
	return id, err == nil
}
