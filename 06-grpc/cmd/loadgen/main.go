// Command loadgen puts many concurrent clients on a running server and
// reports what they saw. NOTES.md shows how its numbers were taken.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"realtime/06-grpc/cli"
	"realtime/06-grpc/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := loadgen.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode("loadgen", err, os.Stderr))
}
