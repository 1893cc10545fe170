// Command server publishes every line typed on its standard input and serves
// the updates over HTTP. Run it with -h for its flags.
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
	err := cli.RunServer(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode("server", err, os.Stderr))
}
