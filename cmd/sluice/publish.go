package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/runtime"
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
			var replies chan *nats.Msg
			if wait {
				// Final outcomes come to an inbox of this connection
				// (subscribed before the publish, so none is missed),
				// unless the user named a reply subject of their own.
				replies = make(chan *nats.Msg, 64)
				if msg.Header.Get(triggers.HdrReply) == "" {
					inbox := nc.NewInbox()
					sub, err := nc.ChanSubscribe(inbox, replies)
					if err != nil {
						return failed(fmt.Errorf("subscribe to %s: %w", inbox, err))
					}
					defer sub.Unsubscribe()
					msg.Header.Set(triggers.HdrReply, inbox)
				}
			}
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
			// Progress goes to stderr: stdout holds only the result.
			outcomes, werr := waitOutcomes(cmd.Context(), nc, replies, res, timeout, asJSON, cmd.ErrOrStderr())
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

// statusPoll is how often --wait asks the runtime for the states before
// the final ones (running, retrying), which are not sent as replies.
const statusPoll = 250 * time.Millisecond

// waitOutcomes waits until every binding of the event's stream has a final
// outcome, showing progress on out unless quiet. Final outcomes arrive on
// replies (the Sluice-Reply inbox); the status API gives the bindings and
// the states in between, and the final ones too when a reply is missed.
func waitOutcomes(ctx context.Context, nc *nats.Conn, replies <-chan *nats.Msg, res publishResult, timeout time.Duration, quiet bool, out io.Writer) ([]outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req := runtime.StatusRequest{ID: res.ID, Stream: res.Stream}
	first, err := requestStatuses(ctx, nc, req)
	if err != nil {
		return nil, err
	}
	if len(first) == 0 {
		return nil, fmt.Errorf("stream %s has no sluice bindings", res.Stream)
	}
	var order []string
	latest := map[string]triggers.Status{}
	update := func(s triggers.Status) {
		prev, seen := latest[s.Binding]
		if !seen || s.ID != res.ID || prev.Final() {
			return // not one of this stream's bindings, or settled
		}
		if !quiet && (prev.State != s.State || prev.Attempts != s.Attempts) {
			fmt.Fprintf(out, "  %s: %s (attempt %d)\n", s.Binding, s.State, s.Attempts)
		}
		latest[s.Binding] = s
	}
	collect := func() ([]outcome, bool) {
		var os []outcome
		done := true
		for _, b := range order {
			done = done && latest[b].Final()
			os = append(os, outcomeOf(latest[b]))
		}
		return os, done
	}
	if !quiet {
		fmt.Fprintln(out, "processing…")
	}
	for _, s := range first {
		order = append(order, s.Binding)
		latest[s.Binding] = triggers.Status{ID: res.ID, Binding: s.Binding, Function: s.Function, State: triggers.StateQueued, MaxAttempts: s.MaxAttempts}
	}
	sort.Strings(order)
	for _, s := range first {
		update(s)
	}
	tick := time.NewTicker(statusPoll)
	defer tick.Stop()
	for {
		if os, done := collect(); done {
			return os, nil
		}
		select {
		case m := <-replies:
			var s triggers.Status
			if json.Unmarshal(m.Data, &s) == nil {
				update(s)
			}
		case <-tick.C:
			statuses, err := requestStatuses(ctx, nc, req)
			if err != nil && ctx.Err() == nil {
				return nil, err
			}
			for _, s := range statuses {
				update(s)
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
