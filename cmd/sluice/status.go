package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/internal/render"
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
			if err := emit(cmd, asJSON, struct {
				ID       string          `json:"id"`
				Outcomes []client.Status `json:"outcomes"`
			}{args[0], sts}, func(w io.Writer) { render.Outcomes(w, sts) }); err != nil {
				return err
			}
			return deadLettered(sts)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
