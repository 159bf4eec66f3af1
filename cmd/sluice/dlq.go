package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
)

func dlqCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, replay and purge dead letters",
	}
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
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "ls [BINDING]",
		Short:             "List dead letters: of one binding, or of all",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeBindings(g, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			all, err := c.DeadLetters(cmd.Context(), args...)
			if err != nil {
				return dlqError(strings.Join(args, ""), err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				for i := range all {
					all[i].Headers, all[i].Payload, all[i].Encoding, all[i].History = nil, "", "", nil
				}
				return writeJSON(out, all)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BINDING\tSEQ\tEVENT\tATTEMPTS\tKIND\tLAST FAILURE\tERROR")
			for _, d := range all {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\n", d.Binding, d.Seq, d.EventID, d.Attempts, d.ErrorKind,
					d.LastFailure.Local().Format(time.DateTime), oneLine(d.Error, 80))
			}
			tw.Flush()
			fmt.Fprintf(out, "%d dead letters\n", len(all))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

func dlqShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show EVENT_ID",
		Short: "Show a dead letter: payload, headers and every attempt",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			found, err := c.DeadLetterOf(cmd.Context(), args[0])
			if errors.Is(err, client.ErrNotFound) {
				return failed(fmt.Errorf("no dead letter of event %q", args[0]))
			}
			if err != nil {
				return failed(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, found)
			}
			for _, d := range found {
				printDeadLetter(out, d)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printDeadLetter(w io.Writer, d client.DeadLetter) {
	fmt.Fprintf(w, "event %s, dead letter %d of %s\n", d.EventID, d.Seq, d.Binding)
	fmt.Fprintf(w, "subject: %s\nfunction: %s (version %s)\nattempts: %d\nlast error (%s): %s\nfirst failure: %s\nlast failure: %s\n",
		d.Subject, d.Function, shortVersion(d.Version), d.Attempts, d.ErrorKind, d.Error,
		d.FirstFailure.Local().Format(time.RFC3339), d.LastFailure.Local().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ATTEMPT\tAT\tKIND\tDURATION\tVERSION\tNODE\tERROR")
	for _, a := range d.History {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Attempt, a.At.Local().Format(time.TimeOnly), a.Kind, a.Duration,
			shortVersion(a.Version), a.Node, oneLine(a.Error, 100))
	}
	tw.Flush()
	fmt.Fprintln(w, "headers:")
	keys := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k != client.HdrHistory {
			fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(d.Headers[k], ", "))
		}
	}
	if d.Encoding != "" {
		fmt.Fprintf(w, "payload (%s):\n%s\n", d.Encoding, d.Payload)
	} else {
		fmt.Fprintf(w, "payload:\n%s\n", d.Payload)
	}
}

func shortVersion(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
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
		sel            client.Selection
		dryRun, asJSON bool
		rateSpec       string
	)
	cmd := &cobra.Command{
		Use:   "replay BINDING [EVENT_ID…] [--all] [--since D] [--error-kind K] [--rate N/s] [--dry-run]",
		Short: "Put dead letters back to the binding that failed them, and only to it",
		Long: "Re-deliver dead letters to their binding only: other subscribers of a topic do not see\n" +
			"the event again. Each dead letter is removed once its replay is durably queued.",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeBindings(g, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			binding := args[0]
			sel.IDs = args[1:]
			if !sel.All && len(sel.IDs) == 0 {
				return usage(errors.New("name the events to replay, or pass --all"))
			}
			var limiter *rate.Limiter
			if rateSpec != "" {
				r, err := config.ParseRate(rateSpec)
				if err != nil {
					return usage(fmt.Errorf("--rate: %w", err))
				}
				limiter = rate.NewLimiter(rate.Limit(r.PerSecond()), 1)
			}
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			chosen, err := c.Select(ctx, binding, sel)
			if err != nil {
				return dlqError(binding, err)
			}
			rep := replayReport{Binding: binding, Selected: len(chosen), DryRun: dryRun, Events: []string{}}
			for i, d := range chosen {
				rep.Events = append(rep.Events, d.EventID)
				if dryRun {
					continue
				}
				if limiter != nil {
					if err := limiter.Wait(ctx); err != nil {
						return failed(err)
					}
				}
				if err := c.Replay(ctx, d); err != nil {
					return failed(fmt.Errorf("%w; %d replayed before it", err, rep.Replayed))
				}
				rep.Replayed++
				if !asJSON && (i+1)%100 == 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "replayed %d/%d\n", i+1, len(chosen))
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, rep)
			}
			if dryRun {
				fmt.Fprintf(out, "dry run: would replay %d dead letters of %s: %s\n", rep.Selected, binding, strings.Join(rep.Events, " "))
				return nil
			}
			fmt.Fprintf(out, "replayed %d dead letters to %s\n", rep.Replayed, binding)
			return nil
		},
	}
	cmd.Flags().BoolVar(&sel.All, "all", false, "every dead letter of the binding (with the filters)")
	cmd.Flags().DurationVar(&sel.Since, "since", 0, "only dead letters that failed within this long")
	cmd.Flags().StringVar(&sel.ErrorKind, "error-kind", "", "only this error kind: failed, permanent, trap, timeout, memory")
	cmd.Flags().StringVar(&rateSpec, "rate", "", "at most this fast, e.g. 50/s")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be replayed; change nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func dlqPurgeCmd(g *globals) *cobra.Command {
	var (
		sel         client.Selection
		yes, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "purge BINDING [EVENT_ID…] [--all]",
		Short: "Delete dead letters for good",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			binding := args[0]
			sel.IDs = args[1:]
			if !sel.All && len(sel.IDs) == 0 {
				return usage(errors.New("name the events to purge, or pass --all"))
			}
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			chosen, err := c.Select(cmd.Context(), binding, sel)
			if err != nil {
				return dlqError(binding, err)
			}
			if sel.All && !yes && len(chosen) > 0 {
				if err := confirm(cmd, g.stdin, fmt.Sprintf("Delete all %d dead letters of %s for good?", len(chosen), binding)); err != nil {
					return err
				}
			}
			if err := c.Purge(cmd.Context(), chosen); err != nil {
				return failed(err)
			}
			purged := []string{}
			for _, d := range chosen {
				purged = append(purged, d.EventID)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					Binding string   `json:"binding"`
					Purged  []string `json:"purged"`
				}{binding, purged})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "purged %d dead letters of %s\n", len(chosen), binding)
			return nil
		},
		ValidArgsFunction: completeBindings(g, 1),
	}
	cmd.Flags().BoolVar(&sel.All, "all", false, "every dead letter of the binding (asks first, unless --yes)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: binding, purged (event ids)")
	return cmd
}
