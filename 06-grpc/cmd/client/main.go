// Command client receives updates from the server and prints each as it
// arrives. Run it with -h for its flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"realtime/06-grpc/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.RunClient(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode("client", err, os.Stderr))
}
