package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FanoutResult is broadcasts to many subscribers at once: for each, the time
// from the publish until each subscriber has the update, the median of the
// rounds' p50 and p99, and the longest of all.
type FanoutResult struct {
	Strategy    string        `json:"strategy"`
	Subscribers int           `json:"subscribers"`
	Rounds      int           `json:"rounds"`
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
	Skipped     string        `json:"skipped,omitempty"` // why it was not measured
}

// IdleResult is what the server holds per idle subscriber, from the
// broadcast run with the most subscribers.
type IdleResult struct {
	Strategy    string  `json:"strategy"`
	Subscribers int     `json:"subscribers"`
	Goroutines  float64 `json:"goroutines"`
	HeapKiB     float64 `json:"heap_kib"`
	StackKiB    float64 `json:"stack_kib"`
}

// measureFanout runs the chapter's load generator (cmd/loadgen), in a
// process of its own, against a server of its own with its log in lg: n
// subscribers of strategy, then rounds broadcasts. The load generator holds
// a socket per subscriber, and a webhook receiver needs two (its listener
// and the connection it accepts), so it runs apart from this process's
// files.
func measureFanout(ctx context.Context, bins binaries, lg logKind, strategy string, n, rounds int, profile bool) (FanoutResult, *IdleResult, error) {
	res := FanoutResult{Strategy: strategy, Subscribers: n, Rounds: rounds}
	if need, have := filesNeeded(strategy, n), openFileLimit(); have > 0 && need > have {
		res.Skipped = fmt.Sprintf("needs about %d open files in the load generator, this machine allows %d", need, have)
		return res, nil, nil
	}
	srv, err := startServerWith(ctx, bins, lg,
		"-max-held", strconv.Itoa(2*n+100), "-max-webhooks", strconv.Itoa(n+10), "-max-streams", strconv.Itoa(2*n+100))
	if err != nil {
		return res, nil, err
	}
	defer srv.stop()

	name, conns := strategy, 1
	if strategy == grpcConnEach {
		name, conns = "grpc", n
	}
	args := []string{"-server", srv.base.String(), "-grpc", srv.grpcAddr, "-strategy", name,
		"-clients", strconv.Itoa(n), "-rounds", strconv.Itoa(rounds), "-ramp", "3000",
		"-grpc-conns", strconv.Itoa(conns), "-publish-rate", "0", "-duration", "1s"}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bins.loadgen, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	profiled := func() error { return nil }
	if profile {
		// Long enough for the connections, the broadcasts and the hang-ups
		// of 10,000 subscribers on 2 cores.
		profiled = bins.prof.cpu(ctx, srv.pprof, fmt.Sprintf("cpu-broadcast-%d-%s%s.pprof", n, strategy, lg.suffix), 20*time.Second)
	}
	if err := cmd.Run(); err != nil {
		return res, nil, fmt.Errorf("loadgen %v: %w\n%s%s", args, err, stdout.Bytes(), stderr.Bytes())
	}
	if err := profiled(); err != nil {
		return res, nil, err
	}
	return parseLoadgen(res, stdout.String())
}

var (
	broadcastLine = regexp.MustCompile(`(?m)^broadcast \d+: (\d+) of (\d+) clients answered; publish to answer p50 (\S+), p99 (\S+), max (\S+)$`)
	idleLine      = regexp.MustCompile(`(?m)^server while holding them: ([0-9.]+) goroutines, ([0-9.]+) KiB heap, ([0-9.]+) KiB stack per `)
	errorsLine    = regexp.MustCompile(`(?m)^errors: (\d+)$`)
)

// parseLoadgen reads the load generator's report into res, and the cost of
// an idle subscriber where the report has it.
func parseLoadgen(res FanoutResult, report string) (FanoutResult, *IdleResult, error) {
	fail := func(format string, args ...any) (FanoutResult, *IdleResult, error) {
		return res, nil, fmt.Errorf(format+" in the load generator's report:\n%s", append(args, report)...)
	}
	if m := errorsLine.FindStringSubmatch(report); m == nil {
		return fail("no errors line")
	} else if m[1] != "0" {
		return fail("%s errors", m[1])
	}
	var p50s, p99s []time.Duration
	for _, m := range broadcastLine.FindAllStringSubmatch(report, -1) {
		if m[1] != m[2] {
			return fail("a broadcast that reached %s of %s", m[1], m[2])
		}
		var d [3]time.Duration
		for i, s := range m[3:6] {
			v, err := time.ParseDuration(s)
			if err != nil {
				return fail("%q", s)
			}
			d[i] = v
		}
		p50s, p99s = append(p50s, d[0]), append(p99s, d[1])
		res.Max = max(res.Max, d[2])
	}
	if len(p50s) != res.Rounds {
		return fail("%d broadcasts where %d were asked for", len(p50s), res.Rounds)
	}
	res.P50, res.P99 = median(p50s), median(p99s)

	m := idleLine.FindStringSubmatch(report)
	if m == nil {
		return res, nil, nil // webhooks: the server holds no connection while idle
	}
	idle := &IdleResult{Strategy: res.Strategy, Subscribers: res.Subscribers}
	for i, p := range []*float64{&idle.Goroutines, &idle.HeapKiB, &idle.StackKiB} {
		v, err := strconv.ParseFloat(m[i+1], 64)
		if err != nil {
			return fail("%q", m[i+1])
		}
		*p = v
	}
	return res, idle, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// filesNeeded is about how many files the load generator opens for n
// subscribers of strategy.
func filesNeeded(strategy string, n int) int {
	switch strategy {
	case "webhook":
		return 2*n + 100
	case "grpc":
		return 100
	}
	return n + 100
}

// measureFloorFanout is the floor of a broadcast to n subscribers: a
// process (this program, as the floor's relay) holds n loopback connections
// to this one and writes each line of its stdin to every one of them in
// turn, and this process times each connection's receipt from the write to
// the relay's stdin.
func measureFloorFanout(ctx context.Context, n, rounds int) (FanoutResult, error) {
	res := FanoutResult{Strategy: floor, Subscribers: n, Rounds: rounds}
	if need, have := n+100, openFileLimit(); have > 0 && need > have {
		res.Skipped = fmt.Sprintf("needs about %d open files, this machine allows %d", need, have)
		return res, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	defer l.Close()
	stdin, stderr, stop, err := startFloorRelay(ctx, l.Addr().String(), n)
	if err != nil {
		return res, err
	}
	defer stop()

	// received[k][i] is when connection i had round k; done[k] is closed
	// when every connection has.
	received := make([][]time.Time, rounds)
	done := make([]chan struct{}, rounds)
	left := make([]atomic.Int64, rounds)
	for k := range rounds {
		received[k] = make([]time.Time, n)
		done[k] = make(chan struct{})
		left[k].Store(int64(n))
	}
	var readers sync.WaitGroup
	defer readers.Wait()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		if tcp, ok := l.(*net.TCPListener); ok {
			_ = tcp.SetDeadline(time.Now().Add(30 * time.Second))
		}
		c, err := l.Accept()
		if err != nil {
			return res, fmt.Errorf("the floor's relay opened %d of %d connections: %w (%s)", i, n, err, stderr.String())
		}
		conns = append(conns, c)
		readers.Go(func() {
			lines := bufio.NewScanner(c)
			for lines.Scan() {
				at := time.Now()
				var u struct{ Data string }
				k, err := -1, json.Unmarshal(lines.Bytes(), &u)
				if err == nil {
					k, err = strconv.Atoi(strings.TrimPrefix(u.Data, "round "))
				}
				if err != nil || k < 0 || k >= rounds {
					continue
				}
				received[k][i] = at
				if left[k].Add(-1) == 0 {
					close(done[k])
				}
			}
		})
	}

	var p50s, p99s []time.Duration
	for k := range rounds {
		start := time.Now()
		if _, err := fmt.Fprintf(stdin, "round %d\n", k); err != nil {
			return res, err
		}
		select {
		case <-done[k]:
		case <-time.After(30 * time.Second):
			return res, fmt.Errorf("round %d: %d of %d connections had it after 30s", k, n-int(left[k].Load()), n)
		case <-ctx.Done():
			return res, ctx.Err()
		}
		lat := make([]time.Duration, n)
		for i, at := range received[k] {
			lat[i] = at.Sub(start)
		}
		slices.Sort(lat)
		p50s, p99s = append(p50s, percentile(lat, 0.50)), append(p99s, percentile(lat, 0.99))
		res.Max = max(res.Max, lat[n-1])
	}
	res.P50, res.P99 = median(p50s), median(p99s)
	return res, nil
}
