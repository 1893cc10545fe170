package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"realtime/06-grpc/client"
)

// LatencyResult is one subscriber receiving updates published at a rate.
// Updates are due on a Poisson schedule that never waits for the client, so
// a stall shows in the percentiles instead of thinning the samples
// (coordinated omission). Latency runs from the publish to the time the
// client printed the update; where the publisher was held up past an
// update's due time (the server stopped reading what it is sent), from the
// due time, so that the wait counts too. A timer that fires late is the
// harness's own delay, not the server's: Linux's timers wake Go up to a
// millisecond late, more than the whole floor.
type LatencyResult struct {
	Strategy string        `json:"strategy"`
	Rate     float64       `json:"rate"`
	Updates  int           `json:"updates"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
	// Delivery is the p50 of the strategy's own part: from the server's
	// publish (the time the update carries) to the client's print; the
	// rest is the way in, the same for every strategy (for the floor, from
	// its relay's read of the line).
	Delivery time.Duration `json:"delivery_p50_ns"`

	// Requests is the HTTP requests per delivered update, while the
	// subscriber was connected: polls, webhook deliveries, a webhook
	// receiver's checks; a stream's one request is before the first.
	Requests float64 `json:"requests_per_update"`
	// Bytes is what crossed the server's sockets per delivered update,
	// both directions, HTTP headers and framing included; for the floor,
	// the bytes it writes. -1 where it was not measured.
	Bytes float64 `json:"bytes_per_update"`
	// CPU is the server's CPU time per 1,000 delivered updates, seconds;
	// -1 where it was not measured.
	CPU float64 `json:"cpu_seconds_per_1000"`
	// Syscalls is the server's read and write system calls per delivered
	// update, less the two of its input (the line read from stdin, the
	// "published" line printed); -1 where it was not measured.
	Syscalls float64 `json:"syscalls_per_update"`
}

// shortPollInterval and longPollWait are the client's defaults: what a
// user who types go run ./cmd/client gets.
const (
	shortPollInterval = time.Second
	longPollWait      = 30 * time.Second
)

// measureLatency publishes rr.Updates updates into a server of its own,
// with its log in lg, through its stdin, to one client of strategy. Once
// the client is connected it calls ready, which returns when the
// measurement may start.
func measureLatency(ctx context.Context, bins binaries, lg logKind, strategy string, rr rateRun, ready func()) (LatencyResult, error) {
	res := LatencyResult{Strategy: strategy, Rate: rr.Rate, Updates: rr.Updates, Bytes: -1, CPU: -1, Syscalls: -1}
	srv, err := startServerWith(ctx, bins, lg)
	if err != nil {
		return res, err
	}
	defer srv.stop()

	requests := &countingTransport{next: http.DefaultTransport.(*http.Transport).Clone()}
	hc := &http.Client{Transport: requests}
	defer hc.CloseIdleConnections()
	cfg := client.Config{Server: srv.base, HTTP: hc, GRPC: srv.grpcAddr, Interval: shortPollInterval, Wait: longPollWait}
	got, stop, err := subscribe(ctx, srv, strategy, cfg, rr.Updates+1)
	if err != nil {
		return res, err
	}
	defer stop()
	ready()

	before, stdinBefore, printedBefore := srv.usage(), srv.stdinN.Load(), srv.printed.Load()
	requests.n.Store(0)
	profiled := func() error { return nil }
	if !rr.Concurrent && srv.pprof != "" {
		profiled = bins.prof.cpu(ctx, srv.pprof, fmt.Sprintf("cpu-%g-per-s-%s%s.pprof", rr.Rate, strategy, lg.suffix),
			time.Duration(math.Ceil(float64(rr.Updates)/rr.Rate))*time.Second)
	}
	err = schedule(ctx, rr, func(i int, from time.Time) error {
		got.expect(i, from)
		return srv.publish("update " + strconv.Itoa(i))
	})
	if err != nil {
		return res, err
	}
	patience := 30*time.Second + 2*shortPollInterval
	if err := got.wait(ctx, rr.Updates+1, patience); err != nil {
		return res, fmt.Errorf("%w: %d of %d updates received", err, got.count()-1, rr.Updates)
	}
	after := srv.usage()
	if err := profiled(); err != nil {
		return res, err
	}

	lat, delivery := got.latencies(1)
	res.P50, res.P99, res.Max = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
	res.Delivery = percentile(delivery, 0.50)
	n := float64(rr.Updates)
	res.Requests = float64(requests.n.Load()) / n
	if strategy == "webhook" {
		res.Requests += 1 // the server's POST of each update, which this client answers
	}
	if before.ok && after.ok && srv.pprof == "" {
		// A profiled server's counts would hold the profile's own traffic
		// and the profiler's CPU.
		res.Bytes = float64(srv.socketBytes(before, after, stdinBefore, printedBefore)) / n
		res.CPU = (after.cpu - before.cpu).Seconds() / n * 1000
		res.Syscalls = float64(after.syscalls-before.syscalls)/n - 2
	}
	return res, nil
}

// subscribe runs a client of strategy with cfg, printing into receipts
// with room for n updates, until stop is called (more than once is fine).
// It returns once the client has printed "update 0", which it publishes
// into srv: the update that proves the subscriber connected, before any
// that are measured.
func subscribe(ctx context.Context, srv *serverProc, strategy string, cfg client.Config, n int) (got *receipts, stop func(), err error) {
	receiver, err := client.NewStrategy(strategy, cfg)
	if err != nil {
		return nil, nil, err
	}
	got = newReceipts(n)
	session := client.NewSession(client.SessionOptions{Strategy: strategy, JSON: true, Stdout: got, Stderr: io.Discard})
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = client.Run(runCtx, receiver, session, client.DefaultBackoff(), io.Discard)
	}()
	stop = sync.OnceFunc(func() { cancel(); <-ran })
	if err := srv.publish("update 0"); err != nil {
		stop()
		return nil, nil, err
	}
	got.expect(0, time.Now())
	if err := got.wait(ctx, 1, 30*time.Second); err != nil {
		stop()
		return nil, nil, fmt.Errorf("the client did not receive its first update: %w", err)
	}
	return got, stop, nil
}

// startFloorRelay starts this program as the floor's relay with conns
// connections to addr. Its stderr is kept for an error; stop closes its
// stdin, at which it ends, and waits for it.
func startFloorRelay(ctx context.Context, addr string, conns int) (stdin io.WriteCloser, stderr *lockedBuffer, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", floorRelayEnv, addr, conns))
	if stdin, err = cmd.StdinPipe(); err != nil {
		return nil, nil, nil, err
	}
	stderr = &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	return stdin, stderr, func() {
		stdin.Close()
		_ = cmd.Wait()
	}, nil
}

// measureFloor is the floor of the same path with nothing on it: each
// update is a line written to a process's stdin, as the server's are, and
// that process writes it to a loopback TCP connection back to this one, as
// the server sends an update to a client. The process is this program,
// started as floorRelay; no strategy can carry an update from here through
// a server and back faster on this machine.
func measureFloor(ctx context.Context, rr rateRun, ready func()) (LatencyResult, error) {
	res := LatencyResult{Strategy: floor, Rate: rr.Rate, Updates: rr.Updates, CPU: -1, Syscalls: 1}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	defer l.Close()
	stdin, stderr, stop, err := startFloorRelay(ctx, l.Addr().String(), 1)
	if err != nil {
		return res, err
	}
	defer stop()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	var reader net.Conn
	select {
	case c, ok := <-accepted:
		if !ok {
			return res, fmt.Errorf("accept failed")
		}
		reader = c
	case <-time.After(10 * time.Second):
		return res, fmt.Errorf("the floor's relay did not connect within 10s: %s", stderr.String())
	}
	defer reader.Close()

	got := newReceipts(rr.Updates)
	var written atomic.Int64
	go func() {
		lines := bufio.NewScanner(reader)
		for lines.Scan() {
			written.Add(int64(len(lines.Bytes()) + 1))
			_, _ = got.Write(lines.Bytes())
		}
	}()
	ready()
	err = schedule(ctx, rr, func(i int, from time.Time) error {
		got.expect(i, from)
		_, err := fmt.Fprintf(stdin, "update %d\n", i)
		return err
	})
	if err != nil {
		return res, err
	}
	if err := got.wait(ctx, rr.Updates, 10*time.Second); err != nil {
		return res, err
	}
	lat, delivery := got.latencies(1)
	res.P50, res.P99, res.Max = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
	res.Delivery = percentile(delivery, 0.50)
	res.Bytes = float64(written.Load()) / float64(rr.Updates)
	return res, nil
}

// floorRelayEnv, in the environment, starts this program as the floor's
// relay: "ADDRESS" or "ADDRESS CONNECTIONS".
const floorRelayEnv = "COMPARE_FLOOR_RELAY"

// relayIfAsked runs this program as the floor's relay and exits, if the
// environment asks for it.
func relayIfAsked() {
	spec := os.Getenv(floorRelayEnv)
	if spec == "" {
		return
	}
	addr, n, _ := strings.Cut(spec, " ")
	conns, err := strconv.Atoi(n)
	if n == "" {
		conns, err = 1, nil
	}
	if err == nil {
		err = floorRelay(addr, conns, os.Stdin)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare floor relay:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// floorRelay opens conns TCP connections to addr and writes each line of
// stdin to every one of them in turn, as an update's JSON the way the
// server's event stream carries it, until EOF: the least a server can do
// to broadcast.
func floorRelay(addr string, conns int, stdin io.Reader) error {
	var out []net.Conn
	defer func() {
		for _, c := range out {
			c.Close()
		}
	}()
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		out = append(out, c)
	}
	lines := bufio.NewScanner(stdin)
	for id := 1; lines.Scan(); id++ {
		data, _ := json.Marshal(struct {
			ID   int       `json:"id"`
			Data string    `json:"data"`
			Time time.Time `json:"time"`
		}{id, lines.Text(), time.Now().UTC()}) // plain values: cannot fail
		data = append(data, '\n')
		for _, c := range out {
			if _, err := c.Write(data); err != nil {
				return err
			}
		}
	}
	return lines.Err()
}

// schedule calls publish for updates 1 to rr.Updates, each at its due time
// on a Poisson schedule of rr.Rate, with the time its latency counts from:
// now, or its due time where the previous publish returned after it.
func schedule(ctx context.Context, rr rateRun, publish func(i int, from time.Time) error) error {
	due := time.Now()
	var returned time.Time
	for i := 1; i <= rr.Updates; i++ {
		due = due.Add(time.Duration(rand.ExpFloat64() / rr.Rate * float64(time.Second)))
		if err := sleepUntil(ctx, due); err != nil {
			return err
		}
		from := time.Now()
		if returned.After(due) {
			from = due
		}
		if err := publish(i, from); err != nil {
			return err
		}
		returned = time.Now()
	}
	return nil
}

// sleepUntil sleeps until t, or returns at once if t has passed.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// receipts is a client's -json output: a line per update "update N",
// timed as it is written, against the time update N's latency counts from
// and the time the server published it.
type receipts struct {
	mu        sync.Mutex
	from      map[int]time.Time
	published map[int]time.Time
	received  map[int]time.Time
	changed   chan struct{} // closed and replaced on every receipt
}

func newReceipts(n int) *receipts {
	return &receipts{from: make(map[int]time.Time, n), published: make(map[int]time.Time, n),
		received: make(map[int]time.Time, n), changed: make(chan struct{})}
}

func (r *receipts) expect(i int, from time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.from[i] = from
}

// Write takes one line of the client's output. A line that is not an
// update of this run, or one printed twice, fails the write: the client
// would report it, and the run is wrong.
func (r *receipts) Write(line []byte) (int, error) {
	now := time.Now()
	var u struct {
		Data string
		Time time.Time
	}
	if err := json.Unmarshal(line, &u); err != nil {
		return 0, fmt.Errorf("unexpected line %q: %w", line, err)
	}
	n, ok := strings.CutPrefix(u.Data, "update ")
	i, err := strconv.Atoi(n)
	if !ok || err != nil {
		return 0, fmt.Errorf("unexpected line %q", line)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.received[i]; dup {
		return 0, fmt.Errorf("update %d printed twice", i)
	}
	r.received[i], r.published[i] = now, u.Time
	close(r.changed)
	r.changed = make(chan struct{})
	return len(line), nil
}

func (r *receipts) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.received)
}

// wait returns once n updates have been received, or fails after patience
// without one arriving.
func (r *receipts) wait(ctx context.Context, n int, patience time.Duration) error {
	for {
		r.mu.Lock()
		have, changed := len(r.received), r.changed
		r.mu.Unlock()
		if have >= n {
			return nil
		}
		timer := time.NewTimer(patience)
		select {
		case <-changed:
			timer.Stop()
		case <-timer.C:
			return fmt.Errorf("no update for %s", patience)
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
}

// latencies are the sorted latencies of updates from first on, and the
// sorted times from their publish to their receipt.
func (r *receipts) latencies(first int) (total, delivery []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, at := range r.received {
		if i >= first {
			total = append(total, at.Sub(r.from[i]))
			delivery = append(delivery, at.Sub(r.published[i]))
		}
	}
	slices.Sort(total)
	slices.Sort(delivery)
	return total, delivery
}

// percentile is the nearest-rank percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// countingTransport counts the requests it carries.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

func (t *countingTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
