package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/render"
)

func bindingsCmd(g *globals) *cobra.Command {
	return list(g, "bindings", "List every queue and topic binding with its backlog, work in flight and dead letters",
		render.BindingsHeader, (*client.Client).Bindings, render.Binding)
}

func nodesCmd(g *globals) *cobra.Command {
	return list(g, "nodes", "List the running nodes and their work", render.NodesHeader, (*client.Client).Nodes, render.Node)
}

// pauseChange is what pause and resume changed.
type pauseChange struct {
	Binding string     `json:"binding"`
	Paused  bool       `json:"paused"`
	Until   *time.Time `json:"until,omitempty"`
}

// pauseCmd and resumeCmd stop and restart delivery to a binding (its events
// and its replays); events published meanwhile wait in the stream.
func pauseCmd(g *globals) *cobra.Command {
	var forDur time.Duration
	until := time.Now().AddDate(100, 0, 0)
	cmd := op(g, &cobra.Command{
		Use:   "pause BINDING [--for D]",
		Short: "Stop delivering events to a binding (they wait in JetStream) until resume or --for passes",
		Args:  cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("for") {
				return nil
			}
			if forDur <= 0 {
				return usage(fmt.Errorf("--for %s: want a positive duration such as 10m (leave --for out to pause until `sluice resume`)", forDur))
			}
			until = time.Now().Add(forDur)
			return nil
		},
		ValidArgsFunction: completeBindings(g, 1),
	}, "print JSON: binding, paused, until", func(cmd *cobra.Command, args []string, c *client.Client) (pauseChange, error) {
		if err := c.Pause(cmd.Context(), args[0], until); err != nil {
			return pauseChange{}, fmt.Errorf("%w (see `sluice bindings`)", err)
		}
		return pauseChange{Binding: args[0], Paused: true, Until: &until}, nil
	}, func(w io.Writer, p pauseChange) { render.Paused(w, p.Binding, p.Until) })
	cmd.Flags().DurationVar(&forDur, "for", 0, "resume by itself after this long, a positive `duration` such as 10m (default: paused until \"sluice resume\")")
	return cmd
}

func resumeCmd(g *globals) *cobra.Command {
	return op(g, &cobra.Command{
		Use:               "resume BINDING",
		Short:             "Deliver a paused binding's events again",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeBindings(g, 1),
	}, "print JSON: binding, paused", func(cmd *cobra.Command, args []string, c *client.Client) (pauseChange, error) {
		if err := c.Resume(cmd.Context(), args[0]); err != nil {
			return pauseChange{}, fmt.Errorf("%w (see `sluice bindings`)", err)
		}
		return pauseChange{Binding: args[0]}, nil
	}, func(w io.Writer, p pauseChange) { render.Paused(w, p.Binding, p.Until) })
}

func deployCmd(g *globals) *cobra.Command {
	var (
		timeout time.Duration
		wasm    []byte
	)
	cmd := op(g, &cobra.Command{
		Use:   "deploy NAME FILE.wasm",
		Short: "Deploy a new version of a function to the running runtime, without dropping an event",
		Long: "Store the module in JetStream (every node sees it), have the runtime validate and compile it,\n" +
			"then swap it in: invocations in flight finish on the old version, the next ones use the new.",
		Args: cobra.ExactArgs(2),
		PreRunE: func(_ *cobra.Command, args []string) (err error) {
			if wasm, err = functions.ReadDeployable(args[1]); err != nil {
				return failed(fmt.Errorf("deploy %s: %w", args[0], err))
			}
			return nil
		},
		ValidArgsFunction: completeFunctions(g, 1),
	}, "print JSON: function, version, previous", func(cmd *cobra.Command, args []string, c *client.Client) (client.VersionChange, error) {
		rep, err := c.Deploy(cmd.Context(), args[0], wasm, client.Identity(), timeout)
		if err != nil {
			// The runtime knows the module by its stored copy: name the
			// file the user gave.
			return rep, fmt.Errorf("deploy %s: %s: %w", args[0], args[1], err)
		}
		return rep, nil
	}, func(w io.Writer, rep client.VersionChange) { render.Deployed(w, "deployed", rep) })
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for validation, compilation and the swap")
	return cmd
}

func rollbackCmd(g *globals) *cobra.Command {
	return op(g, &cobra.Command{
		Use:               "rollback NAME [VERSION]",
		Short:             "Make an earlier version of a function live again (default: the one before the live one)",
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: completeFunctions(g, 1),
	}, "print JSON: function, version, previous", func(cmd *cobra.Command, args []string, c *client.Client) (client.VersionChange, error) {
		rep, err := c.Rollback(cmd.Context(), args[0], strings.Join(args[1:], ""), client.Identity(), 3*time.Minute)
		if err != nil {
			return rep, fmt.Errorf("rollback %s: %w", args[0], err)
		}
		return rep, nil
	}, func(w io.Writer, rep client.VersionChange) { render.Deployed(w, "rolled back", rep) })
}

func functionsCmd(g *globals) *cobra.Command {
	return list(g, "functions", "List functions with their versions and which one is live",
		render.FunctionsHeader, (*client.Client).Functions, render.Function)
}

func reloadCmd(g *globals) *cobra.Command {
	return op(g, &cobra.Command{
		Use:   "reload",
		Short: "Make every running node read its config file again and apply what changed",
		Long: "Ask every running node to re-read its runtime.hcl (as on a file change or SIGHUP),\n" +
			"and print each node's answer. An invalid file is reported, with every diagnostic,\n" +
			"and that node's running config stays.",
		Args: cobra.NoArgs,
	}, "print JSON: every node's answer (node, reloaded, error)", func(cmd *cobra.Command, _ []string, c *client.Client) (reloadReport, error) {
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
		defer cancel()
		nodes, err := c.Reload(ctx)
		if nodes == nil {
			return reloadReport{}, err
		}
		if err := client.ReloadError(nodes, err); err != nil {
			return reloadReport{nodes}, printed{failed(err)}
		}
		return reloadReport{nodes}, nil
	}, func(w io.Writer, r reloadReport) { render.Reloaded(w, r.Nodes) })
}

type reloadReport struct {
	Nodes []client.NodeReload `json:"nodes"`
}

// errNotStored answers `sluice logs --follow=false`: there is no history
// to print.
var errNotStored = errors.New("logs are streamed, not stored: drop --follow=false to follow them (past lines are in each node's own log)")

func logsCmd(g *globals) *cobra.Command {
	var (
		asJSON, follow bool
		filter         client.LogFilter
	)
	cmd := &cobra.Command{
		Use:   "logs [FUNCTION|BINDING]",
		Short: "Stream guests' log lines from every node, as invocations write them",
		Long: "Stream the log lines guests write (sluice_log, WASI stdout and stderr), from every node\n" +
			"of the runtime, until interrupted. Lines are not stored: only invocations running while\n" +
			"this command runs are shown. Needs an admin user.",
		Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: completeNames(g, 1, func(e *config.Effective) []string {
			return append(e.FunctionNames(), e.BindingNames()...)
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !follow {
				return usage(errNotStored)
			}
			if len(args) == 1 {
				filter.Name = args[0]
			}
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			stream, err := c.FollowLogs(filter)
			if errors.Is(err, nats.ErrPermissionViolation) {
				return usage(fmt.Errorf("%w; it needs a user with role \"admin\"", err))
			}
			if err != nil {
				return usage(err)
			}
			defer stream.Close()
			what := "every function"
			if filter.Name != "" {
				what = strconv.Quote(filter.Name)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "streaming the log lines of %s from every node (Ctrl-C to stop)\n", what)
			out, enc := cmd.OutOrStdout(), json.NewEncoder(cmd.OutOrStdout())
			if err := stream.Follow(cmd.Context(), func(r client.LogRecord) error {
				if asJSON {
					return enc.Encode(r)
				}
				return render.LogLine(out, r)
			}); err != nil {
				return failed(err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", true, "follow the stream (the only mode: lines are not stored)")
	cmd.Flags().StringVar(&filter.Event, "event", "", "only the lines of this event id")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return cmd
}
