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
	os.Exit(cliMain())
}

// cliMain runs the command line with the process's signals: INT and TERM
// cancel the command, HUP asks `sluice run` to reload its config.
func cliMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return executeWith(ctx, hup, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}
