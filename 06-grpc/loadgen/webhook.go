package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"realtime/06-grpc/webhook"
)

// Webhook registers cfg.Clients receivers, each on a listener of its own,
// and measures what they receive: updates published at cfg.PublishRate for
// cfg.Duration (deliveries per second, and the bytes and requests each costs
// at the receivers' sockets), then cfg.Rounds broadcasts, then, with
// cfg.Failing, the broadcasts again while that many receivers answer 500 to
// every delivery: what a failing receiver costs the healthy ones.
func Webhook(ctx context.Context, cfg Config) (string, error) {
	hc := newHTTPClient(1, 30*time.Second) // for publishing and registering
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	start, err := publishOne(ctx, hc, cfg, "before the receivers")
	if err != nil {
		return "", err
	}
	pool := &receiverPool{}
	defer pool.close(ctx, hc, cfg)
	for range cfg.Clients {
		if err := pool.add(ctx, hc, cfg, start); err != nil {
			return "", err
		}
	}

	// One update first, not measured, so that every receiver's connection
	// is open: the run measures deliveries, not 1,000 TCP handshakes at once.
	warmUp := newBroadcasts(1)
	pool.onReceipt(func(receipt) { warmUp.received() })
	warm := cfg
	warm.Rounds = 1
	if err := warmUp.measure(ctx, hc, warm, io.Discard, func() error { return nil }); err != nil {
		return "", err
	}

	var report strings.Builder
	steadyUpdates := int(cfg.PublishRate * cfg.Duration.Seconds())
	fmt.Fprintf(&report, "webhook: %d receivers, %d updates at %g/s, %d broadcasts", cfg.Clients, steadyUpdates, cfg.PublishRate, cfg.Rounds)
	if cfg.Failing > 0 {
		fmt.Fprintf(&report, ", then %d broadcasts with %s failing", cfg.Rounds, plural(cfg.Failing, "receiver"))
	}
	report.WriteString("\n")
	if err := pool.steady(ctx, hc, cfg, steadyUpdates, &report); err != nil {
		return "", err
	}
	healthy := newBroadcasts(cfg.Rounds)
	pool.onReceipt(func(receipt) { healthy.received() })
	if err := healthy.measure(ctx, hc, cfg, &report, func() error { return nil }); err != nil {
		return "", err
	}

	if cfg.Failing > 0 {
		for _, r := range pool.receivers[:cfg.Failing] {
			r.failing.Store(true)
		}
		rest := cfg
		rest.Clients -= cfg.Failing
		failing := newBroadcasts(cfg.Rounds)
		pool.onReceipt(func(receipt) { failing.received() })
		var lines strings.Builder
		if err := failing.measure(ctx, hc, rest, &lines, func() error { return nil }); err != nil {
			return "", err
		}
		for line := range strings.Lines(lines.String()) {
			fmt.Fprintf(&report, "%d failing, %s", cfg.Failing, line)
		}
		without, with := healthy.medianP99(), failing.medianP99()
		fmt.Fprintf(&report, "healthy receivers' p99, median of the broadcasts: %v with none failing, %v with %d failing (%.2f×)\n",
			round(without), round(with), cfg.Failing, float64(with)/float64(max(without, 1)))
	}
	fmt.Fprintf(&report, "errors: %d", pool.errs.Load())
	return report.String(), nil
}

// receiverTimeout bounds how long a receiver reads one delivery. The server
// gives a delivery 10 seconds; a receiver that waited longer would only
// answer a sender that has already given up.
const receiverTimeout = 10 * time.Second

// receiverPool is the receiving end of many registrations. Each receiver
// has a listener, and so a host:port, of its own, as separate integrations
// would: the server keeps one idle connection per host, and receivers
// sharing one listener would measure that limit, not the deliveries.
type receiverPool struct {
	receivers []*receiver
	receipt   atomic.Pointer[func(receipt)] // what an accepted delivery counts toward now
	errs      atomic.Int64                  // refused signatures, deliveries out of order or not an update
	requests  atomic.Int64                  // every delivery attempt, failed ones included
	wire      atomic.Int64                  // bytes read and written on the receivers' connections
}

// receipt is one accepted delivery: the update's time, as the server
// stamped it when it was published, and when it arrived.
type receipt struct {
	published, at time.Time
}

// receiver is one registration and the endpoint it delivers to.
type receiver struct {
	pool    *receiverPool
	srv     *http.Server
	id      string // the registration's, for DELETE /webhooks/{id}
	secret  webhook.Secret
	last    atomic.Uint64 // the last update accepted: a delivery is never older
	failing atomic.Bool   // answer 500 to every delivery
}

func (p *receiverPool) onReceipt(f func(receipt)) { p.receipt.Store(&f) }

// add starts a receiver and registers it after the given id. It serves
// only once it holds its secret; a delivery that comes sooner waits in the
// listener's queue.
func (p *receiverPool) add(ctx context.Context, hc *http.Client, cfg Config, after uint64) error {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r := &receiver{pool: p}
	r.srv = &http.Server{Handler: r, ReadTimeout: receiverTimeout}
	registration, err := register(ctx, hc, cfg, "http://"+listener.Addr().String()+"/hook", after)
	if err != nil {
		listener.Close()
		return err
	}
	if r.secret, err = webhook.ParseSecret(registration.Secret); err != nil {
		listener.Close()
		return err
	}
	r.id = registration.ID
	p.receivers = append(p.receivers, r)
	go func() { _ = r.srv.Serve(&countingListener{Listener: listener, bytes: &p.wire}) }()
	return nil
}

// register POSTs /webhooks for url, after the given id.
func register(ctx context.Context, hc *http.Client, cfg Config, url string, after uint64) (registration struct{ ID, Secret string }, err error) {
	body, _ := json.Marshal(map[string]any{"url": url, "after": after}) // plain values: cannot fail
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Server.JoinPath("webhooks").String(), bytes.NewReader(body))
	if err != nil {
		return registration, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return registration, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return registration, fmt.Errorf("register %s: %s: %s", url, resp.Status, bytes.TrimSpace(answer))
	}
	err = decode(resp.Body, &registration)
	return registration, err
}

// ServeHTTP receives one delivery: it verifies the signature over the raw
// body, checks the order, answers 204 and only then counts the receipt, so
// that the answer's bytes are on the wire by the time the run adds them up.
func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.pool.requests.Add(1)
	body, err := io.ReadAll(req.Body)
	at := time.Now()
	if err != nil {
		return
	}
	if r.failing.Load() {
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	if err := r.secret.Verify(req.Header, body, at); err != nil {
		r.pool.errs.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var update struct {
		ID   uint64    `json:"id"`
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(body, &update) != nil || update.ID == 0 || update.ID <= r.last.Swap(update.ID) {
		r.pool.errs.Add(1) // a reset, or a duplicate: neither should happen in a run
	}
	w.WriteHeader(http.StatusNoContent)
	http.NewResponseController(w).Flush() //nolint:errcheck // the receipt counts either way
	(*r.pool.receipt.Load())(receipt{published: update.Time, at: at})
}

// steady publishes n updates at cfg.PublishRate, waits until every receiver
// has them all, and reports the deliveries per second, their latency from
// the update's time to its receipt, and their cost at the receivers' sockets.
func (p *receiverPool) steady(ctx context.Context, hc *http.Client, cfg Config, n int, report io.Writer) error {
	var (
		mu        sync.Mutex
		latencies samples
		last      time.Time
		delivered atomic.Int64
	)
	p.onReceipt(func(r receipt) {
		mu.Lock()
		latencies.all = append(latencies.all, r.at.Sub(r.published))
		if r.at.After(last) {
			last = r.at
		}
		mu.Unlock()
		delivered.Add(1)
	})
	requests, wire := p.requests.Load(), p.wire.Load()
	want := int64(n * cfg.Clients)
	first := time.Now()
	if n > 0 {
		ticker := time.NewTicker(time.Duration(float64(time.Second) / cfg.PublishRate))
		defer ticker.Stop()
		for i := range n {
			if _, err := publishOne(ctx, hc, cfg, fmt.Sprintf("steady %d", i+1)); err != nil {
				return err
			}
			if i < n-1 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-ticker.C:
				}
			}
		}
	}
	deadline := time.Now().Add(broadcastTimeout)
	for delivered.Load() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	got := delivered.Load()
	took := last.Sub(first)
	fmt.Fprintf(report, "steady: %d of %d deliveries in %v (%.0f/s); update time to receipt %s\n",
		got, want, round(took), float64(got)/max(took.Seconds(), 1e-9), latencies.percentiles())
	perDelivery := func(v int64) float64 { return float64(v) / float64(max(got, 1)) }
	fmt.Fprintf(report, "wire: %.2f requests, %.0f bytes per delivery (both directions, headers included)\n",
		perDelivery(p.requests.Load()-requests), perDelivery(p.wire.Load()-wire))
	return nil
}

// close deletes every registration, so that the server stops delivering,
// then stops the receivers.
func (p *receiverPool) close(ctx context.Context, hc *http.Client, cfg Config) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), broadcastTimeout)
	defer cancel()
	for _, r := range p.receivers {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, cfg.Server.JoinPath("webhooks", r.id).String(), nil)
		if err != nil {
			continue
		}
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	for _, r := range p.receivers {
		r.srv.Close()
	}
}

// percentiles renders p50, p99 and max of the samples; the caller holds
// what guards them.
func (s *samples) percentiles() string {
	sorted := slices.Sorted(slices.Values(s.all))
	pct := func(p float64) time.Duration {
		if len(sorted) == 0 {
			return 0
		}
		return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
	}
	return fmt.Sprintf("p50 %v, p99 %v, max %v", round(pct(0.50)), round(pct(0.99)), round(pct(1)))
}

// medianP99 is the median of the rounds' p99s: one slow round on a shared
// machine moves it less than it moves the mean.
func (b *broadcasts) medianP99() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var p99s []time.Duration
	for i := range b.rounds {
		sorted := slices.Sorted(slices.Values(b.rounds[i].all))
		if len(sorted) > 0 {
			p99s = append(p99s, sorted[min(len(sorted)-1, int(0.99*float64(len(sorted))))])
		}
	}
	if len(p99s) == 0 {
		return 0
	}
	slices.Sort(p99s)
	return (p99s[(len(p99s)-1)/2] + p99s[len(p99s)/2]) / 2
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// countingListener counts every byte read and written on its connections:
// the deliveries as the socket sees them, headers included.
type countingListener struct {
	net.Listener
	bytes *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, bytes: l.bytes}, nil
}

type countingConn struct {
	net.Conn
	bytes *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.bytes.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.bytes.Add(int64(n))
	return n, err
}
