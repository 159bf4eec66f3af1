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
	"github.com/sluice-run/sluice/internal/render"
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
			ev := client.Event{Subject: args[0], ID: id}
			var err error
			if ev.Data, err = readData(g, args[1:]); err != nil {
				return err
			}
			if ev.Header, err = parseHeaders(headers); err != nil {
				return err
			}
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			var res publishResult
			if !wait {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				defer cancel()
				if res.Published, err = c.Publish(ctx, ev); err != nil {
					return failed(publishError(ev.Subject, err))
				}
				return emit(cmd, asJSON, res, func(w io.Writer) { render.Published(w, res.Published) })
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
			var werr error
			if res.Published, res.Outcomes, werr = c.PublishWait(ctx, ev, progress); res.Stream == "" {
				return failed(publishError(ev.Subject, werr))
			}
			if err := emit(cmd, asJSON, res, func(w io.Writer) {
				render.Published(w, res.Published)
				render.Outcomes(w, res.Outcomes)
			}); err != nil {
				return err
			}
			if errors.Is(werr, context.DeadlineExceeded) {
				return failed(fmt.Errorf("timed out after %s waiting for every binding's outcome", timeout))
			}
			if werr != nil {
				return failed(werr)
			}
			return deadLettered(res.Outcomes)
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

// deadLettered exits 1, silently, when an outcome failed for good.
func deadLettered(sts []client.Status) error {
	for _, o := range sts {
		if o.State == client.StateDeadLettered {
			return failed(errSilent)
		}
	}
	return nil
}

// readData is the optional DATA argument: the bytes themselves, or stdin
// for "-".
func readData(g *globals, args []string) ([]byte, error) {
	if len(args) == 0 || args[0] != "-" {
		return []byte(strings.Join(args, "")), nil
	}
	b, err := io.ReadAll(g.stdin)
	if err != nil {
		return nil, usage(fmt.Errorf("read stdin: %w", err))
	}
	return b, nil
}

// parseHeaders reads -H NAME:VALUE flags.
func parseHeaders(flags []string) (nats.Header, error) {
	h := nats.Header{}
	for _, f := range flags {
		k, v, ok := strings.Cut(f, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usage(fmt.Errorf("-H %q: want NAME:VALUE", f))
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h, nil
}
