package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/render"
)

func dlqCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "Inspect, replay and purge dead letters"}
	cmd.AddCommand(dlqLsCmd(g), dlqShowCmd(g), dlqReplayCmd(g), dlqPurgeCmd(g))
	return cmd
}

// dlqError says which bindings there are when binding has no dead-letter
// stream.
func dlqError(binding string, err error) error {
	if errors.Is(err, client.ErrNoDeadLetters) {
		return usage(fmt.Errorf("no binding %q has dead letters here (bindings: see `sluice bindings`)", binding))
	}
	return err
}

func dlqLsCmd(g *globals) *cobra.Command {
	return op(g, &cobra.Command{
		Use:               "ls [BINDING]",
		Short:             "List dead letters: of one binding, or of all",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeBindings(g, 1),
	}, "print JSON", func(cmd *cobra.Command, args []string, c *client.Client) ([]client.DeadLetter, error) {
		all, err := c.DeadLetters(cmd.Context(), args...)
		if err != nil {
			return nil, dlqError(strings.Join(args, ""), err)
		}
		for i := range all {
			all[i].Headers, all[i].Payload, all[i].Encoding, all[i].History = nil, "", "", nil
		}
		return all, nil
	}, render.DeadLetters)
}

func dlqShowCmd(g *globals) *cobra.Command {
	return op(g, &cobra.Command{
		Use:   "show EVENT_ID",
		Short: "Show a dead letter: payload, headers and every attempt",
		Args:  cobra.ExactArgs(1),
	}, "print JSON", func(cmd *cobra.Command, args []string, c *client.Client) ([]client.DeadLetter, error) {
		found, err := c.DeadLetterOf(cmd.Context(), args[0])
		if errors.Is(err, client.ErrNotFound) {
			return nil, fmt.Errorf("no dead letter of event %q", args[0])
		}
		return found, err
	}, func(w io.Writer, found []client.DeadLetter) {
		for _, d := range found {
			render.DeadLetter(w, d)
		}
	})
}

// needEvents checks, before connecting, that the command names events
// after BINDING or passes --all.
func needEvents(sel *client.Selection, verb string) func(*cobra.Command, []string) error {
	return func(_ *cobra.Command, args []string) error {
		if sel.IDs = args[1:]; !sel.All && len(sel.IDs) == 0 {
			return usage(fmt.Errorf("name the events to %s, or pass --all", verb))
		}
		return nil
	}
}

func dlqReplayCmd(g *globals) *cobra.Command {
	var (
		sel      client.Selection
		opts     client.ReplayOptions
		rateSpec string
	)
	cmd := op(g, &cobra.Command{
		Use:   "replay BINDING [EVENT_ID…] [--all] [--since D] [--error-kind K] [--rate N/s] [--dry-run]",
		Short: "Put dead letters back to the binding that failed them, and only to it",
		Long: "Re-deliver dead letters to their binding only: other subscribers of a topic do not see\n" +
			"the event again. Each dead letter is removed once its replay is durably queued.",
		Args: cobra.MinimumNArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if rateSpec != "" {
				r, err := config.ParseRate(rateSpec)
				if err != nil {
					return usage(fmt.Errorf("--rate: %w", err))
				}
				opts.PerSecond = r.PerSecond()
			}
			if quiet, _ := cmd.Flags().GetBool("json"); !quiet {
				opts.Progress = func(n, of int) {
					if n%100 == 0 {
						fmt.Fprintf(cmd.ErrOrStderr(), "replayed %d/%d\n", n, of)
					}
				}
			}
			return needEvents(&sel, "replay")(cmd, args)
		},
		ValidArgsFunction: completeBindings(g, 1),
	}, "print JSON", func(cmd *cobra.Command, args []string, c *client.Client) (client.ReplayReport, error) {
		rep, err := c.ReplaySelected(cmd.Context(), args[0], sel, opts)
		return rep, dlqError(args[0], err)
	}, render.Replayed)
	cmd.Flags().BoolVar(&sel.All, "all", false, "every dead letter of the binding (with the filters)")
	cmd.Flags().DurationVar(&sel.Since, "since", 0, "only dead letters that failed within this long")
	cmd.Flags().StringVar(&sel.ErrorKind, "error-kind", "", "only this error kind: failed, permanent, trap, timeout, memory")
	cmd.Flags().StringVar(&rateSpec, "rate", "", "at most this fast, e.g. 50/s")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "show what would be replayed; change nothing")
	return cmd
}

func dlqPurgeCmd(g *globals) *cobra.Command {
	var (
		sel client.Selection
		yes bool
	)
	cmd := op(g, &cobra.Command{
		Use:               "purge BINDING [EVENT_ID…] [--all]",
		Short:             "Delete dead letters for good",
		Args:              cobra.MinimumNArgs(1),
		PreRunE:           needEvents(&sel, "purge"),
		ValidArgsFunction: completeBindings(g, 1),
	}, "print JSON: binding, purged (event ids)", func(cmd *cobra.Command, args []string, c *client.Client) (client.PurgeReport, error) {
		rep, err := c.PurgeSelected(cmd.Context(), args[0], sel, func(n int) error {
			if !sel.All || yes || n == 0 {
				return nil
			}
			return confirm(cmd, g.stdin, fmt.Sprintf("Delete all %d dead letters of %s for good?", n, args[0]))
		})
		return rep, dlqError(args[0], err)
	}, render.Purged)
	cmd.Flags().BoolVar(&sel.All, "all", false, "every dead letter of the binding (asks first, unless --yes)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}
