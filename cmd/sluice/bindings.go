package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
)

// nodesCell shows each node's in-flight events, "n1:2 n2:0".
func nodesCell(nodes []client.NodeWork) string {
	if nodes == nil {
		return "?"
	}
	if len(nodes) == 0 {
		return "-"
	}
	cells := make([]string, len(nodes))
	for i, n := range nodes {
		cells[i] = fmt.Sprintf("%s:%d", n.Node, n.InFlight)
	}
	return strings.Join(cells, " ")
}

func bindingsCmd(g *globals) *cobra.Command {
	return listCmd(g, "bindings", "List every queue and topic binding with its backlog, work in flight and dead letters",
		"BINDING\tKIND\tSUBJECT\tFUNCTION\tPENDING\tIN FLIGHT\tRETRYING\tDEAD LETTERS\tRATE\tSTATE\tNODES (IN FLIGHT)",
		(*client.Client).Bindings, func(w io.Writer, v client.Binding) {
			rate, state := "-", "running"
			if v.Rate > 0 {
				rate = fmt.Sprintf("%g/s", v.Rate)
			}
			if v.Paused {
				state = "paused for " + v.PausedFor
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", v.Name, v.Kind, v.Subject, v.Function,
				v.Pending, v.InFlight, v.Retrying, v.DeadLetters, rate, state, nodesCell(v.Nodes))
		})
}

func nodesCmd(g *globals) *cobra.Command {
	return listCmd(g, "nodes", "List the running nodes and their work",
		"NODE\tURL\tUP\tLAST SEEN\tIN FLIGHT\tINVOCATIONS\tSUCCEEDED",
		(*client.Client).Nodes, func(w io.Writer, n client.NodeState) {
			var total client.Load
			for _, l := range n.Bindings {
				total.InFlight += l.InFlight
				total.Invocations += l.Invocations
				total.Succeeded += l.Succeeded
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s ago\t%d\t%d\t%d\n", n.Name, n.URL,
				time.Since(n.Started).Round(time.Second), time.Since(n.Updated).Round(100*time.Millisecond),
				total.InFlight, total.Invocations, total.Succeeded)
		})
}

// pauseCmd and resumeCmd stop and restart delivery to a binding (its events
// and its replays); events published meanwhile wait in the stream.
func pauseCmd(g *globals) *cobra.Command {
	var (
		forDur time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "pause BINDING [--for D]",
		Short: "Stop delivering events to a binding (they wait in JetStream) until resume or --for passes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			until := time.Now().AddDate(100, 0, 0)
			if cmd.Flags().Changed("for") {
				if forDur <= 0 {
					return usage(fmt.Errorf("--for %s: want a positive duration such as 10m (leave --for out to pause until `sluice resume`)", forDur))
				}
				until = time.Now().Add(forDur)
			}
			return setPaused(cmd, g, args[0], &until, asJSON)
		},
		ValidArgsFunction: completeBindings(g, 1),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: binding, paused, until")
	cmd.Flags().DurationVar(&forDur, "for", 0, "resume by itself after this long, a positive `duration` such as 10m (default: paused until \"sluice resume\")")
	return cmd
}

func resumeCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "resume BINDING",
		Short: "Deliver a paused binding's events again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setPaused(cmd, g, args[0], nil, asJSON)
		},
		ValidArgsFunction: completeBindings(g, 1),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: binding, paused")
	return cmd
}

// pauseChange is what pause and resume changed, for --json.
type pauseChange struct {
	Binding string     `json:"binding"`
	Paused  bool       `json:"paused"`
	Until   *time.Time `json:"until,omitempty"`
}

func setPaused(cmd *cobra.Command, g *globals, binding string, until *time.Time, asJSON bool) error {
	c, done, err := g.client()
	if err != nil {
		return err
	}
	defer done()
	if until != nil {
		err = c.Pause(cmd.Context(), binding, *until)
	} else {
		err = c.Resume(cmd.Context(), binding)
	}
	if err != nil {
		return failed(fmt.Errorf("%w (see `sluice bindings`)", err))
	}
	out := cmd.OutOrStdout()
	switch {
	case asJSON:
		return writeJSON(out, pauseChange{Binding: binding, Paused: until != nil, Until: until})
	case until == nil:
		fmt.Fprintf(out, "resumed %s\n", binding)
	case until.After(time.Now().AddDate(50, 0, 0)):
		fmt.Fprintf(out, "paused %s until `sluice resume %s`\n", binding, binding)
	default:
		fmt.Fprintf(out, "paused %s until %s\n", binding, until.Local().Format(time.DateTime))
	}
	return nil
}
