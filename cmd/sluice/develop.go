package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/scaffold"
	"github.com/sluice-run/sluice/runtime"
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

func invokeCmd(g *globals) *cobra.Command {
	var (
		cfgPath, subject, id, cacheDir string
		headers                        []string
		attempt                        int
		asJSON                         bool
	)
	cmd := &cobra.Command{
		Use:   "invoke FUNCTION [DATA | -]",
		Short: "Run a function once, directly, and print its result, logs, duration and outcome",
		Long: "Run a function of the config once, in a worker with its limits, without a broker.\n" +
			"Publishes are not sent: they are printed, checked against the function's allow list.\n" +
			"Exit 0 when the function succeeds, 1 when it fails.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return failed(err)
			}
			fc, ok := cfg.Function(args[0])
			if !ok {
				return usage(fmt.Errorf("no function %q in %s (functions: %s)", args[0], cfgPath, strings.Join(cfg.FunctionNames(), ", ")))
			}
			ev := functions.Event{ID: id, Subject: subject, Binding: "invoke", Attempt: attempt}
			if ev.Data, err = readData(g, args[1:]); err != nil {
				return err
			}
			h, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			ev.Headers = h
			if err := runtime.BuildSources(cmd.Context(), []config.Function{fc}, slog.New(slog.DiscardHandler)); err != nil {
				return failed(err)
			}
			rep, err := functions.InvokeOnce(cmd.Context(), fc, ev, cacheDir)
			if err != nil {
				return failed(err)
			}
			if err := emit(cmd, asJSON, rep, func(w io.Writer) { rep.Print(w) }); err != nil {
				return err
			}
			if !rep.Succeeded() {
				return failed(errSilent)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "runtime.hcl", "config file")
	cmd.Flags().StringVar(&subject, "subject", "invoke", "the event's subject")
	cmd.Flags().StringVar(&id, "id", "invoke-1", "the event's id")
	cmd.Flags().IntVar(&attempt, "attempt", 1, "the attempt number the function sees")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "header NAME:VALUE (repeatable)")
	cmd.Flags().StringVar(&cacheDir, "cache", ".sluice/cache", "compile cache directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
