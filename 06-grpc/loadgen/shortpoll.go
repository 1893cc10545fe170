package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ShortPoll runs cfg.Clients short-polling clients, each asking GET /updates
// every cfg.Interval, and reports the rate the server kept up and how long
// its answers took.
func ShortPoll(ctx context.Context, cfg Config) (string, error) {
	hc := newHTTPClient(cfg.Clients, 30*time.Second)
	defer hc.CloseIdleConnections()
	endpoint := cfg.Server.JoinPath("updates").String() + "?after="

	// Every client starts within the first interval; measuring starts after it.
	ctx, cancel := context.WithTimeout(ctx, cfg.Interval+cfg.Duration)
	defer cancel()
	measureFrom := time.Now().Add(cfg.Interval)
	var published atomic.Int64
	go publisher(ctx, hc, cfg.Server, cfg.PublishRate, &published)

	var answers samples
	var wg sync.WaitGroup
	for range cfg.Clients {
		wg.Go(func() {
			var mine []time.Duration
			defer func() { answers.add(mine) }()
			timer := time.NewTimer(jitter(cfg.Interval))
			defer timer.Stop()
			var after uint64
			for {
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
				timer.Reset(cfg.Interval)
				start := time.Now()
				last, err := shortPollOnce(ctx, hc, endpoint, after)
				if ctx.Err() != nil {
					return
				}
				if start.Before(measureFrom) {
					continue
				}
				if err != nil {
					answers.errs.Add(1)
					continue
				}
				after = last
				mine = append(mine, time.Since(start))
			}
		})
	}
	wg.Wait()
	return fmt.Sprintf("short polling: %d clients every %v for %v, %d updates published\n%s",
		cfg.Clients, cfg.Interval, cfg.Duration, published.Load(), answers.summary(cfg.Duration)), nil
}

// shortPollOnce asks once and returns the newest id the server reported.
func shortPollOnce(ctx context.Context, hc *http.Client, endpoint string, after uint64) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprint(endpoint, after), nil)
	if err != nil {
		return after, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return after, err
	}
	defer resp.Body.Close()
	var answer struct {
		Last uint64 `json:"last"`
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusGone {
		_, _ = io.Copy(io.Discard, resp.Body)
		return after, fmt.Errorf("status %s", resp.Status)
	}
	if err := decode(resp.Body, &answer); err != nil {
		return after, err
	}
	return answer.Last, nil
}
