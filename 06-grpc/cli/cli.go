// Package cli holds the two programs of this chapter as functions,
// RunServer and RunClient, so that tests run the real thing in-process; the
// mains in cmd/ only connect them to the process.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// UsageError is a mistake on the command line; main exits with status 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// parseFlags parses args with fs, whose errors print to stderr.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{err} // the flag package has printed the reason and usage
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments: %q", fs.Args())
	}
	return nil
}

// ExitCode turns what a Run function returned into a process exit status,
// printing the error first.
func ExitCode(program string, err error, stderr io.Writer) int {
	var usage UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%s: %v (run with -h for usage)\n", program, err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 1
	}
}
