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
)

// A size is how long a run lasts and how hard it is on the strategies.
type size struct {
	Duration   time.Duration    // publishing, with faults, before the clients must catch up
	Rate       float64          // updates per second, into the server's stdin
	FaultEvery [2]time.Duration // a connection strategy's next fault comes this long after its last, at random
	Restarts   int              // server restarts, spread over the run
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
	rand   *rand.Rand
	faults []time.Time
	cuts   int
}

// chaos runs the strategies' clients against the chapter's server through
// faults, and checks what each printed against what the server published.
func chaos(ctx context.Context, chapter string, opt options, progress io.Writer) ([]Result, []serverRun, error) {
	dir, err := os.MkdirTemp("", "chaos-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(progress, "chaos: building the server")
	bin, err := build(ctx, chapter, dir, opt.brokenResume)
	if err != nil {
		return nil, nil, err
	}
	srv, err := newServers(bin)
	if err != nil {
		return nil, nil, err
	}
	if err := srv.start(ctx); err != nil {
		return nil, nil, err
	}
	defer srv.stop()

	clientsCtx, stopClients := context.WithCancel(ctx)
	var clients sync.WaitGroup
	defer clients.Wait()
	defer stopClients()
	var runs []*strategyRun
	for i, name := range opt.strategies {
		r, err := startClient(clientsCtx, &clients, srv, name, rand.New(rand.NewPCG(opt.seed, uint64(i))))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		defer r.close()
		runs = append(runs, r)
	}

	fmt.Fprintf(progress, "chaos: %s of updates at %g/s, faults on every strategy, %d server restarts\n", opt.size.Duration, opt.size.Rate, opt.size.Restarts)
	faultsCtx, stopFaults := context.WithTimeout(ctx, opt.size.Duration)
	defer stopFaults()
	var busy sync.WaitGroup
	busy.Go(func() { publish(faultsCtx, srv, opt.size.Rate) })
	for _, r := range runs {
		busy.Go(func() { r.inject(faultsCtx, opt.size) })
	}
	busy.Go(func() { restart(faultsCtx, srv, opt.size, progress) })
	busy.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	// Faults over, every client must catch up with the last update of the
	// last run.
	final := srv.snapshot()
	last := final[len(final)-1]
	fmt.Fprintf(progress, "chaos: faults over; waiting for every client to print update %d of run %d\n", last.last, len(final))
	deadline := time.Now().Add(time.Minute)
	for _, r := range runs {
		start := time.Now()
		for {
			epoch, id := r.log.last()
			if epoch == last.epoch && id >= last.last || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(20 * time.Millisecond): // a bounded poll of the client's output
			}
		}
		fmt.Fprintf(progress, "chaos: %s caught up in %s\n", r.name, time.Since(start).Round(time.Millisecond))
	}
	stopClients()
	clients.Wait()
	srv.stop()
	final = srv.snapshot()

	var results []Result
	for _, r := range runs {
		records, bad := r.log.snapshot()
		if opt.record != "" {
			if err := writeRecord(filepath.Join(opt.record, r.name+".log"), records, bad, final); err != nil {
				return nil, nil, err
			}
		}
		res := Result{Verdict: check(r.name, records, bad, final), Faults: len(r.faults), Cuts: r.cuts, Connections: r.connections()}
		res.RecoveryP50, res.RecoveryMax = recovery(r.faults, records)
		results = append(results, res)
	}
	return results, final, nil
}

// startClient starts strategy's client through a proxy of its own, printing
// into a log the checker reads.
func startClient(ctx context.Context, clients *sync.WaitGroup, srv *servers, name string, r *rand.Rand) (*strategyRun, error) {
	run := &strategyRun{name: name, log: &clientLog{}, rand: r}
	var err error
	if run.proxy, err = newFaultProxy(srv.httpAddr); err != nil {
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
		if run.grpc, err = newFaultProxy(srv.grpcAddr); err != nil {
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

// publish types an update into the server at rate until ctx ends.
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
// the run.
func restart(ctx context.Context, srv *servers, sz size, progress io.Writer) {
	for k := 1; k <= sz.Restarts; k++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(sz.Duration / time.Duration(sz.Restarts+1)):
		}
		srv.stop()
		if err := srv.start(ctx); err != nil {
			fmt.Fprintln(progress, "chaos: restarting the server:", err)
			return
		}
		fmt.Fprintf(progress, "chaos: server restarted (%d of %d)\n", k, sz.Restarts)
	}
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
