package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/internal/render"
)

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
			// A regular file within the module size limit: /dev/zero is
			// an error, not an endless read.
			if wasm, err = functions.ReadModule(args[1]); err != nil {
				return failed(fmt.Errorf("deploy %s: %w", args[0], err))
			}
			// The cheap checks here, with the runtime's own words; the
			// runtime validates the rest (exports, imports) when compiling.
			if _, err := sandbox.CapMemory(wasm, 4<<30); err != nil {
				return failed(fmt.Errorf("deploy %s: %s: %w", args[0], args[1], err))
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
	}, func(w io.Writer, rep client.VersionChange) {
		fmt.Fprintf(w, "deployed %s version %s (was %s)\n", rep.Function, render.ShortVersion(rep.Version), render.ShortVersion(rep.Previous))
	})
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
	}, func(w io.Writer, rep client.VersionChange) {
		fmt.Fprintf(w, "rolled %s back to version %s (was %s)\n", rep.Function, render.ShortVersion(rep.Version), render.ShortVersion(rep.Previous))
	})
}

func functionsCmd(g *globals) *cobra.Command {
	return list(g, "functions", "List functions with their versions and which one is live",
		render.FunctionsHeader, (*client.Client).Functions, render.Function)
}

func reloadCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make every running node read its config file again and apply what changed",
		Long: "Ask every running node to re-read its runtime.hcl (as on a file change or SIGHUP),\n" +
			"and print each node's answer. An invalid file is reported, with every diagnostic,\n" +
			"and that node's running config stays.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			nodes, err := c.Reload(ctx)
			if nodes == nil {
				return failed(err)
			}
			var problems []string
			for _, n := range nodes {
				if !n.Reloaded {
					problems = append(problems, fmt.Sprintf("%s: not reloaded; its running config stays:\n%s", n.Node, n.Error))
				} else if !asJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "reloaded %s\n", n.Node)
				}
			}
			if err != nil {
				problems = append(problems, err.Error())
			}
			if asJSON {
				if err := render.JSON(cmd.OutOrStdout(), struct {
					Nodes []client.NodeReload `json:"nodes"`
				}{nodes}); err != nil {
					return err
				}
			}
			if len(problems) > 0 {
				return failed(errors.New(strings.Join(problems, "\n")))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: every node's answer (node, reloaded, error)")
	return cmd
}
