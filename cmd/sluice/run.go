package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/runtime"
)

func runCmd(g *globals) *cobra.Command {
	var (
		cfgPath, data, listen, metricsListen, logLevel, logFormat string
		name, clusterListen                                       string
		drain                                                     time.Duration
		noWatch, watchSources                                     bool
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start the runtime: the embedded NATS server, the bindings and the functions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := runtime.NewLogger(cmd.ErrOrStderr(), logLevel, logFormat)
			if err != nil {
				return usage(err)
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return failed(err)
			}
			rt, err := runtime.Start(cmd.Context(), runtime.Options{
				Config: cfg, DataDir: data, Listen: listen, MetricsListen: metricsListen,
				Logger: logger, DrainTimeout: drain, WatchConfig: !noWatch,
				Name: name, ClusterListen: clusterListen,
			})
			if err != nil {
				return failed(fmt.Errorf("start: %w", err))
			}
			rt.PrintBanner(cmd.OutOrStdout())
			if err := rt.Serve(cmd.Context(), g.reload, watchSources); err != nil {
				return failed(err)
			}
			logger.Info("stopped")
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "runtime.hcl", "config file")
	cmd.Flags().StringVar(&data, "data", "", "data directory (JetStream files and compile cache); overrides nats.store_dir")
	cmd.Flags().StringVar(&listen, "listen", "", "NATS listen address HOST:PORT; overrides nats.listen")
	cmd.Flags().StringVar(&name, "name", "", "this node's name (unique in a cluster); overrides nats.name")
	cmd.Flags().StringVar(&clusterListen, "cluster-listen", "", "HOST:PORT where this node accepts cluster routes; overrides nats.cluster.listen")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "HTTP address HOST:PORT of /metrics, /healthz and /readyz; overrides metrics.listen")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "text or json")
	cmd.Flags().DurationVar(&drain, "drain-timeout", 30*time.Second, "how long shutdown waits for in-flight invocations")
	cmd.Flags().BoolVar(&watchSources, "watch", false, "rebuild a function when a file of its source changes and swap it in, as deploy does (a dev loop)")
	cmd.Flags().BoolVar(&noWatch, "no-watch", false, "do not reload the config when its file changes (SIGHUP still reloads it)")
	return cmd
}
