// Command chaos proves that no strategy of the final chapter's server
// (06-grpc) loses, repeats or reorders an update without saying so, however
// the network and the server misbehave. It starts the server as a process of
// its own, types updates into it, and runs a client of every strategy
// through a proxy of its own that cuts its connections (resets and closes),
// stalls them long enough for the server to drop a slow subscriber, and
// trickles their bytes; a webhook receiver's deliveries fail (500), are
// refused (429, 503 with Retry-After) or are hung up on; and the server is
// restarted mid-stream. Then every client must catch up, and a checker in
// the style of Jepsen's total-queue checker compares every update each client
// printed with every update each server run published.
//
// With -nats the run is clustered: chaos runs a NATS server with JetStream
// itself, and three instances of the server, each on ports of its own, keep
// one log on it (-nats URL). Each strategy's proxy leads to one instance,
// the updates are typed into every instance in turn, and instead of a
// restart an instance is killed mid-stream (SIGKILL) and its strategies'
// proxies lead to another live one from then on, as a load balancer's do;
// the killed one is started again. The log outlives every instance, so a
// client that resumes on another with its cursor has nothing to be told:
// the checker holds them to no unannounced loss, duplicate or reordering, as
// ever, and the report's announced gaps show whether any strategy had to
// start over. (A webhook registration is the instance's own: the receiver
// finds it gone and registers again on the new instance, with its cursor.)
//
//	go run ./scripts/chaos                    # the CI size: about 200 faults per strategy, under a minute
//	go run ./scripts/chaos -size full         # about 1,700 faults per strategy and ten restarts: about seven minutes
//	go run ./scripts/chaos -nats              # the CI size, clustered: three instances on one log, two killed
//	go run ./scripts/chaos -nats -size full   # clustered, ten instances killed
//	go run ./scripts/chaos -break-resume      # a server that drops the first update after a resume: must fail (with -nats too)
//
// It exits 1, naming the strategies, if any client lost an update that no
// message of the server announced, printed one twice, or printed one out of
// order. Run it from the repository root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.As(err, new(*lossError)):
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
}

// allStrategies are the six, in the order of the chapters.
var allStrategies = []string{"short", "long", "sse", "ws", "webhook", "grpc"}

func run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizeName := fs.String("size", "ci", "ci (about 200 faults per strategy, under a minute) or full (about 1,700 and ten restarts, about seven minutes)")
	list := fs.String("strategies", strings.Join(allStrategies, ","), "comma-separated strategies to run")
	broken := fs.Bool("break-resume", false, "build the server with a feed that drops the first update after a resumed cursor: the run must fail")
	root := fs.String("root", ".", "the repository's root, which holds 06-grpc")
	record := fs.String("record", "", "write each client's output, as the checker read it, into this folder (STRATEGY.log)")
	clustered := fs.Bool("nats", false, "clustered: three instances of the server keep one log in NATS JetStream (run by chaos), and the restarts\n"+
		"are kills of an instance mid-stream, whose strategies move to another")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the faults' randomness, printed so that a run can be repeated")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	sz, ok := sizes[*sizeName]
	if !ok {
		return fmt.Errorf("-size %q: choose ci or full", *sizeName)
	}
	var strategies []string
	for s := range strings.SplitSeq(*list, ",") {
		if !slices.Contains(allStrategies, s) {
			return fmt.Errorf("-strategies: unknown strategy %q: choose from %s", s, strings.Join(allStrategies, ", "))
		}
		strategies = append(strategies, s)
	}
	chapter, err := filepath.Abs(filepath.Join(*root, "06-grpc"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(chapter, "cmd", "server")); err != nil {
		return errors.New("no 06-grpc/cmd/server under -root: run chaos from the repository root, or name it")
	}

	fmt.Fprintf(stderr, "chaos: seed %d\n", *seed)
	out, err := chaos(ctx, chapter, options{size: sz, strategies: strategies, brokenResume: *broken, seed: *seed, record: *record, clustered: *clustered}, stderr)
	if err != nil {
		return err
	}
	report(stdout, out)
	var failed []string
	for _, r := range out.results {
		if !r.OK() {
			failed = append(failed, r.Strategy+": "+r.problems())
		}
	}
	if failed != nil {
		return &lossError{failed: failed}
	}
	return nil
}

// lossError names the strategies whose clients lost, repeated or reordered
// updates unannounced.
type lossError struct{ failed []string }

func (e *lossError) Error() string { return "FAILED: " + strings.Join(e.failed, "; ") }

// report prints one row per strategy, under a header that says how many
// runs of the log there were and, clustered, of how many instances.
func report(w io.Writer, out *outcome) {
	var published uint64
	for _, r := range out.runs {
		published += r.last
	}
	fmt.Fprintf(w, "%d updates published over %d server runs", published, len(out.runs))
	if out.instances > 1 {
		fmt.Fprintf(w, ", clustered: %d instances on one NATS JetStream log, %d killed mid-stream and started again",
			out.instances, out.processes-out.instances)
	}
	fmt.Fprint(w, "\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\tfaults\tcuts\tconnections\tprinted\tlost\tannounced gaps\tunannounced\tduplicated\treordered\trecovery p50\tmax\t")
	for _, r := range out.results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", r.Strategy, r.Faults, r.Cuts, r.Connections, r.Printed,
			r.Lost, r.Announced, r.Unannounced+r.Malformed, r.Duplicated, r.Reordered, r.RecoveryP50.Round(time.Millisecond), r.RecoveryMax.Round(time.Millisecond))
	}
	tw.Flush()
}
