package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
)

// SSE opens cfg.Clients event streams, then publishes one update cfg.Rounds
// times and measures how long each subscriber waited for it. With the
// server's -debug endpoint it also reports what an idle subscriber costs.
func SSE(ctx context.Context, cfg Config) (string, error) {
	hc := newHTTPClient(1, 30*time.Second) // for publishing and statistics
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	idle, hasStats := runtimeStats(ctx, hc, cfg)
	start, err := publishOne(ctx, hc, cfg, "before the subscribers")
	if err != nil {
		return "", err
	}
	var (
		rounds    = newBroadcasts(cfg.Rounds)
		connected atomic.Int64 // streams past their hello
		errs      atomic.Int64
		wg        sync.WaitGroup
	)
	defer wg.Wait()
	defer cancel()
	err = startClients(ctx, cfg, func() {
		wg.Go(func() {
			conn := &rawClient{server: cfg.Server}
			defer conn.close()
			after := start
			for ctx.Err() == nil {
				// A stream only ends by failing; unless the run is over,
				// that is an error to count.
				_ = conn.stream(ctx, after, &connected, func(id uint64) {
					after = id
					rounds.received()
				})
				if ctx.Err() == nil {
					errs.Add(1)
					conn.close()
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
	fmt.Fprintf(&report, "sse: %d subscribers, %d broadcasts\n", cfg.Clients, cfg.Rounds)
	if hasStats {
		reportCost(&report, cfg, idle, held, "idle subscriber")
	}
	if err := rounds.measure(ctx, hc, cfg, &report, func() error { return nil }); err != nil {
		return "", err
	}
	fmt.Fprintf(&report, "errors: %d", errs.Load())
	return report.String(), nil
}

// stream opens GET /events after the given id on c's connection and reads
// it until it ends, counting itself in connected while it is open, and
// calling received with each update's id.
func (c *rawClient) stream(ctx context.Context, after uint64, connected *atomic.Int64, received func(id uint64)) error {
	if err := c.dial(ctx); err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodGet, c.server.JoinPath("events").String()+"?after="+strconv.FormatUint(after, 10), nil)
	if err != nil {
		return err
	}
	if err := req.Write(c.conn); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.reader, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	events := client.NewEventStream(resp.Body)
	for {
		event, err := events.Next()
		if err != nil {
			return err
		}
		switch event.Type {
		case "hello":
			connected.Add(1)
			defer connected.Add(-1)
		case "message":
			cursor, err := feed.ParseCursor(event.LastEventID)
			if err != nil {
				return fmt.Errorf("an update event without a cursor as its id: %w", err)
			}
			received(cursor.After)
		}
	}
}
