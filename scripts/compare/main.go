// Command compare measures all six strategies of the final chapter's server
// (06-grpc) side by side: the same workloads, through the same harness, in
// one run on one machine, beside the bare loopback floor measured in that
// run. It starts the server as a process of its own for every measurement,
// prints what it is doing while it runs, and writes:
//
//   - a markdown table between the markers <!-- compare:begin --> and
//     <!-- compare:end --> in 06-grpc/NOTES.md and README.md,
//   - SVG charts and results.json in scripts/compare/results.
//
// With -nats it also measures the cost of the broker hop: each rate's
// latency runs again against a server that keeps its log in NATS JetStream
// (-nats embedded: a NATS server inside the server's process), right after
// the same runs with the log in memory, and publish and broadcast
// throughput with either log. It writes that table between the markers
// <!-- compare-nats:begin --> and <!-- compare-nats:end --> in those of the
// -markdown files that have them, and into results.json's "nats".
//
// The full size takes about six minutes on a 2-core machine, about nine
// with -nats:
//
//	go run ./scripts/compare
//	go run ./scripts/compare -nats
//	go run ./scripts/compare -size smoke -out /tmp/compare -markdown ''   # seconds: proves it works
//
// Run it from the repository root, on a machine doing nothing else: every
// figure is a ratio to the others of the same run, and a busy machine moves
// them. The numbers it reads from the server process (CPU time, bytes at its
// sockets) come from Linux's /proc; elsewhere those columns stay empty.
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
	"strings"
	"syscall"
)

func main() {
	relayIfAsked()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "compare:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizeName := fs.String("size", "full", "workload size: full (about six minutes on 2 cores) or smoke (seconds, for CI)")
	out := fs.String("out", filepath.Join("scripts", "compare", "results"), "folder for the charts and results.json")
	markdown := fs.String("markdown", "06-grpc/NOTES.md,README.md", "comma-separated files whose compare markers get the table; empty writes none")
	progress := fs.String("progress", "auto", "progress display: bar, lines, or auto (a bar on a terminal)")
	from := fs.String("from", "", "measure nothing: write the table and the charts from this results.json of an earlier run")
	withNats := fs.Bool("nats", false, "also measure the broker hop: the latency runs again with the server's log in NATS JetStream (-nats embedded),\n"+
		"and publish and broadcast throughput with either log, for the table between the compare-nats markers (about three minutes more)")
	profileDir := fs.String("profile", "", "write CPU profiles of the server into this folder: the runs at the higher rate and the largest broadcasts (go tool pprof reads them)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	size, ok := sizes[*sizeName]
	if !ok {
		return fmt.Errorf("-size %q: choose full or smoke", *sizeName)
	}
	p, err := newProgress(stderr, *progress)
	if err != nil {
		return err
	}
	var files []string
	for f := range strings.SplitSeq(*markdown, ",") {
		if f = strings.TrimSpace(f); f != "" {
			files = append(files, f)
		}
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("-markdown: %w (run from the repository root)", err)
		}
	}
	var results *Results
	if *from != "" {
		results, err = readResults(*from)
		if err != nil {
			return err
		}
	} else {
		chapter, err := findChapter()
		if err != nil {
			return err
		}
		var prof *profiler
		if *profileDir != "" {
			if err := os.MkdirAll(*profileDir, 0o755); err != nil {
				return err
			}
			prof = &profiler{dir: *profileDir}
		}
		results, err = measure(ctx, chapter, size, p, prof, *withNats)
		if err != nil {
			return err
		}
		results.Size = *sizeName
	}
	table, natsTable := results.Markdown(), results.NatsMarkdown()
	fmt.Fprintln(stdout, results.Machine.String())
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, table)
	if natsTable != "" {
		fmt.Fprintln(stdout)
		fmt.Fprint(stdout, natsTable)
	}

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if *from == "" {
		if err := results.WriteJSON(filepath.Join(*out, "results.json")); err != nil {
			return err
		}
	}
	charts, err := results.Charts(*out)
	if err != nil {
		return err
	}
	for _, c := range charts {
		fmt.Fprintln(stdout, "wrote", c)
	}
	for _, f := range files {
		if err := replaceBetweenMarkers(f, compareMarkers, table); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "wrote the table into", f)
	}
	if natsTable != "" && len(files) > 0 {
		wrote := false
		for _, f := range files {
			if has, err := hasMarkers(f, natsMarkers); err != nil {
				return err
			} else if !has {
				continue
			}
			if err := replaceBetweenMarkers(f, natsMarkers, natsTable); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "wrote the broker hop's table into", f)
			wrote = true
		}
		if !wrote {
			fmt.Fprintln(stdout, "no -markdown file has the", natsMarkers.begin, "line: the broker hop's table is only above")
		}
	}
	return nil
}

// findChapter returns the folder of the chapter measured: 06-grpc under the
// current folder, the repository root.
func findChapter() (string, error) {
	dir, err := filepath.Abs("06-grpc")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "cmd", "server")); err != nil {
		return "", fmt.Errorf("no 06-grpc/cmd/server here: run compare from the repository root")
	}
	return dir, nil
}
