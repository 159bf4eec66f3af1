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
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/triggers"
)

// deadLetter is one message of a binding's dead-letter stream.
type deadLetter struct {
	Binding      string                   `json:"binding"`
	Seq          uint64                   `json:"seq"`
	EventID      string                   `json:"id"`
	Subject      string                   `json:"subject"`
	Function     string                   `json:"function"`
	Version      string                   `json:"version,omitempty"`
	Attempts     int                      `json:"attempts"`
	ErrorKind    string                   `json:"error_kind"`
	Error        string                   `json:"error"`
	FirstFailure time.Time                `json:"first_failure"`
	LastFailure  time.Time                `json:"last_failure"`
	History      []triggers.AttemptRecord `json:"history,omitempty"`
	Headers      nats.Header              `json:"headers,omitempty"`
	Payload      string                   `json:"payload,omitempty"`
	Encoding     string                   `json:"payload_encoding,omitempty"`
	data         []byte
}

func dlqCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, replay and purge dead letters",
	}
	cmd.AddCommand(dlqLsCmd(g), dlqShowCmd(g), dlqReplayCmd(g), dlqPurgeCmd(g))
	return cmd
}

// deadLetterBindings lists the bindings that have a dead-letter stream.
func deadLetterBindings(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var out []string
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		if b, ok := strings.CutPrefix(name, "SLUICE_DLQ_"); ok {
			out = append(out, strings.ReplaceAll(b, "__", "/"))
		}
	}
	slices.Sort(out)
	return out, names.Err()
}

// readDeadLetters returns every dead letter of binding, oldest first.
func readDeadLetters(ctx context.Context, js jetstream.JetStream, binding string) ([]deadLetter, error) {
	stream := triggers.DeadLetterStreamName(binding)
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, usage(fmt.Errorf("no binding %q has dead letters here (bindings: see `sluice bindings`)", binding))
	}
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return nil, err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []deadLetter
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			out = append(out, decodeDeadLetter(binding, md.Sequence.Stream, m.Headers(), m.Data()))
			if md.NumPending == 0 {
				return out, nil
			}
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

// readAllDeadLetters returns the dead letters of the bindings named, or of
// every binding that has any when none is named.
func readAllDeadLetters(ctx context.Context, js jetstream.JetStream, bindings []string) ([]deadLetter, error) {
	if len(bindings) == 0 {
		var err error
		if bindings, err = deadLetterBindings(ctx, js); err != nil {
			return nil, failed(err)
		}
	}
	all := []deadLetter{}
	for _, b := range bindings {
		dls, err := readDeadLetters(ctx, js, b)
		if err != nil {
			return nil, err
		}
		all = append(all, dls...)
	}
	return all, nil
}

func decodeDeadLetter(binding string, seq uint64, h nats.Header, data []byte) deadLetter {
	d := deadLetter{
		Binding: binding, Seq: seq, EventID: h.Get(triggers.HdrEventID), Subject: h.Get(triggers.HdrSubject),
		Function: h.Get(triggers.HdrFunction), Version: h.Get(triggers.HdrVersion),
		ErrorKind: h.Get(triggers.HdrErrorKind), Error: h.Get(triggers.HdrError), Headers: h, data: data,
	}
	d.Attempts, _ = strconv.Atoi(h.Get(triggers.HdrAttempts))
	d.FirstFailure, _ = time.Parse(time.RFC3339Nano, h.Get(triggers.HdrFirstFailure))
	d.LastFailure, _ = time.Parse(time.RFC3339Nano, h.Get(triggers.HdrLastFailure))
	_ = json.Unmarshal([]byte(h.Get(triggers.HdrHistory)), &d.History)
	d.Payload, d.Encoding = encodeResult(data)
	return d
}

func dlqLsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "ls [BINDING]",
		Short:             "List dead letters: of one binding, or of all",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeBindings(g, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, js, err := g.jetStream()
			if err != nil {
				return err
			}
			defer nc.Close()
			all, err := readAllDeadLetters(cmd.Context(), js, args)
			if err != nil {
				return err
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
			nc, js, err := g.jetStream()
			if err != nil {
				return err
			}
			defer nc.Close()
			all, err := readAllDeadLetters(cmd.Context(), js, nil)
			if err != nil {
				return err
			}
			var found []deadLetter
			for _, d := range all {
				if d.EventID == args[0] {
					found = append(found, d)
				}
			}
			if len(found) == 0 {
				return failed(fmt.Errorf("no dead letter of event %q", args[0]))
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

func printDeadLetter(w io.Writer, d deadLetter) {
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
		if k != triggers.HdrHistory {
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

// selectDeadLetters applies the replay and purge filters.
func selectDeadLetters(dls []deadLetter, ids []string, all bool, since time.Duration, kind string) []deadLetter {
	var out []deadLetter
	cutoff := time.Now().Add(-since)
	for _, d := range dls {
		if !all && !slices.Contains(ids, d.EventID) {
			continue
		}
		if since > 0 && d.LastFailure.Before(cutoff) {
			continue
		}
		if kind != "" && d.ErrorKind != kind {
			continue
		}
		out = append(out, d)
	}
	return out
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
		all, dryRun, asJSON bool
		since               time.Duration
		kind, rateSpec      string
	)
	cmd := &cobra.Command{
		Use:   "replay BINDING [EVENT_ID…] [--all] [--since D] [--error-kind K] [--rate N/s] [--dry-run]",
		Short: "Put dead letters back to the binding that failed them, and only to it",
		Long: "Re-deliver dead letters to their binding only: other subscribers of a topic do not see\n" +
			"the event again. Each dead letter is removed once its replay is durably queued.",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeBindings(g, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			binding, ids := args[0], args[1:]
			if !all && len(ids) == 0 {
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
			nc, js, err := g.jetStream()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx := cmd.Context()
			dls, err := readDeadLetters(ctx, js, binding)
			if err != nil {
				return err
			}
			chosen := selectDeadLetters(dls, ids, all, since, kind)
			rep := replayReport{Binding: binding, Selected: len(chosen), DryRun: dryRun, Events: []string{}}
			stream, err := js.Stream(ctx, triggers.DeadLetterStreamName(binding))
			if err != nil {
				return failed(err)
			}
			progress := cmd.ErrOrStderr()
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
				if err := replayOne(ctx, js, stream, d); err != nil {
					return failed(fmt.Errorf("replay %s (dead letter %d): %w; %d replayed before it", d.EventID, d.Seq, err, rep.Replayed))
				}
				rep.Replayed++
				if !asJSON && (i+1)%100 == 0 {
					fmt.Fprintf(progress, "replayed %d/%d\n", i+1, len(chosen))
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
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter of the binding (with the filters)")
	cmd.Flags().DurationVar(&since, "since", 0, "only dead letters that failed within this long")
	cmd.Flags().StringVar(&kind, "error-kind", "", "only this error kind: failed, permanent, trap, timeout, memory")
	cmd.Flags().StringVar(&rateSpec, "rate", "", "at most this fast, e.g. 50/s")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be replayed; change nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// replayOne queues a dead letter on its binding's replay subject, then
// removes it: a failure in between leaves a duplicate, never a loss, and
// the replay's message id makes a second try a no-op.
func replayOne(ctx context.Context, js jetstream.JetStream, dlq jetstream.Stream, d deadLetter) error {
	m := &nats.Msg{Subject: triggers.ReplaySubject(d.Binding), Data: d.data, Header: triggers.WithoutSteering(d.Headers)}
	m.Header.Del(triggers.HdrHistory)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(pctx, m, jetstream.WithMsgID(fmt.Sprintf("replay:%s:%d", d.Binding, d.Seq))); err != nil {
		return err
	}
	return dlq.DeleteMsg(pctx, d.Seq)
}

func dlqPurgeCmd(g *globals) *cobra.Command {
	var all, yes, asJSON bool
	cmd := &cobra.Command{
		Use:   "purge BINDING [EVENT_ID…] [--all]",
		Short: "Delete dead letters for good",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			binding, ids := args[0], args[1:]
			if !all && len(ids) == 0 {
				return usage(errors.New("name the events to purge, or pass --all"))
			}
			nc, js, err := g.jetStream()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx := cmd.Context()
			dls, err := readDeadLetters(ctx, js, binding)
			if err != nil {
				return err
			}
			stream, err := js.Stream(ctx, triggers.DeadLetterStreamName(binding))
			if err != nil {
				return failed(err)
			}
			chosen := selectDeadLetters(dls, ids, all, 0, "")
			if all && !yes && len(chosen) > 0 {
				if err := confirm(cmd, g.stdin, fmt.Sprintf("Delete all %d dead letters of %s for good?", len(chosen), binding)); err != nil {
					return err
				}
			}
			purged := []string{}
			for _, d := range chosen {
				if err := stream.DeleteMsg(ctx, d.Seq); err != nil {
					return failed(fmt.Errorf("purge %s: %w", d.EventID, err))
				}
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
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter of the binding (asks first, unless --yes)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: binding, purged (event ids)")
	return cmd
}
