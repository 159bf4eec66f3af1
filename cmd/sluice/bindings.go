package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

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
	slices.SortFunc(out, func(a, b bindingView) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func bindingsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bindings",
		Short: "List every queue and topic binding with its backlog, work in flight and dead letters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, js, err := g.jetStream()
			if err != nil {
				return err
			}
			defer nc.Close()
			views, err := listBindings(cmd.Context(), js)
			if err != nil {
				return failed(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if views == nil {
					views = []bindingView{}
				}
				return writeJSON(out, views)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BINDING\tKIND\tSUBJECT\tFUNCTION\tPENDING\tIN FLIGHT\tRETRYING\tDEAD LETTERS\tRATE\tSTATE")
			for _, v := range views {
				rate, state := "-", "running"
				if v.Rate > 0 {
					rate = fmt.Sprintf("%g/s", v.Rate)
				}
				if v.Paused {
					state = "paused for " + v.PausedFor
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", v.Name, v.Kind, v.Subject, v.Function,
					v.Pending, v.InFlight, v.Retrying, v.DeadLetters, rate, state)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// pauseCmd and resumeCmd stop and restart delivery to a binding (its events
// and its replays); events published meanwhile wait in the stream.
func pauseCmd(g *globals) *cobra.Command {
	var forDur time.Duration
	cmd := &cobra.Command{
		Use:   "pause BINDING [--for D]",
		Short: "Stop delivering events to a binding (they wait in JetStream) until resume or --for passes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			until := time.Now().Add(forDur)
			if forDur <= 0 {
				until = time.Now().AddDate(100, 0, 0)
			}
			return setPaused(cmd, g, args[0], &until)
		},
	}
	cmd.Flags().DurationVar(&forDur, "for", 0, "resume by itself after this long (default: until `sluice resume`)")
	return cmd
}

func resumeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resume BINDING",
		Short: "Deliver a paused binding's events again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setPaused(cmd, g, args[0], nil)
		},
	}
}

func setPaused(cmd *cobra.Command, g *globals, binding string, until *time.Time) error {
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
			_, err = js.ResumeConsumer(ctx, t[0], t[1])
		}
		if err != nil {
			if i == 0 {
				return failed(fmt.Errorf("binding %s: %w (see `sluice bindings`)", binding, err))
			}
			return failed(fmt.Errorf("binding %s replays: %w", binding, err))
		}
	}
	if until != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "paused %s\n", binding)
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "resumed %s\n", binding)
	}
	return nil
}
