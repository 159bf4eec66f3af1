package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
)

type publishResult struct {
	client.Published
	Outcomes []client.Status `json:"outcomes,omitempty"`
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
			ev := client.Event{Subject: args[0], ID: id, Header: nats.Header{}}
			if len(args) == 2 {
				var err error
				if ev.Data, err = readData(g, args[1]); err != nil {
					return err
				}
			}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok || strings.TrimSpace(k) == "" {
					return usage(fmt.Errorf("-H %q: want NAME:VALUE", h))
				}
				ev.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			var res publishResult
			if !wait {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				defer cancel()
				if res.Published, err = c.Publish(ctx, ev); err != nil {
					return failed(publishError(ev.Subject, err))
				}
				if asJSON {
					return writeJSON(out, res)
				}
				printPublished(out, res.Published)
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			// Progress goes to stderr: stdout holds only the result.
			progress := func(s client.Status) {
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s: %s (attempt %d)\n", s.Binding, s.State, s.Attempts)
			}
			if asJSON {
				progress = nil
			} else {
				fmt.Fprintln(cmd.ErrOrStderr(), "processing…")
			}
			p, sts, werr := c.PublishWait(ctx, ev, progress)
			if p.Stream == "" {
				return failed(publishError(ev.Subject, werr))
			}
			res.Published, res.Outcomes = p, sts
			if asJSON {
				if err := writeJSON(out, res); err != nil {
					return err
				}
			} else {
				printPublished(out, p)
				printOutcomes(out, res.Outcomes)
			}
			if errors.Is(werr, context.DeadlineExceeded) {
				return failed(fmt.Errorf("timed out after %s waiting for every binding's outcome", timeout))
			}
			if werr != nil {
				return failed(werr)
			}
			if anyDeadLettered(res.Outcomes) {
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

func publishError(subject string, err error) error {
	if errors.Is(err, client.ErrNotBound) {
		return fmt.Errorf("no queue or topic is bound to subject %q, so the event was not stored (check the subjects in runtime.hcl)", subject)
	}
	return err
}

func printPublished(w io.Writer, p client.Published) {
	dup := ""
	if p.Duplicate {
		dup = " (duplicate id: already stored, not published again)"
	}
	fmt.Fprintf(w, "published %s to %s: stream %s, seq %d%s\n", p.ID, p.Subject, p.Stream, p.Seq, dup)
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
