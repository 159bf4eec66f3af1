package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/runtime"
	"github.com/sluice-run/sluice/triggers"
)

type bindingView struct {
	Name        string  `json:"binding"`
	Kind        string  `json:"kind"`
	Subject     string  `json:"subject"`
	Function    string  `json:"function"`
	Pending     uint64  `json:"pending"`
	InFlight    int     `json:"in_flight"`
	Retrying    int     `json:"retrying"`
	DeadLetters uint64  `json:"dead_letters"`
	Rate        float64 `json:"rate,omitempty"`
	Paused      bool    `json:"paused"`
	PausedFor   string  `json:"paused_for,omitempty"`
	// Nodes is each running node's share of the work, by node name.
	Nodes []nodeWork `json:"nodes"`
}

// nodeWork is one node's work on one binding.
type nodeWork struct {
	Node string `json:"node"`
	triggers.Load
}

// readNodes returns the state every running node announced, by name (none
// when no runtime made the bucket).
func readNodes(ctx context.Context, js jetstream.JetStream) ([]runtime.NodeState, error) {
	kv, err := js.KeyValue(ctx, runtime.NodesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []runtime.NodeState
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // left meanwhile
		}
		var st runtime.NodeState
		if json.Unmarshal(e.Value(), &st) == nil {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b runtime.NodeState) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// nodesCell shows each node's in-flight events, "n1:2 n2:0".
func nodesCell(nodes []nodeWork) string {
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

// listBindings reads every binding's state from its consumer.
func listBindings(ctx context.Context, js jetstream.JetStream) ([]bindingView, error) {
	var out []bindingView
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		kind := ""
		switch {
		case strings.HasPrefix(si.Config.Name, "SLUICE_Q_"):
			kind = "queue"
		case strings.HasPrefix(si.Config.Name, "SLUICE_T_"):
			kind = "topic"
		default:
			continue
		}
		s, err := js.Stream(ctx, si.Config.Name)
		if err != nil {
			return nil, err
		}
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			md := ci.Config.Metadata
			if md[triggers.MetaBinding] == "" {
				continue
			}
			v := bindingView{
				Name: md[triggers.MetaBinding], Kind: kind, Subject: strings.Join(si.Config.Subjects, ","),
				Function: md[triggers.MetaFunction], Pending: ci.NumPending,
				InFlight: ci.NumAckPending - ci.NumRedelivered, Retrying: ci.NumRedelivered,
				Paused: ci.Paused,
			}
			if ci.Paused {
				v.PausedFor = ci.PauseRemaining.Round(time.Second).String()
			}
			v.Rate, _ = strconv.ParseFloat(md[triggers.MetaRate], 64)
			if dlq, err := js.Stream(ctx, triggers.DeadLetterStreamName(v.Name)); err == nil {
				if info, err := dlq.Info(ctx); err == nil {
					v.DeadLetters = info.State.Msgs
				}
			}
			if rs, err := js.Stream(ctx, triggers.ReplayStreamName(v.Name)); err == nil {
				if info, err := rs.Info(ctx); err == nil {
					v.Pending += info.State.Msgs
				}
			}
			out = append(out, v)
		}
		if err := consumers.Err(); err != nil {
			return nil, err
		}
	}
	if err := streams.Err(); err != nil {
		return nil, err
	}
	// A user who may not read the nodes bucket (the publish role) still
	// sees the bindings; Nodes stays nil, shown as "?".
	nodes, err := readNodes(ctx, js)
	for i := range out {
		if err != nil {
			break
		}
		out[i].Nodes = []nodeWork{}
		for _, n := range nodes {
			if l, ok := n.Bindings[out[i].Name]; ok {
				out[i].Nodes = append(out[i].Nodes, nodeWork{Node: n.Name, Load: l})
			}
		}
	}
	slices.SortFunc(out, func(a, b bindingView) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func bindingsCmd(g *globals) *cobra.Command {
	return listCmd(g, "bindings", "List every queue and topic binding with its backlog, work in flight and dead letters",
		"BINDING\tKIND\tSUBJECT\tFUNCTION\tPENDING\tIN FLIGHT\tRETRYING\tDEAD LETTERS\tRATE\tSTATE\tNODES (IN FLIGHT)",
		listBindings, func(w io.Writer, v bindingView) {
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
		readNodes, func(w io.Writer, n runtime.NodeState) {
			var total triggers.Load
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

// resumeLead is how far ahead `sluice resume` first sets the pause's end;
// maxResumeLead bounds how far it moves it when the server applied the
// change too late.
const (
	resumeLead    = 100 * time.Millisecond
	maxResumeLead = 2 * time.Second
)

// resume ends a consumer's pause. Not with ResumeConsumer: nats-server
// 2.15.2 wakes a paused consumer's waiting pull requests only from the
// timer it arms for a pause deadline still ahead, so after ResumeConsumer
// the backlog waited for the client's next pull request (measured: 15 s;
// chaos.TestUpstreamResumeWakesNoWaitingPull reproduces it). A deadline
// that had passed when the server applied it arms no timer either; a
// server that says the consumer is not paused any more has done just
// that, so the deadline is moved further ahead and set again. (A cluster
// answers before the consumer's leader applies the change; there the
// runtime's short pull expiry bounds the wait.)
func resume(ctx context.Context, js jetstream.JetStream, stream, consumer string) error {
	for lead := resumeLead; ; lead *= 2 {
		resp, err := js.PauseConsumer(ctx, stream, consumer, time.Now().Add(lead))
		if err != nil || resp.Paused || lead >= maxResumeLead {
			return err
		}
	}
}

func setPaused(cmd *cobra.Command, g *globals, binding string, until *time.Time, asJSON bool) error {
	nc, js, err := g.jetStream()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx := cmd.Context()
	targets := [][2]string{
		{triggers.BindingStreamName(binding), triggers.BindingConsumerName(binding)},
		{triggers.ReplayStreamName(binding), triggers.ReplayConsumerName(binding)},
	}
	for i, t := range targets {
		if until != nil {
			_, err = js.PauseConsumer(ctx, t[0], t[1], *until)
		} else {
			err = resume(ctx, js, t[0], t[1])
		}
		if err != nil {
			if i == 0 {
				return failed(fmt.Errorf("binding %s: %w (see `sluice bindings`)", binding, err))
			}
			return failed(fmt.Errorf("binding %s replays: %w", binding, err))
		}
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
