// Command sluice runs the sluice runtime and talks to a running one.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-run/sluice/functions/worker"
)

func main() {
	worker.RunIfWorker()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
