package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
)

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status EVENT_ID",
		Short: "Show an event's status at every binding that received it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			sts, err := c.Status(ctx, args[0])
			if errors.Is(err, client.ErrNotFound) {
				return failed(fmt.Errorf("no status recorded for event %q (not yet picked up by any binding, unknown, or older than the status retention)", args[0]))
			}
			if err != nil {
				return failed(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, struct {
					ID       string          `json:"id"`
					Outcomes []client.Status `json:"outcomes"`
				}{args[0], sts}); err != nil {
					return err
				}
			} else {
				printOutcomes(out, sts)
			}
			if anyDeadLettered(sts) {
				return failed(errSilent)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
