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

// dlqError turns the client's errors into the CLI's exit codes.
func dlqError(binding string, err error) error {
	if errors.Is(err, client.ErrNoDeadLetters) {
		return usage(fmt.Errorf("no binding %q has dead letters here (bindings: see `sluice bindings`)", binding))
	}
	return failed(err)
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

// selectDeadLetters reads the dead letters of BINDING (args[0]) that sel
// chooses.
func selectDeadLetters(cmd *cobra.Command, args []string, c *client.Client, sel client.Selection) ([]client.DeadLetter, error) {
	chosen, err := c.Select(cmd.Context(), args[0], sel)
	if err != nil {
		return nil, dlqError(args[0], err)
	}
	return chosen, nil
}

type replayReport struct {
	Binding  string   `json:"binding"`
	Selected int      `json:"selected"`
	Replayed int      `json:"replayed"`
	DryRun   bool     `json:"dry_run,omitempty"`
	Events   []string `json:"events"`
}

func dlqReplayCmd(g *globals) *cobra.Command {
	var (
		sel       client.Selection
		dryRun    bool
		rateSpec  string
		perSecond float64
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
				perSecond = r.PerSecond()
			}
			return needEvents(&sel, "replay")(cmd, args)
		},
		ValidArgsFunction: completeBindings(g, 1),
	}, "print JSON", func(cmd *cobra.Command, args []string, c *client.Client) (replayReport, error) {
		chosen, err := selectDeadLetters(cmd, args, c, sel)
		if err != nil {
			return replayReport{}, err
		}
		rep := replayReport{Binding: args[0], Selected: len(chosen), DryRun: dryRun, Events: []string{}}
		for _, d := range chosen {
			rep.Events = append(rep.Events, d.EventID)
		}
		if dryRun {
			return rep, nil
		}
		quiet, _ := cmd.Flags().GetBool("json")
		err = c.ReplayAll(cmd.Context(), chosen, perSecond, func(n int) {
			if rep.Replayed = n; n%100 == 0 && !quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "replayed %d/%d\n", n, len(chosen))
			}
		})
		return rep, err
	}, func(w io.Writer, rep replayReport) {
		if rep.DryRun {
			fmt.Fprintf(w, "dry run: would replay %d dead letters of %s: %s\n", rep.Selected, rep.Binding, strings.Join(rep.Events, " "))
		} else {
			fmt.Fprintf(w, "replayed %d dead letters to %s\n", rep.Replayed, rep.Binding)
		}
	})
	cmd.Flags().BoolVar(&sel.All, "all", false, "every dead letter of the binding (with the filters)")
	cmd.Flags().DurationVar(&sel.Since, "since", 0, "only dead letters that failed within this long")
	cmd.Flags().StringVar(&sel.ErrorKind, "error-kind", "", "only this error kind: failed, permanent, trap, timeout, memory")
	cmd.Flags().StringVar(&rateSpec, "rate", "", "at most this fast, e.g. 50/s")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be replayed; change nothing")
	return cmd
}

type purgeReport struct {
	Binding string   `json:"binding"`
	Purged  []string `json:"purged"`
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
	}, "print JSON: binding, purged (event ids)", func(cmd *cobra.Command, args []string, c *client.Client) (purgeReport, error) {
		chosen, err := selectDeadLetters(cmd, args, c, sel)
		if err != nil {
			return purgeReport{}, err
		}
		if sel.All && !yes && len(chosen) > 0 {
			if err := confirm(cmd, g.stdin, fmt.Sprintf("Delete all %d dead letters of %s for good?", len(chosen), args[0])); err != nil {
				return purgeReport{}, err
			}
		}
		rep := purgeReport{Binding: args[0], Purged: []string{}}
		for _, d := range chosen {
			rep.Purged = append(rep.Purged, d.EventID)
		}
		return rep, c.Purge(cmd.Context(), chosen)
	}, func(w io.Writer, rep purgeReport) {
		fmt.Fprintf(w, "purged %d dead letters of %s\n", len(rep.Purged), rep.Binding)
	})
	cmd.Flags().BoolVar(&sel.All, "all", false, "every dead letter of the binding (asks first, unless --yes)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}
