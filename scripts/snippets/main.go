// Command snippets checks that the code shown in Markdown files is the code
// in the repository.
//
// Every fenced Go block must be marked by the line before it (blank lines
// between are allowed), in one of two ways:
//
//	[embedmd]:# (server/shortpoll.go /func handleShortPoll/ /^}/)
//	<!-- intermediate: the naive server, replaced in step 3 -->
//
// The first, embedmd's syntax, names a file (relative to the Markdown file)
// and a region: from the first match of the start regexp to the end of the
// first match of the end regexp after it ($ for the end of the file; no
// regexps for the whole file). Regexps are multi-line: ^ and $ match at line
// breaks. The block must equal that region. Any fenced block may carry such
// a marker, not only Go.
//
// The second marks code that no longer exists in its final form: a step of
// the walkthrough that a later step replaces. It must say why.
//
// Usage:
//
//	snippets [-w] FILE.md...
//
// With -w, drifted blocks are rewritten from the code instead of reported.
// The exit status is 1 when a problem is found.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "snippets:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	write := fs.Bool("w", false, "rewrite drifted blocks from the code")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("usage: %s [-w] FILE.md...", args[0])
	}
	problems, checked := 0, 0
	for _, path := range fs.Args() {
		report, err := Check(path, *write)
		if err != nil {
			return err
		}
		checked += report.Checked
		for _, p := range report.Problems {
			fmt.Fprintln(stdout, p)
			problems++
		}
	}
	if problems > 0 {
		return fmt.Errorf("%d problem(s) in %d file(s)", problems, fs.NArg())
	}
	fmt.Fprintf(stdout, "snippets: %d block(s) in %d file(s) match the code\n", checked, fs.NArg())
	return nil
}
