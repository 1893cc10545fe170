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

// broadcastTimeout bounds how long a round waits for its slowest client.
const broadcastTimeout = 30 * time.Second

// broadcasts measures a run's rounds: one update published, and how long
// each client took to receive it.
type broadcasts struct {
	answered atomic.Int64 // clients that received the current round's update

	mu     sync.Mutex
	rounds []samples
	round  int           // the current round
	at     time.Time     // when its update was published
	next   chan struct{} // closed once it is measured
}

func newBroadcasts(rounds int) *broadcasts {
	return &broadcasts{rounds: make([]samples, rounds), next: make(chan struct{})}
}

// received records that one client has the current round's update, and
// returns a channel that is closed when the round has been measured.
func (b *broadcasts) received() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &b.rounds[b.round]
	r.all = append(r.all, time.Since(b.at))
	b.answered.Add(1)
	return b.next
}

// measure runs cfg.Rounds rounds. Before each it calls ready, which returns
// once every client listens again; then it publishes and waits until all
// clients have the update (or broadcastTimeout passes), and writes a line.
func (b *broadcasts) measure(ctx context.Context, hc *http.Client, cfg Config, report io.Writer, ready func() error) error {
	for r := range cfg.Rounds {
		if err := ready(); err != nil {
			return err
		}
		b.mu.Lock()
		b.round, b.at = r, time.Now()
		b.mu.Unlock()
		b.answered.Store(0)
		if _, err := publishOne(ctx, hc, cfg, fmt.Sprintf("broadcast %d", r+1)); err != nil {
			return err
		}
		deadline := time.Now().Add(broadcastTimeout)
		for b.answered.Load() < int64(cfg.Clients) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		b.mu.Lock()
		fmt.Fprintf(report, "broadcast %d: %s\n", r+1, b.rounds[r].summaryOf(cfg.Clients))
		close(b.next)
		b.next = make(chan struct{})
		b.mu.Unlock()
	}
	return nil
}

// startClients calls start once per client, at cfg.Ramp a second, so that
// the server's accept queue is not flooded.
func startClients(ctx context.Context, cfg Config, start func()) error {
	ramp := time.NewTicker(time.Second / time.Duration(cfg.Ramp))
	defer ramp.Stop()
	for range cfg.Clients {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ramp.C:
		}
		start()
	}
	return nil
}

// reportCost writes what each client costs the server, from its -debug
// figures before the clients came and while they are connected.
func reportCost(report io.Writer, cfg Config, idle, held stats, what string) {
	perClient := func(held, idle uint64) float64 { return float64(held-idle) / float64(cfg.Clients) }
	fmt.Fprintf(report, "server while holding them: %.2f goroutines, %.1f KiB heap, %.1f KiB stack per %s (%d goroutines, %.0f MiB heap+stack in all)\n",
		perClient(held.Goroutines, idle.Goroutines),
		perClient(held.HeapInuse, idle.HeapInuse)/1024,
		perClient(held.StackInuse, idle.StackInuse)/1024,
		what, held.Goroutines, float64(held.HeapInuse+held.StackInuse)/(1<<20))
}
