package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
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
		ev      client.Event
		headers []string
		wait    bool
		timeout time.Duration
	)
	cmd := op(g, &cobra.Command{
		Use:   "publish SUBJECT [DATA | -]",
		Short: "Publish an event; with --wait, wait for every binding's outcome",
		Long: "Publish an event and print its id and stream sequence once it is stored.\n" +
			"DATA is the payload; - reads it from stdin. --id sets the event id (its NATS message id),\n" +
			"which also de-duplicates publishes. Exit codes: 0 ok, 1 an outcome failed, 2 usage or connection error.",
		Args: cobra.RangeArgs(1, 2),
		PreRunE: func(_ *cobra.Command, args []string) (err error) {
			ev.Subject = args[0]
			if ev.Data, err = readData(g, args[1:]); err != nil {
				return err
			}
			ev.Header, err = parseHeaders(headers)
			return err
		},
	}, "print JSON", func(cmd *cobra.Command, _ []string, c *client.Client) (res publishResult, err error) {
		if !wait {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			res.Published, err = c.Publish(ctx, ev)
			return res, publishError(ev.Subject, err)
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		// Progress goes to stderr: stdout holds only the result.
		var progress func(client.Status)
		if quiet, _ := cmd.Flags().GetBool("json"); !quiet {
			fmt.Fprintln(cmd.ErrOrStderr(), "processing…")
			progress = func(s client.Status) {
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s: %s (attempt %d)\n", s.Binding, s.State, s.Attempts)
			}
		}
		res.Published, res.Outcomes, err = c.PublishWait(ctx, ev, progress)
		switch {
		case res.Stream == "":
			return res, publishError(ev.Subject, err)
		case errors.Is(err, context.DeadlineExceeded):
			return res, printed{failed(fmt.Errorf("timed out after %s waiting for every binding's outcome", timeout))}
		case err != nil:
			return res, printed{failed(err)}
		}
		return res, printed{deadLettered(res.Outcomes)}
	}, func(w io.Writer, res publishResult) {
		render.Published(w, res.Published)
		if wait {
			render.Outcomes(w, res.Outcomes)
		}
	})
	cmd.Flags().StringVar(&ev.ID, "id", "", "event id (default: a new unique id)")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "header NAME:VALUE (repeatable)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for every binding's final outcome")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait waits")
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
	if slices.ContainsFunc(sts, func(o client.Status) bool { return o.State == client.StateDeadLettered }) {
		return failed(errSilent)
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
	h, err := client.ParseHeaders(flags)
	if err != nil {
		return nil, usage(fmt.Errorf("-H: %w", err))
	}
	return h, nil
}

type statusReport struct {
	ID       string          `json:"id"`
	Outcomes []client.Status `json:"outcomes"`
}

func statusCmd(g *globals) *cobra.Command {
	return op(g, &cobra.Command{
		Use:   "status EVENT_ID",
		Short: "Show an event's status at every binding that received it",
		Args:  cobra.ExactArgs(1),
	}, "print JSON", func(cmd *cobra.Command, args []string, c *client.Client) (statusReport, error) {
		ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
		defer cancel()
		sts, err := c.Status(ctx, args[0])
		if errors.Is(err, client.ErrNotFound) {
			return statusReport{}, fmt.Errorf("no status recorded for event %q (not yet picked up by any binding, unknown, or older than the status retention)", args[0])
		}
		if err != nil {
			return statusReport{}, err
		}
		return statusReport{args[0], sts}, printed{deadLettered(sts)}
	}, func(w io.Writer, r statusReport) { render.Outcomes(w, r.Outcomes) })
}
