package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/internal/version"
)

// Exit codes of the CLI contract.
const (
	exitOK      = 0
	exitFailed  = 1 // an outcome failed, or the command's work did
	exitUsage   = 2 // bad usage or no connection
	exitChanges = 2 // plan --detailed-exitcode: there are changes
	defaultAddr = "nats://127.0.0.1:4222"
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func failed(err error) error { return &exitError{code: exitFailed, err: err} }
func usage(err error) error  { return &exitError{code: exitUsage, err: err} }

// errSilent marks a failure already reported to the user.
var errSilent = errors.New("")

type globals struct {
	conn  connFlags
	stdin io.Reader
	auth  authFlags
	// reload delivers the signals asking `sluice run` to reload its
	// config (SIGHUP, see main); nil when none do.
	reload <-chan os.Signal
}

func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, reload: reloadSignals(ctx)}
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "sluice runs WebAssembly functions when events arrive on NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
	}
	root.SetVersionTemplate(versionLine())
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.conn.register(root)
	g.auth.register(root)
	root.AddCommand(runCmd(g), publishCmd(g), statusCmd(g), invokeCmd(g), bindingsCmd(g), nodesCmd(g), pauseCmd(g), resumeCmd(g), dlqCmd(g), deployCmd(g), functionsCmd(g), rollbackCmd(g), reloadCmd(g), validateCmd(), planCmd(g), fmtCmd(), versionCmd())
	root.AddCommand(newCmd())
	root.AddCommand(logsCmd(g))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage(err) })

	err := g.auth.explain(root.ExecuteContext(g.auth.watch(ctx)))
	if err == nil {
		return exitOK
	}
	code := exitUsage
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if !errors.Is(err, errSilent) {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
	}
	return code
}

// client connects to the runtime; the caller calls done.
func (g *globals) client() (c *client.Client, done func(), err error) {
	nc, err := g.connect()
	if err != nil {
		return nil, nil, err
	}
	if c, err = client.New(nc); err != nil {
		nc.Close()
		return nil, nil, usage(err)
	}
	return c, nc.Close, nil
}

func (g *globals) connect() (*nats.Conn, error) {
	server, opts, err := g.conn.resolve(&g.auth)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(server, opts...)
	if aerr := g.auth.connectError(server, err); aerr != nil {
		return nil, aerr
	}
	if err != nil {
		return nil, usage(fmt.Errorf("connect to %s: %w (is `sluice run` running? set --server, SLUICE_SERVER, NATS_URL or --context)", server, err))
	}
	return nc, nil
}
