package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"realtime/06-grpc/client"
	"realtime/06-grpc/natsfeed"
)

// A size is how long a run lasts and how hard it is on the strategies.
type size struct {
	Duration   time.Duration    // publishing, with faults, before the clients must catch up
	Rate       float64          // updates per second, into the server's stdin
	FaultEvery [2]time.Duration // a connection strategy's next fault comes this long after its last, at random
	Restarts   int              // server restarts, spread over the run; clustered, instances killed and started again
	CatchUp    time.Duration    // after the faults, how long the clients have to print the last update; a minute if 0
}

var sizes = map[string]size{
	// About 200 faults per strategy, two restarts: under a minute.
	"ci": {Duration: 25 * time.Second, Rate: 20, FaultEvery: [2]time.Duration{50 * time.Millisecond, 200 * time.Millisecond}, Restarts: 2},
	// About 1,700 faults (1,150 of them cuts) per strategy, ten restarts.
	"full": {Duration: 6 * time.Minute, Rate: 20, FaultEvery: [2]time.Duration{100 * time.Millisecond, 330 * time.Millisecond}, Restarts: 10},
}

// options are what a run is asked to do.
type options struct {
	size         size
	strategies   []string
	brokenResume bool
	seed         uint64
	record       string // a folder for each client's output, as the checker read it; "" for none
	clustered    bool   // clusterSize instances on one log in NATS JetStream, instead of one server
}

// clusterSize is how many instances of the server a clustered run starts.
const clusterSize = 3

// outcome is what a run found: each strategy's result, the runs of the log
// (epochs) and what published into them, and how many processes of how
// many instances it took.
type outcome struct {
	results   []Result
	runs      []serverRun
	instances int // 1, or clusterSize
	processes int // started, over every instance: restarts and kills add one each
}

// Result is one strategy's run: the checker's verdict and what the faults
// did.
type Result struct {
	Verdict
	Faults      int           // faults injected
	Cuts        int           // of which connections cut
	Connections int64         // connections the client opened through the proxy
	RecoveryP50 time.Duration // from a fault to the next update printed
	RecoveryMax time.Duration
}

// strategyRun is one strategy's client, its proxies and its faults.
type strategyRun struct {
	name   string
	log    *clientLog
	proxy  *faultProxy // to the server's HTTP port
	grpc   *faultProxy // to the gRPC port, for grpc
	hook   *hookFaults // before the webhook receiver, for webhook
	server int         // the instance its proxies lead to
	rand   *rand.Rand
	faults []time.Time
	cuts   int
}

// chaos runs the strategies' clients against the chapter's server through
// faults, and checks what each printed against what the server published.
// Clustered, it runs a NATS server with JetStream itself, and clusterSize
// instances of the server that keep their log on it; each strategy's proxy
// leads to one of them, and when that one is killed, to another, as a load
// balancer's would.
func chaos(ctx context.Context, chapter string, opt options, progress io.Writer) (*outcome, error) {
	dir, err := os.MkdirTemp("", "chaos-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(progress, "chaos: building the server")
	bin, err := build(ctx, chapter, dir, opt.brokenResume)
	if err != nil {
		return nil, err
	}
	instances, natsURL := 1, ""
	if opt.clustered {
		// The log's home outlives every instance: it is this process's.
		ns, err := natsfeed.StartEmbedded(filepath.Join(dir, "nats"), "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ns.Shutdown() // after the instances have stopped
		instances, natsURL = clusterSize, ns.URL()
		fmt.Fprintf(progress, "chaos: clustered: %d instances of the server on one log, in NATS JetStream at %s\n", instances, natsURL)
	}
	srv, err := newServers(bin, natsURL, instances)
	if err != nil {
		return nil, err
	}
	if err := srv.startAll(ctx); err != nil {
		return nil, err
	}
	defer srv.stopAll()

	clientsCtx, stopClients := context.WithCancel(ctx)
	var clients sync.WaitGroup
	defer clients.Wait()
	defer stopClients()
	var runs []*strategyRun
	for i, name := range opt.strategies {
		// Clustered, the strategies are spread over the instances.
		r, err := startClient(clientsCtx, &clients, srv, i%instances, name, rand.New(rand.NewPCG(opt.seed, uint64(i))))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer r.close()
		runs = append(runs, r)
	}

	if opt.clustered {
		fmt.Fprintf(progress, "chaos: %s of updates at %g/s into every instance in turn, faults on every strategy, %d instances killed mid-stream\n",
			opt.size.Duration, opt.size.Rate, opt.size.Restarts)
	} else {
		fmt.Fprintf(progress, "chaos: %s of updates at %g/s, faults on every strategy, %d server restarts\n", opt.size.Duration, opt.size.Rate, opt.size.Restarts)
	}
	faultsCtx, stopFaults := context.WithTimeout(ctx, opt.size.Duration)
	defer stopFaults()
	var busy sync.WaitGroup
	busy.Go(func() { publish(faultsCtx, srv, opt.size.Rate) })
	for _, r := range runs {
		busy.Go(func() { r.inject(faultsCtx, opt.size) })
	}
	busy.Go(func() { restart(faultsCtx, srv, runs, opt.size, progress) })
	busy.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Faults over, every client must catch up with the last update of the
	// last run, once the servers have said what that is.
	srv.settle(ctx, 10*time.Second)
	final := srv.snapshot()
	last := final[len(final)-1]
	fmt.Fprintf(progress, "chaos: faults over; waiting for every client to print update %d of run %d\n", last.last, len(final))
	catchUp := opt.size.CatchUp
	if catchUp == 0 {
		catchUp = time.Minute
	}
	deadline := time.Now().Add(catchUp)
	for _, r := range runs {
		start := time.Now()
		for {
			if r.log.caughtUp(last) || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond): // a bounded poll of the client's output
			}
		}
		fmt.Fprintf(progress, "chaos: %s caught up in %s\n", r.name, time.Since(start).Round(time.Millisecond))
	}
	stopClients()
	clients.Wait()
	srv.stopAll()
	final = srv.snapshot()

	var results []Result
	for _, r := range runs {
		records, bad := r.log.snapshot()
		if opt.record != "" {
			if err := writeRecord(filepath.Join(opt.record, r.name+".log"), records, bad, final); err != nil {
				return nil, err
			}
		}
		res := Result{Verdict: check(r.name, records, bad, final), Faults: len(r.faults), Cuts: r.cuts, Connections: r.connections()}
		res.RecoveryP50, res.RecoveryMax = recovery(r.faults, records)
		results = append(results, res)
	}
	return &outcome{results: results, runs: final, instances: instances, processes: srv.processes()}, nil
}

// startClient starts strategy's client through a proxy of its own to
// instance server, printing into a log the checker reads.
func startClient(ctx context.Context, clients *sync.WaitGroup, srv *servers, server int, name string, r *rand.Rand) (*strategyRun, error) {
	run := &strategyRun{name: name, log: &clientLog{}, server: server, rand: r}
	var err error
	if run.proxy, err = newFaultProxy(srv.instances[server].httpAddr); err != nil {
		return nil, err
	}
	cfg := client.Config{
		Server:        &url.URL{Scheme: "http", Host: run.proxy.addr()},
		HTTP:          &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		Interval:      100 * time.Millisecond,
		Wait:          5 * time.Second,
		CheckInterval: 500 * time.Millisecond,
	}
	switch name {
	case "grpc":
		if run.grpc, err = newFaultProxy(srv.instances[server].grpcAddr); err != nil {
			run.close()
			return nil, err
		}
		cfg.GRPC = run.grpc.addr()
	case "webhook":
		receiver, err := freeAddr()
		if err != nil {
			run.close()
			return nil, err
		}
		// A randomness of its own, drawn from the strategy's: the receiver's
		// faults come from the server's goroutines, the others from inject.
		if run.hook, err = newHookFaults(receiver, rand.New(rand.NewPCG(r.Uint64(), r.Uint64()))); err != nil {
			run.close()
			return nil, err
		}
		cfg.Listen, cfg.Callback = receiver, "http://"+run.hook.addr()+"/hook"
	}
	strategy, err := client.NewStrategy(name, cfg)
	if err != nil {
		run.close()
		return nil, err
	}
	session := client.NewSession(client.SessionOptions{Strategy: name, JSON: true, Stdout: run.log.stdout(), Stderr: run.log.stderr()})
	clients.Go(func() {
		// Quick retries: a fault every few hundred milliseconds would keep
		// the default backoff at its longest.
		_ = client.Run(ctx, strategy, session, client.Backoff{Base: 20 * time.Millisecond, Max: 500 * time.Millisecond}, run.log.stderr())
		cfg.HTTP.CloseIdleConnections()
	})
	return run, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// inject does faults to the strategy's connections until ctx ends: cuts
// (resets and closes), stalls of up to two seconds (long enough for the
// server to drop a subscriber whose queue fills) and trickles. For webhooks
// those are the receiver's calls to the server (registering, checking its
// registration), and the deliveries have faults of their own (hookFaults).
func (r *strategyRun) inject(ctx context.Context, sz size) {
	if r.hook != nil {
		defer func() {
			r.hook.stop()
			r.faults = append(r.faults, r.hook.faultTimes()...)
			slices.SortFunc(r.faults, time.Time.Compare)
		}()
	}
	every := sz.FaultEvery
	for {
		wait := every[0] + time.Duration(r.rand.Int64N(int64(every[1]-every[0])))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		r.faults = append(r.faults, time.Now())
		proxies := []*faultProxy{r.proxy}
		if r.grpc != nil {
			proxies = []*faultProxy{r.grpc}
		}
		switch n := r.rand.IntN(10); {
		case n < 7:
			r.cuts++
			for _, p := range proxies {
				p.cut(n < 4)
			}
		case n < 9:
			d := time.Duration(100+r.rand.IntN(1900)) * time.Millisecond
			for _, p := range proxies {
				p.stall(d)
			}
		default:
			for _, p := range proxies {
				p.trickle(500 * time.Millisecond)
			}
		}
	}
}

// connections are the connections the strategy's updates came through:
// the client's, or for webhooks the server's to the receiver.
func (r *strategyRun) connections() int64 {
	switch {
	case r.grpc != nil:
		return r.grpc.accepted.Load()
	case r.hook != nil:
		return r.hook.conns.Load()
	}
	return r.proxy.accepted.Load()
}

// moveTo leads the strategy's proxies to instance in: their next
// connections go there.
func (r *strategyRun) moveTo(in *instance) {
	r.server = in.n - 1
	r.proxy.retarget(in.httpAddr)
	if r.grpc != nil {
		r.grpc.retarget(in.grpcAddr)
	}
}

func (r *strategyRun) close() {
	for _, p := range []*faultProxy{r.proxy, r.grpc} {
		if p != nil {
			p.close()
		}
	}
	if r.hook != nil {
		r.hook.close()
	}
}

// publish types an update into the server at rate until ctx ends; into
// each running instance in turn, clustered.
func publish(ctx context.Context, srv *servers, rate float64) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			srv.publish("update " + strconv.Itoa(i))
		}
	}
}

// restart stops and starts the server sz.Restarts times, evenly spread over
// the run. Clustered, it kills an instance instead (failover), and starts it
// again.
func restart(ctx context.Context, srv *servers, runs []*strategyRun, sz size, progress io.Writer) {
	for k := 1; k <= sz.Restarts; k++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(sz.Duration / time.Duration(sz.Restarts+1)):
		}
		if srv.clustered() {
			if err := failover(ctx, srv, runs, k, sz.Restarts, progress); err != nil {
				fmt.Fprintln(progress, "chaos: starting a killed instance again:", err)
				return
			}
			continue
		}
		srv.stop(0)
		if err := srv.start(ctx, 0); err != nil {
			fmt.Fprintln(progress, "chaos: restarting the server:", err)
			return
		}
		fmt.Fprintf(progress, "chaos: server restarted (%d of %d)\n", k, sz.Restarts)
	}
}

// failover kills the instance that the most strategies lead to (among
// those with as many, the first from instance k on, in turn), mid-stream; leads each of its
// strategies to the live instance that the fewest lead to, as a load
// balancer does once it finds a server dead; and starts the killed one
// again, on its ports, where none leads until another dies. The log is in
// NATS, not in the instance: every client must resume on its new instance
// with its cursor, and lose nothing.
func failover(ctx context.Context, srv *servers, runs []*strategyRun, k, kills int, progress io.Writer) error {
	n := len(srv.instances)
	load := make([]int, n)
	for _, r := range runs {
		load[r.server]++
	}
	victim := -1
	for j := range n {
		if i := (k - 1 + j) % n; victim < 0 || load[i] > load[victim] {
			victim = i
		}
	}
	srv.kill(victim)
	var moved []string
	for _, r := range runs {
		if r.server != victim {
			continue
		}
		to := -1
		for i := range n {
			if i != victim && srv.up(i) && (to < 0 || load[i] < load[to]) {
				to = i
			}
		}
		if to < 0 {
			break // none up: this run has one instance
		}
		load[victim]--
		load[to]++
		r.moveTo(srv.instances[to])
		moved = append(moved, fmt.Sprintf("%s to %d", r.name, to+1))
	}
	if moved == nil {
		moved = []string{"no strategy"}
	}
	fmt.Fprintf(progress, "chaos: instance %d killed mid-stream (%d of %d); moved %s\n", victim+1, k, kills, strings.Join(moved, ", "))
	if err := srv.start(ctx, victim); err != nil {
		return err
	}
	fmt.Fprintf(progress, "chaos: instance %d started again, on the same log\n", victim+1)
	return nil
}

// writeRecord writes what the checker read from one client, a line per
// record, after the server runs.
func writeRecord(path string, records []record, bad []string, runs []serverRun) error {
	var b strings.Builder
	for i, r := range runs {
		fmt.Fprintf(&b, "run %d: epoch %s, published 1 to %d\n", i+1, r.epoch, r.last)
	}
	for _, r := range records {
		if r.update {
			fmt.Fprintf(&b, "%s update %s-%d\n", r.at.Format("15:04:05.000"), r.epoch, r.id)
		} else {
			fmt.Fprintf(&b, "%s message %s\n", r.at.Format("15:04:05.000"), r.message)
		}
	}
	for _, line := range bad {
		fmt.Fprintf(&b, "malformed %q\n", line)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// recovery is the median and the longest time from a fault to the next
// update printed after it.
func recovery(faults []time.Time, records []record) (p50, longest time.Duration) {
	var times []time.Duration
	for _, f := range faults {
		for _, r := range records {
			if r.update && !r.at.Before(f) {
				times = append(times, r.at.Sub(f))
				break
			}
		}
	}
	if len(times) == 0 {
		return 0, 0
	}
	slices.Sort(times)
	return times[len(times)/2], times[len(times)-1]
}
