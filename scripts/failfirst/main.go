// Command failfirst proves that each chapter's new tests drive its new code.
//
// For every pair of consecutive chapters (01-… and 02-…, 02-… and 03-…), it
// finds the test functions of the later chapter that are new, or whose source
// changed, compared with the earlier one. It copies the earlier chapter to a
// scratch folder, puts the later chapter's versions of those test files into
// it (with the module path rewritten), and runs those tests there: each must
// fail, by a build failure or a failed assertion. Then it runs them in the
// later chapter, where each must pass. It prints a table per chapter and
// exits 1 if a new test passes on the earlier chapter or fails on its own.
//
// Usage:
//
//	failfirst [-root DIR] [CHAPTER...]
//
// With no chapter named, every chapter after the first is checked.
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "failfirst:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", ".", "the folder that holds the chapters")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	chapters, err := Chapters(*root)
	if err != nil {
		return err
	}
	if len(chapters) < 2 {
		fmt.Fprintf(stdout, "failfirst: %d chapter(s) under %s: nothing to compare\n", len(chapters), *root)
		return nil
	}
	wanted := fs.Args()
	bad := 0
	for i := 1; i < len(chapters); i++ {
		prev, next := chapters[i-1], chapters[i]
		if len(wanted) > 0 && !slices.Contains(wanted, filepath.Base(next)) {
			continue
		}
		results, err := CheckChapter(ctx, prev, next)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(next), err)
		}
		printTable(stdout, prev, next, results)
		for _, r := range results {
			if !r.OK() {
				bad++
			}
		}
	}
	if bad > 0 {
		return errors.New(plural(bad, "new test does", "new tests do") + " not fail first and pass after")
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func printTable(w io.Writer, prev, next string, results []Result) {
	fmt.Fprintf(w, "\n%s: new or changed tests, run on %s and on %s\n\n", filepath.Base(next), filepath.Base(prev), filepath.Base(next))
	if len(results) == 0 {
		fmt.Fprintln(w, "  (no new or changed tests)")
		return
	}
	fmt.Fprintf(w, "| test file | test | on %s | on %s | |\n|---|---|---|---|---|\n", filepath.Base(prev), filepath.Base(next))
	for _, r := range results {
		verdict := "ok"
		if !r.OK() {
			verdict = "**NOT OK**"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.File, r.Test, r.Before, r.After, verdict)
	}
}
