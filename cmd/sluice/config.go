package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/render"
)

func validateCmd() *cobra.Command {
	var (
		cfgPath string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a config file; exit 1 with diagnostics when it has errors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := config.Validate(cfgPath)
			if err != nil && !asJSON {
				return failed(err)
			}
			if werr := emit(cmd, asJSON, v, func(w io.Writer) {
				fmt.Fprintf(w, "%s: ok (%d functions, %d bindings)\n", cfgPath, v.Functions, v.Bindings)
			}); werr != nil || err == nil {
				return werr
			}
			return failed(errSilent)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "runtime.hcl", "config file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: ok, counts, and every diagnostic with file, line and column")
	return cmd
}

func fmtCmd() *cobra.Command {
	var write, check bool
	cmd := &cobra.Command{
		Use:   "fmt FILE",
		Short: "Format a config file canonically (to stdout, or in place with -w); exit 1 without writing when it has syntax errors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, changed, err := config.FormatFile(args[0], write && !check)
			switch {
			case err != nil:
				return failed(err)
			case check && changed:
				return failed(fmt.Errorf("%s is not formatted (run sluice fmt -w %s)", args[0], args[0]))
			case check || write:
				return nil
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().BoolVarP(&write, "write", "w", false, "write the result to the file")
	cmd.Flags().BoolVar(&check, "check", false, "exit 1 if the file is not formatted")
	return cmd
}

type planReport struct {
	Config  string           `json:"config"`
	Changes []config.Planned `json:"changes"`
}

func planCmd(g *globals) *cobra.Command {
	var (
		cfgPath  string
		detailed bool
		next     *config.Effective
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
		if detailed && len(changes) > 0 {
			return planReport{cfgPath, changes}, printed{&exitError{code: exitChanges, err: errSilent}}
		}
		return planReport{cfgPath, changes}, nil
	}, func(w io.Writer, p planReport) { render.Plan(w, p.Changes) })
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
		return err
	}
	return cmd
}
