package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
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
	}, func(w io.Writer, p pauseChange) {
		if p.Until.After(time.Now().AddDate(50, 0, 0)) {
			fmt.Fprintf(w, "paused %s until `sluice resume %s`\n", p.Binding, p.Binding)
		} else {
			fmt.Fprintf(w, "paused %s until %s\n", p.Binding, p.Until.Local().Format(time.DateTime))
		}
	})
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
	}, func(w io.Writer, p pauseChange) { fmt.Fprintf(w, "resumed %s\n", p.Binding) })
}
