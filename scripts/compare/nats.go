package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A logKind is where the measured server keeps its update log: in its own
// memory (the default), or in a NATS JetStream stream of a NATS server run
// inside its process (-nats embedded), which every publish crosses.
type logKind struct {
	name   string   // as results.json names it
	flags  []string // the server's flags for it
	label  string   // added to a phase's description ("" for the default)
	suffix string   // added to a profile's file name
	banner string   // a line the server prints when it uses this log
}

var (
	memoryLog = logKind{name: "memory"}
	natsLog   = logKind{name: "nats", flags: []string{"-nats", "embedded"}, label: ", log in NATS", suffix: "-nats",
		banner: "log: NATS JetStream stream "}
)

// startServerWith starts the server with its log in lg, and flags added.
func startServerWith(ctx context.Context, bins binaries, lg logKind, flags ...string) (*serverProc, error) {
	srv, err := startServer(ctx, bins, append(slices.Clone(flags), lg.flags...)...)
	if err != nil || lg.banner == "" {
		return srv, err
	}
	// The server prints its log's line before it says where it serves.
	if !strings.Contains(srv.output.String(), lg.banner) {
		srv.stop()
		return nil, fmt.Errorf("the server started with %v did not say %q:\n%s", lg.flags, lg.banner, srv.output.String())
	}
	return srv, nil
}

// natsSize is how much of the broker hop's own workloads a size measures.
type natsSize struct {
	PublishFor time.Duration // how long each publish throughput run lasts, after a warm-up a tenth as long
	Publishers []int         // concurrent publishers of each run
	Broadcast  int           // SSE subscribers of the broadcast
	Rounds     int           // broadcasts measured
}

// NatsResults is what -nats measures: the latency runs again with the log in
// NATS JetStream (the ones with the log in memory are Results.Latency, of
// the same run), and the throughput of publishes and a broadcast with either
// log.
type NatsResults struct {
	// Latency is Results.Latency's runs, without the floor, against a
	// server with -nats embedded, each run right after the same rate's runs
	// with the log in memory. Their Bytes and Syscalls count the stream's
	// file writes too (the embedded NATS server writes the stream to files,
	// in the same process), so they do not compare with the memory runs';
	// their CPU includes the NATS server's.
	Latency   []LatencyResult `json:"latency"`
	Publish   []PublishResult `json:"publish"`
	Broadcast []LogFanout     `json:"broadcast"`
}

// PublishResult is POST /publish as fast as it is answered, by Publishers
// concurrent publishers on keep-alive connections of their own, for
// Elapsed, against a server with its log in Log.
type PublishResult struct {
	Log        string        `json:"log"` // memory or nats
	Publishers int           `json:"publishers"`
	Published  int           `json:"published"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	PerSecond  float64       `json:"per_second"`
	P50        time.Duration `json:"p50_ns"` // of a publish, from the request to the answer read
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
	// CPU is the server's CPU time per 1,000 publishes, seconds; -1 where
	// it was not measured.
	CPU float64 `json:"cpu_seconds_per_1000"`
}

// LogFanout is a broadcast, as FanoutResult, against a server with its log
// in Log.
type LogFanout struct {
	Log string `json:"log"`
	FanoutResult
}

// natsTotal is how many measurements -nats adds to a run of sz.
func natsTotal(sz size) int {
	return len(sz.Rates)*len(strategies) + 2*len(sz.Nats.Publishers) + 2
}

// measureNatsThroughput measures publish throughput and a broadcast to SSE
// subscribers, each with the log in memory and then in NATS, one right
// after the other, each against a server of its own.
func measureNatsThroughput(ctx context.Context, bins binaries, sz natsSize, p *progress, into *NatsResults) error {
	// The default run's phases name no log; these name both.
	label := func(lg logKind) string { return cmp.Or(lg.label, ", log in memory") }
	for _, n := range sz.Publishers {
		for _, lg := range []logKind{memoryLog, natsLog} {
			what := fmt.Sprintf("publish throughput%s: %s", label(lg), plural(n, "publisher"))
			p.phase(fmt.Sprintf("%s for %s", what, sz.PublishFor))
			res, err := measurePublish(ctx, bins, lg, n, sz.PublishFor)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			into.Publish = append(into.Publish, res)
			p.done(what)
		}
	}
	for _, lg := range []logKind{memoryLog, natsLog} {
		what := fmt.Sprintf("broadcast%s: sse to %d", label(lg), sz.Broadcast)
		p.phase(fmt.Sprintf("%s, %s", what, plural(sz.Rounds, "round")))
		fan, _, err := measureFanout(ctx, bins, lg, "sse", sz.Broadcast, sz.Rounds, false)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		into.Broadcast = append(into.Broadcast, LogFanout{Log: lg.name, FanoutResult: fan})
		p.done(what)
	}
	return nil
}

// measurePublish has n publishers POST /publish, each as soon as its last
// publish was answered, for d after a warm-up of d/10 that is not counted,
// against a server of its own with its log in lg.
func measurePublish(ctx context.Context, bins binaries, lg logKind, n int, d time.Duration) (PublishResult, error) {
	res := PublishResult{Log: lg.name, Publishers: n, CPU: -1}
	srv, err := startServerWith(ctx, bins, lg)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = n
	hc := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	endpoint := srv.base.JoinPath("publish").String()

	if _, err := publishFor(ctx, hc, endpoint, n, d/10); err != nil {
		return res, fmt.Errorf("warming up: %w", err)
	}
	before := srv.usage()
	start := time.Now()
	lat, err := publishFor(ctx, hc, endpoint, n, d)
	res.Elapsed = time.Since(start)
	after := srv.usage()
	if err != nil {
		return res, err
	}
	if len(lat) == 0 {
		return res, fmt.Errorf("no publish was answered in %s", d)
	}
	slices.Sort(lat)
	res.Published = len(lat)
	res.PerSecond = float64(len(lat)) / res.Elapsed.Seconds()
	res.P50, res.P99, res.Max = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
	if before.ok && after.ok && srv.pprof == "" {
		res.CPU = (after.cpu - before.cpu).Seconds() / float64(len(lat)) * 1000
	}
	return res, nil
}

// publishFor runs n publishers until d has passed, each publishing again as
// soon as its last publish was answered, and returns every publish's time.
// The first publish that fails stops them all.
func publishFor(ctx context.Context, hc *http.Client, endpoint string, n int, d time.Duration) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	end := time.Now().Add(d)
	lats := make([][]time.Duration, n)
	var (
		mu    sync.Mutex
		first error
	)
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				t := time.Now()
				if err := publishOnce(ctx, hc, endpoint, "publisher "+strconv.Itoa(w)+" update "+strconv.Itoa(i)); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel() // the others stop too
					return
				}
				lats[w] = append(lats[w], time.Since(t))
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return all, first
}

// publishOnce POSTs text to endpoint and reads the answer, which must be
// 201 Created.
func publishOnce(ctx context.Context, hc *http.Client, endpoint, text string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(text))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /publish: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func (n *NatsResults) latency(strategy string, rate float64) (LatencyResult, bool) {
	for _, l := range n.Latency {
		if l.Strategy == strategy && l.Rate == rate {
			return l, true
		}
	}
	return LatencyResult{}, false
}

func (n *NatsResults) publish(log string, publishers int) (PublishResult, bool) {
	for _, p := range n.Publish {
		if p.Log == log && p.Publishers == publishers {
			return p, true
		}
	}
	return PublishResult{}, false
}

func (n *NatsResults) broadcast(log string) (LogFanout, bool) {
	for _, b := range n.Broadcast {
		if b.Log == log {
			return b, true
		}
	}
	return LogFanout{}, false
}

// NatsMarkdown is the broker hop's table, for the compare-nats markers; ""
// when the run did not measure it.
func (r *Results) NatsMarkdown() string {
	n := r.Nats
	if n == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `go run ./scripts/compare -nats` (size %s) on %s: %s.\n", r.Size, r.Date.Format("2006-01-02"), r.Machine)
	b.WriteString("Each figure with the log in NATS JetStream beside the same with the log in memory, measured in the same run one right after the other; " +
		"× is NATS / memory.\n\n")

	rates := r.rates()
	b.WriteString("**Publish to receipt, one subscriber**, measured as in the table above. With NATS (`-nats embedded`), the server publishes each update " +
		"to a JetStream stream of a NATS server running inside its process, waits for the stream's acknowledgement, and delivers it once its ordered consumer " +
		"has read it back into the server's copy of the log; nothing else changes. The server's CPU time includes the NATS server's.\n\n| strategy |")
	for _, rate := range rates {
		fmt.Fprintf(&b, " %g/s p50 / p99, memory | NATS | × |", rate)
	}
	cpuRate := 0.0
	if len(rates) > 0 {
		cpuRate = rates[len(rates)-1]
		fmt.Fprintf(&b, " CPU ms per update at %g/s, memory | NATS | × |", cpuRate)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", 3*len(rates)+3*min(len(rates), 1)) + "\n")
	for _, s := range strategies {
		fmt.Fprintf(&b, "| %s |", displayName(s))
		for _, rate := range rates {
			m, okm := r.latency(s, rate)
			x, okx := n.latency(s, rate)
			if !okm || !okx {
				b.WriteString(" — | — | — |")
				continue
			}
			fmt.Fprintf(&b, " %s / %s | %s / %s | %s / %s |", ms(m.P50), ms(m.P99), ms(x.P50), ms(x.P99), ratio(x.P50, m.P50), ratio(x.P99, m.P99))
		}
		if len(rates) > 0 {
			m, okm := r.latency(s, cpuRate)
			x, okx := n.latency(s, cpuRate)
			if !okm || !okx {
				b.WriteString(" — | — | — |")
			} else {
				fmt.Fprintf(&b, " %s | %s | %s |", orDash(m.CPU, "%.2f"), orDash(x.CPU, "%.2f"), ratioOf(x.CPU, m.CPU))
			}
		}
		b.WriteString("\n")
	}

	var publishers []int
	for _, p := range n.Publish {
		if !slices.Contains(publishers, p.Publishers) {
			publishers = append(publishers, p.Publishers)
		}
	}
	b.WriteString("\n**Throughput.** Publishers POST /publish, each again as soon as its last publish was answered, on keep-alive connections of their own")
	if len(n.Publish) > 0 {
		fmt.Fprintf(&b, ", for %s each after a warm-up", seconds(n.Publish[0].Elapsed.Round(time.Second/10)))
	}
	b.WriteString(", against a server of their own with each log; a publish is answered once the update is in the log (with NATS: acknowledged by the stream " +
		"and read back). The broadcast is the table above's, by the chapter's load generator: from the publish until each SSE subscriber has the update, " +
		"the median of the rounds' p50 and p99, the longest of all.\n\n")
	b.WriteString("| | memory | NATS | × |\n|---|---:|---:|---:|\n")
	for _, count := range publishers {
		m, okm := n.publish(memoryLog.name, count)
		x, okx := n.publish(natsLog.name, count)
		if !okm || !okx {
			continue
		}
		who := plural(count, "publisher")
		fmt.Fprintf(&b, "| publishes per second, %s | %s | %s | %s |\n", who, thousands(int(math.Round(m.PerSecond))), thousands(int(math.Round(x.PerSecond))), ratioOf(x.PerSecond, m.PerSecond))
		fmt.Fprintf(&b, "| a publish, p50 / p99, %s | %s / %s | %s / %s | %s / %s |\n", who, ms(m.P50), ms(m.P99), ms(x.P50), ms(x.P99), ratio(x.P50, m.P50), ratio(x.P99, m.P99))
		fmt.Fprintf(&b, "| server CPU ms per publish, %s | %s | %s | %s |\n", who, orDash(m.CPU, "%.3f"), orDash(x.CPU, "%.3f"), ratioOf(x.CPU, m.CPU))
	}
	if m, ok := n.broadcast(memoryLog.name); ok {
		if x, ok := n.broadcast(natsLog.name); ok && (m.Skipped != "" || x.Skipped != "") {
			fmt.Fprintf(&b, "| broadcast to %s SSE subscribers | not run: %s | | |\n", thousands(m.Subscribers), cmp.Or(m.Skipped, x.Skipped))
		} else if ok {
			fmt.Fprintf(&b, "| broadcast to %s SSE subscribers, p50 / p99 / max (%s) | %s / %s / %s | %s / %s / %s | %s / %s / %s |\n",
				thousands(m.Subscribers), plural(m.Rounds, "round"), ms(m.P50), ms(m.P99), ms(m.Max), ms(x.P50), ms(x.P99), ms(x.Max),
				ratio(x.P50, m.P50), ratio(x.P99, m.P99), ratio(x.Max, m.Max))
		}
	}
	return b.String()
}

// ratioOf is a / b, or a dash where either was not measured.
func ratioOf(a, b float64) string {
	if a < 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// plural is "1 publisher", "16 publishers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return thousands(n) + " " + noun + "s"
}
