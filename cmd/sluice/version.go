package main

import (
	"fmt"
	goruntime "runtime"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/internal/version"
)

// versionLine is what `sluice version` and `sluice --version` print.
func versionLine() string {
	return fmt.Sprintf("sluice %s (%s, %s/%s)\n", version.String(), goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print sluice's version, the Go release that built it, and the platform",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}
