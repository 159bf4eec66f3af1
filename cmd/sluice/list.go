package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
)

// listCmd is a command that reads rows through the client and prints them as
// a table (header, then one or more lines per row) or, with --json, as a
// JSON array (never null).
func listCmd[T any](g *globals, use, short, header string,
	read func(*client.Client, context.Context) ([]T, error), line func(io.Writer, T)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			rows, err := read(c, cmd.Context())
			if err != nil {
				return failed(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if rows == nil {
					rows = []T{}
				}
				return writeJSON(out, rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, header)
			for _, r := range rows {
				line(tw, r)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
