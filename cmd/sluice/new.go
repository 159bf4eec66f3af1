package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/scaffold"
)

func newCmd() *cobra.Command {
	var lang, parent string
	cmd := &cobra.Command{
		Use:   "new NAME",
		Short: "Scaffold a function (source and build file) and print the runtime.hcl block to paste",
		Long: "Create the directory NAME (under --dir) holding a function in --lang that logs, publishes its\n" +
			"payload to NAME.done and returns \"hello <payload>\"; the payload \"fail\" fails it (retried) and\n" +
			"\"permanent\" fails it permanently (dead-lettered at once). sluice builds it from source when it runs.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := scaffold.New(parent, args[0], guestbuild.Language(lang))
			if errors.Is(err, scaffold.ErrInvalid) {
				return usage(err)
			}
			if err != nil {
				return failed(err)
			}
			f.WriteGuide(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVarP(&lang, "lang", "l", "go", "language: go, c, rust or assemblyscript")
	cmd.Flags().StringVar(&parent, "dir", ".", "directory to create the function's directory in")
	return cmd
}
