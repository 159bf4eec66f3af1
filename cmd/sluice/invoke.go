package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/runtime"
)

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
				var names []string
				for _, f := range cfg.Functions {
					names = append(names, f.Name)
				}
				return usage(fmt.Errorf("no function %q in %s (functions: %s)", args[0], cfgPath, strings.Join(names, ", ")))
			}
			var data []byte
			if len(args) == 2 {
				if data, err = readData(g, args[1]); err != nil {
					return err
				}
			}
			ev := functions.Event{ID: id, Subject: subject, Binding: "invoke", Data: data, Attempt: attempt, Headers: map[string][]string{}}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return usage(fmt.Errorf("-H %q: want NAME:VALUE", h))
				}
				ev.Headers[strings.TrimSpace(k)] = append(ev.Headers[strings.TrimSpace(k)], strings.TrimSpace(v))
			}
			if err := runtime.BuildSources(cmd.Context(), []config.Function{fc}, slog.New(slog.DiscardHandler)); err != nil {
				return failed(err)
			}
			out := cmd.OutOrStdout()
			rec := &recorder{}
			set, err := functions.Load([]config.Function{fc}, functions.Options{
				CacheDir: cacheDir, Publisher: rec, Logger: slog.New(rec),
			})
			if err != nil {
				return failed(err)
			}
			defer set.Close()
			start := time.Now()
			res, err := set.Invoke(cmd.Context(), fc.Name, ev)
			elapsed := time.Since(start)
			report := invokeReport{Function: fc.Name, Duration: elapsed.String(), Logs: rec.logs, Published: rec.published}
			var fe *functions.Error
			switch {
			case err == nil:
				report.Outcome, report.Version = "succeeded", res.Version
				report.Result, report.ResultEncoding = client.TextOrBase64(res.Output)
			case errors.As(err, &fe):
				report.Outcome, report.Error, report.Version = string(fe.Kind), fe.Reason, fe.Version
			default:
				return failed(err)
			}
			if asJSON {
				if err := writeJSON(out, report); err != nil {
					return err
				}
			} else {
				report.print(out)
			}
			if err != nil {
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

type invokeReport struct {
	Function       string   `json:"function"`
	Version        string   `json:"version,omitempty"`
	Outcome        string   `json:"outcome"`
	Error          string   `json:"error,omitempty"`
	Result         string   `json:"result,omitempty"`
	ResultEncoding string   `json:"result_encoding,omitempty"`
	Duration       string   `json:"duration"`
	Logs           []string `json:"logs"`
	Published      []string `json:"published"`
}

func (r invokeReport) print(w io.Writer) {
	for _, l := range r.Logs {
		fmt.Fprintf(w, "log: %s\n", l)
	}
	for _, p := range r.Published {
		fmt.Fprintf(w, "publish (not sent): %s\n", p)
	}
	fmt.Fprintf(w, "outcome: %s in %s\n", r.Outcome, r.Duration)
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
	if r.Result != "" {
		fmt.Fprintf(w, "result: %s\n", r.Result)
	}
}

// recorder collects what one invocation logs and publishes.
type recorder struct {
	mu        sync.Mutex
	logs      []string
	published []string
}

func (r *recorder) Publish(_ context.Context, subject string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, subject+" "+string(data))
	return nil
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "source" || a.Key == "limit_bytes" || a.Key == "subject" || a.Key == "allowed" {
			line += " " + a.String()
		}
		return true
	})
	r.logs = append(r.logs, line)
	return nil
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }
