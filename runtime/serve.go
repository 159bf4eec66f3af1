package runtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Serve runs the started runtime until ctx ends or it stops by itself,
// reloading its config at each signal on reload (SIGHUP), rebuilding
// changed function sources when watchSources is set, then shuts it down
// (draining in-flight invocations) and returns Shutdown's error.
func (r *Runtime) Serve(ctx context.Context, reload <-chan os.Signal, watchSources bool) error {
	if watchSources {
		wctx, stop := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			r.WatchSources(wctx, WatchInterval, nil)
		}()
		defer func() { stop(); <-watched }()
	}
	for {
		select {
		case <-ctx.Done():
			r.log.Info("shutting down: draining in-flight invocations", "timeout", r.opts.DrainTimeout)
			return r.Shutdown()
		case <-r.Done():
			return r.Shutdown()
		case <-reload:
			r.log.Info("SIGHUP: reloading the config", "config", r.opts.Config.Path)
			_ = r.Reload() // logs what it applied, or why not
		}
	}
}

// NewLogger is a logger writing to w at level (debug, info, warn or
// error) in format (text or json).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
