package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
)

type planReport struct {
	Config  string           `json:"config"`
	Changes []config.Planned `json:"changes"`
}

func planCmd(g *globals) *cobra.Command {
	var (
		cfgPath  string
		detailed bool
		next     *config.Effective
		planned  int
	)
	cmd := op(g, &cobra.Command{
		Use:   "plan [-c FILE] [--json]",
		Short: "Show what applying a config file to the running runtime would change, and what it means for pending events",
		Args:  cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return failed(err)
			}
			next = config.EffectiveOf(cfg, functions.FileVersions(cfg))
			return nil
		},
	}, "print JSON", func(cmd *cobra.Command, _ []string, c *client.Client) (planReport, error) {
		raw, err := c.RunningConfig(cmd.Context())
		if err != nil {
			return planReport{}, err
		}
		running, err := config.DecodeEffective(raw)
		if err != nil {
			return planReport{}, err
		}
		changes := config.Plan(running, next, func(b string) (uint64, bool) { return c.Pending(cmd.Context(), b) })
		planned = len(changes)
		return planReport{cfgPath, changes}, nil
	}, func(w io.Writer, p planReport) {
		for _, c := range p.Changes {
			fmt.Fprintln(w, c.Text)
		}
		switch n := len(p.Changes); n {
		case 0:
			fmt.Fprintln(w, "no changes")
		case 1:
			fmt.Fprintln(w, "1 change; nothing was applied")
		default:
			fmt.Fprintf(w, "%d changes; nothing was applied\n", n)
		}
	})
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "runtime.hcl", "config file")
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 0 without changes, 2 with changes, 1 on an error (as terraform plan does)")
	// With --detailed-exitcode 2 means changes only: every error, a
	// connection's too, exits 1.
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		err := run(cmd, args)
		var ee *exitError
		if detailed && errors.As(err, &ee) && ee.code == exitUsage && !errors.Is(err, errSilent) {
			return failed(ee.err)
		}
		if detailed && err == nil && planned > 0 {
			return &exitError{code: exitChanges, err: errSilent}
		}
		return err
	}
	return cmd
}
