package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LongPoll holds cfg.Clients long polls at the server, then publishes one
// update cfg.Rounds times and measures how long each client waited for it,
// from just before the publish to its answer. With the server's -debug
// endpoint it also reports what each held poll costs the server.
func LongPoll(ctx context.Context, cfg Config) (string, error) {
	hc := newHTTPClient(cfg.Clients, cfg.Wait+30*time.Second)
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	idle, hasStats := runtimeStats(ctx, hc, cfg)
	start, err := publishOne(ctx, hc, cfg, "before the clients")
	if err != nil {
		return "", err
	}
	var (
		rounds    = newBroadcasts(cfg.Rounds)
		sent      atomic.Int64 // polls sent and not yet answered
		errs      atomic.Int64
		wg        sync.WaitGroup
		pollAfter = func(after uint64) string { return fmt.Sprintf("/updates?after=%d&wait=%s", after, cfg.Wait) }
	)
	defer wg.Wait()
	defer cancel()
	err = startClients(ctx, cfg, func() {
		wg.Go(func() {
			conn := &rawClient{server: cfg.Server}
			defer conn.close()
			after := start
			for ctx.Err() == nil {
				sent.Add(1)
				last, err := conn.longPoll(ctx, pollAfter(after))
				sent.Add(-1)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						time.Sleep(jitter(100 * time.Millisecond)) // back off a little, then rejoin
					}
					continue
				}
				if last > after {
					after = last
					// Poll again only once the round is measured, so that the
					// broadcast is measured on its own rather than racing
					// 10,000 fresh polls for the same cores.
					select {
					case <-rounds.received():
					case <-ctx.Done():
					}
				}
			}
		})
	})
	if err != nil {
		return "", err
	}

	// Every client has sent its poll; wait until the server holds them all.
	held, err := waitHeld(ctx, hc, cfg, &sent, idle, hasStats)
	if err != nil {
		return "", err
	}
	var report strings.Builder
	fmt.Fprintf(&report, "long polling: %d clients waiting (wait=%v), %d broadcasts\n", cfg.Clients, cfg.Wait, cfg.Rounds)
	if hasStats {
		reportCost(&report, cfg, idle, held, "waiting client")
	}
	err = rounds.measure(ctx, hc, cfg, &report, func() error {
		_, err := waitHeld(ctx, hc, cfg, &sent, idle, hasStats)
		return err
	})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&report, "errors: %d", errs.Load())
	return report.String(), nil
}

// rawClient is one load client's connection. It writes requests and reads
// answers itself, on the calling goroutine: net/http's client spends three
// goroutines and two channel hand-offs per connection, which on a shared
// machine would measure the load generator rather than the server.
type rawClient struct {
	server *url.URL
	conn   net.Conn
	reader *bufio.Reader
}

// longPoll sends one poll and returns the newest id the server reported, or
// 0 after a 204.
func (c *rawClient) longPoll(ctx context.Context, path string) (uint64, error) {
	if err := c.dial(ctx); err != nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodGet, c.server.String()+path, nil)
	if err != nil {
		return 0, err
	}
	if err := req.Write(c.conn); err != nil {
		c.close()
		return 0, err
	}
	resp, err := http.ReadResponse(c.reader, req)
	if err != nil {
		c.close()
		return 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return 0, nil
	case http.StatusOK:
		var answer struct {
			Last uint64 `json:"last"`
		}
		err := decode(resp.Body, &answer)
		return answer.Last, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return 0, fmt.Errorf("status %s", resp.Status)
}

// dial connects c if it is not connected. The connection is closed when ctx
// ends, which also ends any read in progress.
func (c *rawClient) dial(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", c.server.Host)
	if err != nil {
		return err
	}
	c.conn, c.reader = conn, bufio.NewReader(conn)
	context.AfterFunc(ctx, func() { conn.Close() })
	return nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// publishOne publishes text and returns its id.
func publishOne(ctx context.Context, hc *http.Client, cfg Config, text string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Server.JoinPath("publish").String(), strings.NewReader(text))
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var u struct {
		ID uint64 `json:"id"`
	}
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("publish: %s", resp.Status)
	}
	err = decode(resp.Body, &u)
	return u.ID, err
}

// stats is the server's GET /debug/runtime answer.
type stats struct {
	Goroutines uint64 `json:"goroutines"`
	HeapInuse  uint64 `json:"heap_inuse_bytes"`
	StackInuse uint64 `json:"stack_inuse_bytes"`
}

func runtimeStats(ctx context.Context, hc *http.Client, cfg Config) (stats, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Server.JoinPath("debug", "runtime").String(), nil)
	if err != nil {
		return stats{}, false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return stats{}, false
	}
	defer resp.Body.Close()
	var s stats
	if resp.StatusCode != http.StatusOK || decode(resp.Body, &s) != nil {
		return stats{}, false
	}
	return s, true
}

// waitHeld waits until every client has a poll out and, when the server
// reports its goroutines, until it runs at least one per held poll and the
// count has settled.
func waitHeld(ctx context.Context, hc *http.Client, cfg Config, sent *atomic.Int64, idle stats, hasStats bool) (stats, error) {
	deadline := time.Now().Add(cfg.Wait / 2)
	var last stats
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if sent.Load() < int64(cfg.Clients) {
			continue
		}
		if !hasStats {
			return stats{}, nil
		}
		now, _ := runtimeStats(ctx, hc, cfg)
		if now.Goroutines >= idle.Goroutines+uint64(cfg.Clients) && now.Goroutines == last.Goroutines {
			return now, nil
		}
		last = now
	}
	return stats{}, errors.New("the server never held every client's poll; lower -clients or -ramp")
}
