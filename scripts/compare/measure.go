package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// A size is how much of each workload a run measures.
type size struct {
	Rates    []rateRun
	Fanouts  []int         // subscribers of one broadcast
	Rounds   int           // broadcasts measured at each fan-out
	DeadPeer time.Duration // how long a server may take to notice a dead peer before the run gives up on it
	Nats     natsSize      // with -nats: the throughput runs
}

// A rateRun is one subscriber receiving Updates published at Rate per
// second. Concurrent runs every strategy's at once, each against a server
// of its own: at a rate this low the runs seldom overlap, and the full size
// then takes one strategy's time instead of seven.
type rateRun struct {
	Rate       float64
	Updates    int
	Concurrent bool
}

var sizes = map[string]size{
	"full": {
		Rates:    []rateRun{{Rate: 2, Updates: 120, Concurrent: true}, {Rate: 50, Updates: 500}},
		Fanouts:  []int{100, 1000, 10000},
		Rounds:   5,
		DeadPeer: 150 * time.Second,
		Nats:     natsSize{PublishFor: 5 * time.Second, Publishers: []int{1, 16}, Broadcast: 1000, Rounds: 5},
	},
	"smoke": {
		Rates:    []rateRun{{Rate: 2, Updates: 3, Concurrent: true}, {Rate: 50, Updates: 20}},
		Fanouts:  []int{10},
		Rounds:   1,
		DeadPeer: time.Second,
		Nats:     natsSize{PublishFor: 500 * time.Millisecond, Publishers: []int{1, 4}, Broadcast: 10, Rounds: 1},
	},
}

// strategies are the six, in the order of the chapters.
var strategies = []string{"short", "long", "sse", "ws", "webhook", "grpc"}

// pushStrategies are those where the server sends an update as it happens;
// short polling finds it at the client's next poll.
var pushStrategies = []string{"long", "sse", "ws", "webhook", "grpc"}

// fanoutStrategies are the push strategies plus gRPC with a connection for
// every stream: HTTP/2 carries many streams on one connection, and what
// that saves shows only beside one connection each. The load generator's
// short polling has no broadcast to time: a poll finds an update at most
// one interval after it.
var fanoutStrategies = []string{"long", "sse", "ws", "webhook", "grpc", grpcConnEach}

// grpcConnEach names gRPC with one connection for every stream.
const grpcConnEach = "grpc-conn-each"

// floor names the bare loopback floor among the strategies.
const floor = "floor"

// deadPeerStrategies hold something for a subscriber that the server must
// release once the subscriber is gone; a short poll holds nothing between
// polls.
var deadPeerStrategies = []string{"long", "sse", "ws", "webhook", "grpc"}

// measure runs every workload of size against the chapter's server. With a
// profiler, the server is built to serve CPU profiles, and the profiler
// takes one of every run at the higher rate and at the largest broadcast.
// With withNats, each rate's latency runs are followed by the same runs
// against a server that keeps its log in NATS JetStream, and the run ends
// with the publish and broadcast throughput of either log.
func measure(ctx context.Context, chapter string, sz size, p *progress, prof *profiler, withNats bool) (*Results, error) {
	total := len(sz.Rates)*(len(strategies)+1) + len(sz.Fanouts)*(len(fanoutStrategies)+1) + len(deadPeerStrategies)
	if withNats {
		total += natsTotal(sz)
	}
	p.start(total)
	defer p.finish()

	p.phase("building the server and the load generator")
	bins, err := build(ctx, chapter, prof)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bins.dir)

	results := &Results{Machine: thisMachine(), Date: time.Now().UTC().Truncate(time.Second)}
	if withNats {
		results.Nats = &NatsResults{}
	}
	for _, rr := range sz.Rates {
		got, err := measureRate(ctx, bins, memoryLog, rr, append([]string{floor}, strategies...), p)
		if err != nil {
			return nil, err
		}
		results.Latency = append(results.Latency, got...)
		if withNats {
			got, err := measureRate(ctx, bins, natsLog, rr, strategies, p)
			if err != nil {
				return nil, err
			}
			results.Nats.Latency = append(results.Nats.Latency, got...)
		}
	}

	for _, n := range sz.Fanouts {
		p.phase(fmt.Sprintf("broadcast: the floor to %d, %d rounds", n, sz.Rounds))
		fan, err := measureFloorFanout(ctx, n, sz.Rounds)
		if err != nil {
			return nil, fmt.Errorf("broadcast, the floor to %d: %w", n, err)
		}
		results.Fanout = append(results.Fanout, fan)
		p.done(fmt.Sprintf("broadcast: the floor to %d", n))
	}
	for _, strategy := range fanoutStrategies {
		for _, n := range sz.Fanouts {
			p.phase(fmt.Sprintf("broadcast: %s to %d, %d rounds", strategy, n, sz.Rounds))
			fan, idle, err := measureFanout(ctx, bins, memoryLog, strategy, n, sz.Rounds, n == slices.Max(sz.Fanouts))
			if err != nil {
				return nil, fmt.Errorf("broadcast, %s to %d: %w", strategy, n, err)
			}
			results.Fanout = append(results.Fanout, fan)
			if idle != nil {
				results.Idle = append(results.Idle, *idle)
			}
			p.done(fmt.Sprintf("broadcast: %s to %d", strategy, n))
		}
	}

	p.phase(fmt.Sprintf("dead peers: all at once, each given up after %s", sz.DeadPeer))
	dead := make([]DeadPeerResult, len(deadPeerStrategies))
	errs := make([]error, len(deadPeerStrategies))
	var wg sync.WaitGroup
	for i, strategy := range deadPeerStrategies {
		wg.Go(func() {
			dead[i], errs[i] = measureDeadPeer(ctx, bins, strategy, sz.DeadPeer)
			p.done("dead peer: " + strategy)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("dead peer, %s: %w", deadPeerStrategies[i], err)
		}
	}
	results.DeadPeer = dead

	if withNats {
		if err := measureNatsThroughput(ctx, bins, sz.Nats, p, results.Nats); err != nil {
			return nil, err
		}
	}
	return results, ctx.Err()
}

// measureRate measures the latency of every one of runs (the strategies,
// and the floor) at one rate, with the server's log in lg.
func measureRate(ctx context.Context, bins binaries, lg logKind, rr rateRun, runs []string, p *progress) ([]LatencyResult, error) {
	what := fmt.Sprintf("latency at %g/s%s", rr.Rate, lg.label)
	got := make([]LatencyResult, len(runs))
	errs := make([]error, len(runs))
	// Concurrent runs start their schedules together, once every
	// subscriber is connected: one that starts while another's server
	// is still starting would measure the start.
	var connected sync.WaitGroup
	connected.Add(len(runs))
	one := func(i int) {
		arrive := sync.OnceFunc(connected.Done)
		defer arrive() // a run that fails early must not hold the others
		ready := func() {}
		if rr.Concurrent {
			ready = func() { arrive(); connected.Wait() }
		}
		if runs[i] == floor {
			got[i], errs[i] = measureFloor(ctx, rr, ready)
		} else {
			got[i], errs[i] = measureLatency(ctx, bins, lg, runs[i], rr, ready)
		}
		p.done(fmt.Sprintf("%s: %s", what, runs[i]))
	}
	if rr.Concurrent {
		p.phase(fmt.Sprintf("%s: all at once, %d updates each (%s)", what, rr.Updates, approx(float64(rr.Updates)/rr.Rate)))
		var wg sync.WaitGroup
		for i := range runs {
			wg.Go(func() { one(i) })
		}
		wg.Wait()
	} else {
		for i := range runs {
			p.phase(fmt.Sprintf("%s: %s, %d updates (%s)", what, runs[i], rr.Updates, approx(float64(rr.Updates)/rr.Rate)))
			one(i)
		}
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", what, runs[i], err)
		}
	}
	return got, nil
}

func approx(seconds float64) string {
	return "about " + (time.Duration(seconds) * time.Second).String()
}

// binaries are the chapter's server and load generator, built once.
type binaries struct {
	dir     string
	server  string
	loadgen string
	prof    *profiler // nil: no profiles
}

func build(ctx context.Context, chapter string, prof *profiler) (binaries, error) {
	dir, err := os.MkdirTemp("", "compare-")
	if err != nil {
		return binaries{}, err
	}
	bins := binaries{dir: dir, server: filepath.Join(dir, "server"), loadgen: filepath.Join(dir, "loadgen"), prof: prof}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if prof != nil {
		file, err := overlay(dir, chapter)
		if err != nil {
			os.RemoveAll(dir)
			return binaries{}, err
		}
		args = append(args, "-overlay", file)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/server", "./cmd/loadgen")...)
	cmd.Dir = chapter
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return binaries{}, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bins, nil
}

// Machine is what the numbers were measured on.
type Machine struct {
	Cores     int    `json:"cores"`
	CPU       string `json:"cpu,omitempty"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

func thisMachine() Machine {
	return Machine{Cores: runtime.NumCPU(), CPU: cpuModel(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}

func (m Machine) String() string {
	s := fmt.Sprintf("%d cores", m.Cores)
	if m.CPU != "" {
		s += " (" + m.CPU + ")"
	}
	return s + fmt.Sprintf(", %s/%s, %s", m.OS, m.Arch, m.GoVersion)
}

// cpuModel is the processor's name where Linux tells it.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return ""
}
