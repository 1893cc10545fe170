// Command steps keeps each chapter's walkthrough a series of real,
// runnable states of the code.
//
// A chapter is the chapter before it (for the first chapter, an empty
// module) plus an ordered series of steps, kept in the chapter:
//
//	NN-name/steps/01-slug/red.patch       the test, and nothing it does not need
//	NN-name/steps/01-slug/green.patch     the least code that makes it pass
//	NN-name/steps/01-slug/refactor.patch  optional: a better shape, tests still passing
//
// Each patch file is a title line, an optional paragraph saying why, and
// then the change as git diff prints it, relative to the chapter folder.
// README.md, NOTES.md and steps/ are not part of the series.
//
// Usage:
//
//	steps [-root DIR] list CHAPTER
//	steps [-root DIR] state CHAPTER STEP red|green|refactor DIR
//	steps [-root DIR] prove [-w] [-j N] [CHAPTER...]
//	steps [-root DIR] branch DIR CHAPTER...
//	steps [-root DIR] export DIR
//
// list prints a chapter's steps. state writes the chapter as it stands after
// one change into DIR, ready for go test. prove proves every series (see
// Prove); -w rewrites the walkthrough's [step]:# blocks from the real states
// and runs. branch turns series into a scratch git repository with one
// commit per change; export writes such a branch, once edited, back into
// the chapters. The exit status is 1 when something is wrong.
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
	"runtime"
	"strconv"
	"strings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "steps:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  steps [-root DIR] list CHAPTER
  steps [-root DIR] state CHAPTER STEP red|green|refactor DIR
  steps [-root DIR] prove [-w] [-j N] [CHAPTER...]
  steps [-root DIR] branch DIR CHAPTER...
  steps [-root DIR] export DIR`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usage); fs.PrintDefaults() }
	root := fs.String("root", ".", "the folder that holds the chapters")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New(usage)
	}
	rest := fs.Args()[1:]
	switch fs.Arg(0) {
	case "list":
		return list(*root, rest, stdout)
	case "state":
		return materialize(ctx, *root, rest, stdout)
	case "prove":
		return prove(ctx, *root, rest, stdout, stderr)
	case "branch":
		if len(rest) < 2 {
			return errors.New("usage: steps branch DIR CHAPTER...")
		}
		if err := Branch(ctx, *root, rest[0], rest[1:]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: branch steps, one commit per change of %s; edit it (git rebase -i, git commit --fixup), then: go run ./scripts/steps export %s\n",
			rest[0], strings.Join(rest[1:], ", "), rest[0])
		return nil
	case "export":
		if len(rest) != 1 {
			return errors.New("usage: steps export DIR")
		}
		results, err := Export(ctx, *root, rest[0])
		if err != nil {
			return err
		}
		for _, r := range results {
			fmt.Fprintf(stdout, "%s: %s written to %s/%s/", r.Chapter, plural(r.Steps, "step"), r.Chapter, StepsDir)
			if len(r.CodeChanged) > 0 {
				fmt.Fprintf(stdout, "; code changed: %s", strings.Join(r.CodeChanged, ", "))
			}
			fmt.Fprintln(stdout)
			if r.Renumbered {
				fmt.Fprintf(stdout, "  steps were renumbered: check the step numbers in %s/README.md's [step]:# lines\n", r.Chapter)
			}
		}
		fmt.Fprintln(stdout, "next: go run ./scripts/steps prove -w (refreshes the walkthrough's blocks), then review git diff")
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", fs.Arg(0), usage)
}

func list(root string, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: steps list CHAPTER")
	}
	ch, err := FindChapter(root, args[0])
	if err != nil {
		return err
	}
	patches, err := LoadSeries(ch)
	if err != nil {
		return err
	}
	if patches == nil {
		fmt.Fprintf(stdout, "%s: no series yet\n", ch.Name)
		return nil
	}
	for _, p := range patches {
		fmt.Fprintf(stdout, "%2d %-8s %s\n", p.Step, p.Change, p.Title)
	}
	return nil
}

func materialize(ctx context.Context, root string, args []string, stdout io.Writer) error {
	if len(args) != 4 {
		return errors.New("usage: steps state CHAPTER STEP red|green|refactor DIR")
	}
	ch, err := FindChapter(root, args[0])
	if err != nil {
		return err
	}
	step, err := strconv.Atoi(args[1])
	if err != nil {
		return fmt.Errorf("step %q is not a number", args[1])
	}
	change, dir := Change(args[2]), args[3]
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty; name a new folder", dir)
	}
	scratch, err := os.MkdirTemp("", "steps-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	work := filepath.Join(scratch, ch.Name)
	applied, err := Materialize(ctx, ch, step, change, work)
	if err != nil {
		return err
	}
	if err := os.CopyFS(dir, os.DirFS(work)); err != nil {
		return err
	}
	// Inside a workspace (this repository's go.work), the go command would
	// refuse a module the workspace does not list: give the folder its own.
	workspace := ""
	if above, ok := enclosingGoWork(dir); ok {
		workspace = fmt.Sprintf(" (with a go.work of its own, since %s would not know it)", above)
		if err := os.WriteFile(filepath.Join(dir, "go.work"), []byte(fmt.Sprintf("go %s\n\nuse .\n", goVersionOf(work))), 0o644); err != nil {
			return err
		}
	}
	last := applied[len(applied)-1]
	fmt.Fprintf(stdout, "%s %s, %q, is in %s%s\n", ch.Name, last.Name(), last.Title, dir, workspace)
	if change == Red {
		tests, err := newTests(stateBefore(ctx, ch, applied, scratch), work)
		if err == nil && len(tests) > 0 {
			flags, _ := RedFlags(filepath.Join(ch.Dir, "README.md")) // none, when the chapter has no walkthrough
			fmt.Fprintf(stdout, "its new tests fail: cd %s && %s\n", dir, redCommand(tests, flags[step]))
		}
	} else {
		fmt.Fprintf(stdout, "every test passes: cd %s && go test -race ./...\n", dir)
	}
	fmt.Fprintf(stdout, "compare with your own: diff -ru %s YOUR-FOLDER\n", dir)
	return nil
}

// stateBefore materializes the state before the last applied patch, for
// telling which tests the last one adds.
func stateBefore(ctx context.Context, ch *Chapter, applied []Patch, scratch string) string {
	before := filepath.Join(scratch, "before", ch.Name)
	if len(applied) == 1 {
		_ = Base(ch, before)
		return before
	}
	prev := applied[len(applied)-2]
	_, _ = Materialize(ctx, ch, prev.Step, prev.Change, before)
	return before
}

func goVersionOf(dir string) string {
	v, err := goDirective(dir)
	if err != nil {
		return runtime.Version()[len("go"):]
	}
	return v
}

// enclosingGoWork finds a go.work in a folder above dir.
func enclosingGoWork(dir string) (string, bool) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return filepath.Join(d, "go.work"), true
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}

func prove(ctx context.Context, root string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("prove", flag.ContinueOnError)
	fs.SetOutput(stderr)
	write := fs.Bool("w", false, "rewrite the walkthrough's [step]:# blocks from the real states and runs")
	jobs := fs.Int("j", runtime.NumCPU(), "states checked at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reports, err := Prove(ctx, root, fs.Args(), ProveOptions{Jobs: *jobs, Write: *write})
	if err != nil {
		return err
	}
	var problems []Problem
	for _, r := range reports {
		if r.NoSeries {
			fmt.Fprintf(stdout, "%s: no series yet\n", r.Chapter)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", r.Chapter, plural(r.Steps, "step"))
		for _, s := range r.States {
			fmt.Fprintf(stdout, "  step %2d %-8s %s\n", s.Step, s.Change, s.Status)
		}
		problems = append(problems, r.Problems...)
	}
	if len(problems) == 0 {
		return nil
	}
	fmt.Fprintln(stdout)
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	return fmt.Errorf("%d problem(s)", len(problems))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
