package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/render"
)

// errNotStored answers `sluice logs --follow=false`: there is no history
// to print.
var errNotStored = errors.New("logs are streamed, not stored: drop --follow=false to follow them (past lines are in each node's own log)")

func logsCmd(g *globals) *cobra.Command {
	var (
		asJSON, follow bool
		filter         client.LogFilter
	)
	cmd := &cobra.Command{
		Use:   "logs [FUNCTION|BINDING]",
		Short: "Stream guests' log lines from every node, as invocations write them",
		Long: "Stream the log lines guests write (sluice_log, WASI stdout and stderr), from every node\n" +
			"of the runtime, until interrupted. Lines are not stored: only invocations running while\n" +
			"this command runs are shown. Needs an admin user.",
		Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: completeNames(g, 1, func(e *config.Effective) []string {
			return append(e.FunctionNames(), e.BindingNames()...)
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !follow {
				return usage(errNotStored)
			}
			if len(args) == 1 {
				filter.Name = args[0]
			}
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			stream, err := c.FollowLogs(filter)
			if errors.Is(err, nats.ErrPermissionViolation) {
				return usage(fmt.Errorf("%w; it needs a user with role \"admin\"", err))
			}
			if err != nil {
				return usage(err)
			}
			defer stream.Close()
			what := "every function"
			if filter.Name != "" {
				what = strconv.Quote(filter.Name)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "streaming the log lines of %s from every node (Ctrl-C to stop)\n", what)
			ctx, out, enc := cmd.Context(), cmd.OutOrStdout(), json.NewEncoder(cmd.OutOrStdout())
			for {
				r, err := stream.Next(ctx)
				if ctx.Err() != nil {
					return nil
				}
				if err == nil && asJSON {
					err = enc.Encode(r)
				} else if err == nil {
					err = render.LogLine(out, r)
				}
				if err != nil {
					return failed(err)
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", true, "follow the stream (the only mode: lines are not stored)")
	cmd.Flags().StringVar(&filter.Event, "event", "", "only the lines of this event id")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return cmd
}
