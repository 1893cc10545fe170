// Package loadgen is a load generator for the server: many clients, one
// process, run apart from the server so that each has its own file and CPU
// budget. It reports what the clients saw, not what the server thinks.
package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	Server      *url.URL
	Clients     int
	Interval    time.Duration // short polling: time between one client's polls
	Duration    time.Duration // how long to measure, after every client has started once
	PublishRate float64       // updates per second published while measuring
	Wait        time.Duration // long polling: the wait each poll asks for
	Rounds      int           // long polling: broadcasts to measure
	Ramp        int           // long polling: new connections per second
	Failing     int           // webhook: receivers that answer 500 to every delivery, in a second set of broadcasts
	GRPC        string        // grpc: the server's gRPC address, host:port
	GRPCConns   int           // grpc: connections the streams share
}

// Run parses args, generates the load, and prints a report on stdout.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	serverURL := fs.String("server", "http://127.0.0.1:8080", "the server's base URL")
	strategy := fs.String("strategy", "short", "load to generate: short, long, sse, ws, webhook, grpc")
	var cfg Config
	fs.IntVar(&cfg.Clients, "clients", 1000, "concurrent clients, one connection each")
	fs.DurationVar(&cfg.Interval, "interval", time.Second, "short polling: time between one client's polls")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to measure")
	fs.Float64Var(&cfg.PublishRate, "publish-rate", 10, "short polling and webhook: updates per second published during the run")
	fs.DurationVar(&cfg.Wait, "wait", 60*time.Second, "long polling: the wait each poll asks for")
	fs.IntVar(&cfg.Rounds, "rounds", 3, "long polling: broadcasts to measure")
	fs.IntVar(&cfg.Ramp, "ramp", 2000, "long polling: new connections per second while the clients start")
	fs.IntVar(&cfg.Failing, "failing", 0, "webhook: receivers that then fail every delivery, while the broadcasts are measured again")
	fs.StringVar(&cfg.GRPC, "grpc", "127.0.0.1:9090", "grpc: the server's gRPC address (its -grpc-addr)")
	fs.IntVar(&cfg.GRPCConns, "grpc-conns", 1, "grpc: connections the streams share, from 1 (HTTP/2 multiplexes them all) to -clients (one each)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	base, err := url.Parse(*serverURL)
	if err != nil || base.Host == "" {
		return fmt.Errorf("-server %q: want a URL such as http://127.0.0.1:8080", *serverURL)
	}
	cfg.Server = base
	if cfg.Clients < 1 || cfg.Interval <= 0 || cfg.Duration <= 0 || cfg.PublishRate < 0 ||
		cfg.Wait <= 0 || cfg.Rounds < 1 || cfg.Ramp < 1 {
		return errors.New("-clients, -interval, -duration, -wait, -rounds and -ramp must be positive, -publish-rate not negative")
	}
	if cfg.Failing < 0 || cfg.Failing >= cfg.Clients {
		return errors.New("-failing must be at least 0 and fewer than -clients: the healthy receivers are what it measures")
	}
	if _, _, err := net.SplitHostPort(cfg.GRPC); err != nil {
		return fmt.Errorf("-grpc %q: want host:port, such as 127.0.0.1:9090", cfg.GRPC)
	}
	if cfg.GRPCConns < 1 || cfg.GRPCConns > cfg.Clients {
		return errors.New("-grpc-conns must be from 1 to -clients")
	}
	switch *strategy {
	case "short":
		report, err := ShortPoll(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, report)
		return nil
	case "long":
		report, err := LongPoll(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, report)
		return nil
	case "sse":
		report, err := SSE(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, report)
		return nil
	case "ws":
		report, err := WS(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, report)
		return nil
	case "webhook":
		report, err := Webhook(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, report)
		return nil
	case "grpc":
		report, err := GRPC(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, report)
		return nil
	}
	return fmt.Errorf("-strategy %q: this chapter generates: short, long, sse, ws, webhook, grpc", *strategy)
}

// newHTTPClient returns a client that keeps one connection per load client.
func newHTTPClient(clients int, timeout time.Duration) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = clients
	transport.MaxIdleConnsPerHost = clients
	transport.DisableCompression = true
	return &http.Client{Transport: transport, Timeout: timeout}
}

// publisher posts updates at rate per second until ctx ends.
func publisher(ctx context.Context, hc *http.Client, server *url.URL, rate float64, published *atomic.Int64) {
	if rate == 0 {
		return
	}
	ticker := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer ticker.Stop()
	endpoint := server.JoinPath("publish").String()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		resp, err := hc.Post(endpoint, "text/plain", strings.NewReader(fmt.Sprintf("load update %d", i)))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				published.Add(1)
			}
		}
	}
}

// samples collects durations from many goroutines.
type samples struct {
	mu   sync.Mutex
	all  []time.Duration
	errs atomic.Int64
}

func (s *samples) add(batch []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, batch...)
}

// summary renders count, rate and percentiles.
func (s *samples) summary(over time.Duration) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sorted := slices.Sorted(slices.Values(s.all))
	pct := func(p float64) time.Duration {
		if len(sorted) == 0 {
			return 0
		}
		return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
	}
	return fmt.Sprintf("%d answers (%.0f/s), %d errors; answer time p50 %v, p99 %v, max %v",
		len(sorted), float64(len(sorted))/over.Seconds(), s.errs.Load(),
		round(pct(0.50)), round(pct(0.99)), round(pct(1)))
}

// summaryOf renders how many of want answered and their percentiles.
func (s *samples) summaryOf(want int) string {
	sorted := slices.Sorted(slices.Values(s.all))
	pct := func(p float64) time.Duration {
		if len(sorted) == 0 {
			return 0
		}
		return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
	}
	return fmt.Sprintf("%d of %d clients answered; publish to answer p50 %v, p99 %v, max %v",
		len(sorted), want, round(pct(0.50)), round(pct(0.99)), round(pct(1)))
}

func round(d time.Duration) time.Duration {
	switch {
	case d > 10*time.Millisecond:
		return d.Round(time.Millisecond)
	default:
		return d.Round(10 * time.Microsecond)
	}
}

// jitter returns a random duration in [0, d), to spread client start times.
func jitter(d time.Duration) time.Duration { return rand.N(d) }

// decode reads one JSON value and drains the rest, so the connection is
// reused.
func decode(r io.Reader, v any) error {
	err := json.NewDecoder(r).Decode(v)
	_, _ = io.Copy(io.Discard, r)
	return err
}
