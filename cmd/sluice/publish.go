package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/triggers"
)

type publishResult struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Stream    string    `json:"stream"`
	Seq       uint64    `json:"seq"`
	Duplicate bool      `json:"duplicate,omitempty"`
	Outcomes  []outcome `json:"outcomes,omitempty"`
}

func publishCmd(g *globals) *cobra.Command {
	var (
		id      string
		headers []string
		wait    bool
		timeout time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "publish SUBJECT [DATA | -]",
		Short: "Publish an event; with --wait, wait for every binding's outcome",
		Long: "Publish an event and print its id and stream sequence once it is stored.\n" +
			"DATA is the payload; - reads it from stdin. --id sets the event id (Nats-Msg-Id),\n" +
			"which also de-duplicates publishes. Exit codes: 0 ok, 1 an outcome failed, 2 usage or connection error.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			if len(args) == 2 {
				var err error
				if data, err = readData(g, args[1]); err != nil {
					return err
				}
			}
			msg := &nats.Msg{Subject: args[0], Data: data, Header: nats.Header{}}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok || strings.TrimSpace(k) == "" {
					return usage(fmt.Errorf("-H %q: want NAME:VALUE", h))
				}
				msg.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			if id == "" {
				id = nuid.Next()
			}
			nc, js, err := g.jetStream()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
			cancel()
			switch {
			case errors.Is(err, jetstream.ErrNoStreamResponse):
				return failed(fmt.Errorf("no queue or topic is bound to subject %q, so the event was not stored (check the subjects in runtime.hcl)", args[0]))
			case err != nil:
				return failed(fmt.Errorf("publish to %s: %w", args[0], err))
			}
			res := publishResult{ID: id, Subject: args[0], Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}
			out := cmd.OutOrStdout()
			if !asJSON {
				dup := ""
				if ack.Duplicate {
					dup = " (duplicate id: already stored, not published again)"
				}
				fmt.Fprintf(out, "published %s to %s: stream %s, seq %d%s\n", id, args[0], ack.Stream, ack.Sequence, dup)
			}
			if !wait {
				if asJSON {
					return writeJSON(out, res)
				}
				return nil
			}
			outcomes, werr := waitOutcomes(cmd.Context(), js, res, timeout, asJSON, out)
			res.Outcomes = outcomes
			if asJSON {
				if err := writeJSON(out, res); err != nil {
					return err
				}
			} else {
				printOutcomes(out, outcomes)
			}
			if werr != nil {
				return failed(werr)
			}
			if anyDeadLettered(outcomes) {
				return failed(errSilent)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "event id (default: a new unique id)")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "header NAME:VALUE (repeatable)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for every binding's final outcome")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait waits")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// waitOutcomes watches the event's statuses until every binding of its
// stream has a final one, showing progress unless quiet.
func waitOutcomes(ctx context.Context, js jetstream.JetStream, res publishResult, timeout time.Duration, quiet bool, out io.Writer) ([]outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	bindings, err := streamBindings(ctx, js, res.Stream)
	if err != nil {
		return nil, fmt.Errorf("list bindings of %s: %w", res.Stream, err)
	}
	if len(bindings) == 0 {
		return nil, fmt.Errorf("stream %s has no sluice bindings", res.Stream)
	}
	store, err := triggers.NewStatusStore(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("status bucket: %w", err)
	}
	w, err := store.Watch(ctx, res.ID)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	latest := map[string]triggers.Status{}
	collect := func() ([]outcome, bool) {
		var os []outcome
		done := true
		for _, b := range bindings {
			s, ok := latest[b.name]
			if !ok {
				s = triggers.Status{Binding: b.name, Function: b.function, State: triggers.StateQueued, MaxAttempts: b.maxAttempts}
			}
			done = done && s.Final()
			os = append(os, outcomeOf(s))
		}
		return os, done
	}
	if !quiet {
		fmt.Fprintln(out, "processing…")
	}
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			s, ok := decodeStatus(e)
			if !ok || s.ID != res.ID {
				continue
			}
			if prev, seen := latest[s.Binding]; !quiet && (!seen || prev.State != s.State || prev.Attempts != s.Attempts) {
				fmt.Fprintf(out, "  %s: %s (attempt %d)\n", s.Binding, s.State, s.Attempts)
			}
			latest[s.Binding] = s
			if os, done := collect(); done {
				return os, nil
			}
		case <-ctx.Done():
			os, _ := collect()
			return os, fmt.Errorf("%w after %s waiting for every binding's outcome", errTimeout, timeout)
		}
	}
}

// readData is a DATA argument: the bytes themselves, or stdin for "-".
func readData(g *globals, arg string) ([]byte, error) {
	if arg != "-" {
		return []byte(arg), nil
	}
	b, err := io.ReadAll(g.stdin)
	if err != nil {
		return nil, usage(fmt.Errorf("read stdin: %w", err))
	}
	return b, nil
}
