package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/config"
)

// validation is validate's --json output.
type validation struct {
	Config      string              `json:"config"`
	OK          bool                `json:"ok"`
	Functions   int                 `json:"functions"`
	Bindings    int                 `json:"bindings"`
	Diagnostics []config.Diagnostic `json:"diagnostics"`
}

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
			cfg, err := config.Load(cfgPath)
			if err != nil && !asJSON {
				return failed(err)
			}
			v := validation{Config: cfgPath, OK: err == nil, Diagnostics: config.Diagnostics(err)}
			if err == nil {
				v.Functions, v.Bindings = len(cfg.Functions), len(cfg.Bindings())
			}
			if werr := emit(cmd, asJSON, v, func(w io.Writer) {
				fmt.Fprintf(w, "%s: ok (%d functions, %d bindings)\n", cfgPath, v.Functions, v.Bindings)
			}); werr != nil {
				return werr
			}
			if err != nil {
				return failed(errSilent)
			}
			return nil
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
			src, err := os.ReadFile(args[0])
			if err != nil {
				return failed(err)
			}
			// Formatting a file the parser cannot read would reflow it
			// into something else: say what is wrong and change nothing.
			if err := config.CheckSyntax(args[0], src); err != nil {
				return failed(err)
			}
			out := config.Format(src)
			switch {
			case check && !bytes.Equal(src, out):
				return failed(fmt.Errorf("%s is not formatted (run sluice fmt -w %s)", args[0], args[0]))
			case check || write && bytes.Equal(src, out):
				return nil
			case write:
				info, err := os.Stat(args[0])
				if err != nil {
					return failed(err)
				}
				return os.WriteFile(args[0], out, info.Mode())
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().BoolVarP(&write, "write", "w", false, "write the result to the file")
	cmd.Flags().BoolVar(&check, "check", false, "exit 1 if the file is not formatted")
	return cmd
}
