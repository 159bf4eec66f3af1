package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
)

func deployCmd(g *globals) *cobra.Command {
	var (
		timeout time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "deploy NAME FILE.wasm",
		Short: "Deploy a new version of a function to the running runtime, without dropping an event",
		Long: "Store the module in JetStream (every node sees it), have the runtime validate and compile it,\n" +
			"then swap it in: invocations in flight finish on the old version, the next ones use the new.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, file := args[0], args[1]
			// A regular file within the module size limit: /dev/zero is
			// an error, not an endless read.
			wasm, err := functions.ReadModule(file)
			if err != nil {
				return failed(fmt.Errorf("deploy %s: %w", name, err))
			}
			// The cheap checks here, with the runtime's own words; the
			// runtime validates the rest (exports, imports) when compiling.
			if _, err := sandbox.CapMemory(wasm, 4<<30); err != nil {
				return failed(fmt.Errorf("deploy %s: %s: %w", name, file, err))
			}
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			rep, err := c.Deploy(cmd.Context(), name, wasm, g.identity(), timeout)
			if err != nil {
				// The runtime knows the module by its stored copy: name the
				// file the user gave.
				return failed(fmt.Errorf("deploy %s: %s: %w", name, file, err))
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployed %s version %s (was %s)\n", name, shortVersion(rep.Version), shortVersion(rep.Previous))
			return nil
		},
		ValidArgsFunction: completeFunctions(g, 1),
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for validation, compilation and the swap")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: function, version, previous")
	return cmd
}

func rollbackCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rollback NAME [VERSION]",
		Short: "Make an earlier version of a function live again (default: the one before the live one)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			version := ""
			if len(args) == 2 {
				version = args[1]
			}
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			rep, err := c.Rollback(cmd.Context(), args[0], version, g.identity(), 3*time.Minute)
			if err != nil {
				return failed(fmt.Errorf("rollback %s: %w", args[0], err))
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rolled %s back to version %s (was %s)\n", args[0], shortVersion(rep.Version), shortVersion(rep.Previous))
			return nil
		},
		ValidArgsFunction: completeFunctions(g, 1),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: function, version, previous")
	return cmd
}

// identity names who deploys, for the version record.
func (g *globals) identity() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil {
		name += "@" + host
	}
	return name
}

func functionsCmd(g *globals) *cobra.Command {
	return listCmd(g, "functions", "List functions with their versions and which one is live",
		"FUNCTION\tVERSION\tLIVE\tSIZE\tDEPLOYED AT\tBY\tFROM",
		(*client.Client).Functions, func(w io.Writer, r client.FunctionRecord) {
			for _, v := range r.Versions {
				live := ""
				if v.Version == r.Live {
					live = "*"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Name, shortVersion(v.Version), live, v.Size,
					v.DeployedAt.Local().Format(time.DateTime), v.DeployedBy, v.Source)
			}
		})
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
				if err := writeJSON(cmd.OutOrStdout(), struct {
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
