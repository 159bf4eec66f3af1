package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/client/connect"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/prompt"
	"github.com/sluice-run/sluice/internal/render"
	"github.com/sluice-run/sluice/internal/version"
)

// Exit codes of the CLI contract.
const (
	exitOK      = 0
	exitFailed  = 1 // an outcome failed, or the command's work did
	exitUsage   = 2 // bad usage or no connection
	exitChanges = 2 // plan --detailed-exitcode: there are changes
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
	// conn says where the runtime is and how to reach it, the way natscli
	// does (see package client/connect).
	conn    connect.Options
	denials connect.Denials
	stdin   io.Reader
	reload  <-chan os.Signal
}

func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return executeWith(ctx, nil, args, stdin, stdout, stderr)
}

// executeWith runs the command line; reload delivers the signals that
// ask `sluice run` to reload its config.
func executeWith(ctx context.Context, reload <-chan os.Signal, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, reload: reload}
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "sluice runs WebAssembly functions when events arrive on NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
	}
	root.SetVersionTemplate(version.Line() + "\n")
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.conn.AddFlags(root.PersistentFlags())
	root.AddCommand(runCmd(g), publishCmd(g), statusCmd(g), invokeCmd(g), bindingsCmd(g), nodesCmd(g), pauseCmd(g), resumeCmd(g), dlqCmd(g), deployCmd(g), functionsCmd(g), rollbackCmd(g), reloadCmd(g), validateCmd(), planCmd(g), fmtCmd(), versionCmd(), newCmd(), logsCmd(g))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage(err) })

	err := root.ExecuteContext(g.denials.Watch(ctx))
	if denied := g.denials.Err(); err != nil && denied != nil {
		who := "this user"
		if g.conn.User != "" {
			who = "user " + g.conn.User
		}
		err = usage(fmt.Errorf("permission denied: %s may not do this (%v); it needs a user with role \"admin\"", who, denied))
	}
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
	nc, err := g.conn.Dial(nats.Name("sluice cli"), g.denials.Option())
	if err != nil {
		return nil, nil, usage(err)
	}
	if c, err = client.New(nc); err != nil {
		nc.Close()
		return nil, nil, usage(err)
	}
	return c, nc.Close, nil
}

// printed is an error that comes after the value was printed.
type printed struct{ error }

// op makes cmd call the runtime through the client and print what call
// returns, with --json (jsonHelp says what) as JSON. An error of call
// exits 1 unless it carries its own code; one wrapped in printed comes
// after the value is printed. Checks that need no runtime go in PreRunE.
func op[T any](g *globals, cmd *cobra.Command, jsonHelp string,
	call func(*cobra.Command, []string, *client.Client) (T, error), text func(io.Writer, T)) *cobra.Command {
	var asJSON bool
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, done, err := g.client()
		if err != nil {
			return err
		}
		defer done()
		v, err := call(cmd, args, c)
		var after printed
		if err != nil && !errors.As(err, &after) {
			var ee *exitError
			if errors.As(err, &ee) {
				return err
			}
			return failed(err)
		}
		if err := emit(cmd, asJSON, v, func(w io.Writer) { text(w, v) }); err != nil {
			return err
		}
		return after.error
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, jsonHelp)
	return cmd
}

// emit prints v: as JSON with --json, else as text.
func emit(cmd *cobra.Command, asJSON bool, v any, text func(io.Writer)) error {
	if asJSON {
		return render.JSON(cmd.OutOrStdout(), v)
	}
	text(cmd.OutOrStdout())
	return nil
}

// list makes a command that prints the rows read returns as a table
// under header, or as a JSON array (never null).
func list[T any](g *globals, use, short, header string,
	read func(*client.Client, context.Context) ([]T, error), line func(io.Writer, T)) *cobra.Command {
	return op(g, &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}, "print JSON",
		func(cmd *cobra.Command, _ []string, c *client.Client) ([]T, error) {
			rows, err := read(c, cmd.Context())
			if rows == nil {
				rows = []T{}
			}
			return rows, err
		}, func(w io.Writer, rows []T) { render.Table(w, header, rows, line) })
}

// confirm asks question on stderr; without a terminal on in it refuses
// (exit 2).
func confirm(cmd *cobra.Command, in io.Reader, question string) error {
	err := prompt.Confirm(in, cmd.ErrOrStderr(), question)
	if errors.Is(err, prompt.ErrNoTerminal) {
		return usage(err)
	}
	if err != nil {
		return failed(err)
	}
	return nil
}

// completionTimeout bounds the runtime look-up behind a shell completion:
// a completion that hangs is worse than none.
const completionTimeout = 2 * time.Second

// completeNames completes the first n arguments with names read from the
// config the running runtime recorded; without a runtime it offers none.
func completeNames(g *globals, n int, names func(*config.Effective) []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, done, err := g.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer done()
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		raw, err := c.RunningConfig(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		eff, err := config.DecodeEffective(raw)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names(eff), cobra.ShellCompDirectiveNoFileComp
	}
}

func completeBindings(g *globals, n int) cobra.CompletionFunc {
	return completeNames(g, n, (*config.Effective).BindingNames)
}

func completeFunctions(g *globals, n int) cobra.CompletionFunc {
	return completeNames(g, n, (*config.Effective).FunctionNames)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print sluice's version, the Go release that built it, and the platform",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.Line())
			return err
		},
	}
}
