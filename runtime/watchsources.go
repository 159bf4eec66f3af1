package runtime

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sluice-run/sluice/internal/guestbuild"
)

// WatchInterval is how often `sluice run --watch` checks function
// sources: a change waits half of it on average before its rebuild
// starts, and a check (the state of each source's files) costs about
// 0.1 ms per function (measured on a loaded 2-core machine).
const WatchInterval = 300 * time.Millisecond

// WatchSources checks, at once and then every interval until ctx ends or
// the runtime stops, the source of every function that has one; when a
// file changed it rebuilds the module and deploys it as `sluice deploy`
// does (stored in the module store, validated, swapped in: invocations in
// flight finish on the old version, events wait in JetStream meanwhile).
// A build or deploy error is logged with the compiler's message and the
// running version stays; a failed build is not retried until a file of its
// source changes again. The compilers that are slow to start (the
// AssemblyScript compiler, the Rust SDK crate) are loaded once, before the
// first rebuild, and kept until WatchSources returns. report, when not nil,
// is called after every rebuild attempt with its error (nil when the new
// version is live). The caller owns the goroutine that runs it.
func (r *Runtime) WatchSources(ctx context.Context, interval time.Duration, report func(function string, err error)) {
	b := guestbuild.NewBuilder()
	defer b.Close()
	warmed := map[string]bool{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, f := range r.CurrentConfig().Functions {
			if f.Source == "" {
				continue
			}
			if !warmed[f.Source] {
				warmed[f.Source] = true
				if err := b.Warm(ctx, f.Source); err != nil && ctx.Err() == nil {
					r.log.Debug("warming the compiler failed", "function", f.Name, "source", f.Source, "error", err)
				}
			}
			built, err := b.Build(ctx, f.Source, f.Module)
			if err == nil && !built {
				continue
			}
			if err == nil {
				err = r.deployBuilt(ctx, f.Name, f.Module)
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				r.log.Error("rebuild failed; the running version stays", "function", f.Name, "source", f.Source, "error", err)
			}
			if report != nil {
				report(f.Name, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			return
		case <-t.C:
		}
	}
}

func (r *Runtime) deployBuilt(ctx context.Context, function, module string) error {
	if r.admin == nil || r.admin.store == nil {
		return fmt.Errorf("no module store to deploy the rebuilt module to")
	}
	wasm, err := os.ReadFile(module)
	if err != nil {
		return fmt.Errorf("read rebuilt module: %w", err)
	}
	version, err := r.admin.store.PutModule(ctx, wasm)
	if err != nil {
		return fmt.Errorf("store rebuilt module: %w", err)
	}
	if _, err := r.admin.makeLive(ctx, DeployRequest{Function: function, Version: version, By: "watch"}, "rebuild"); err != nil {
		return fmt.Errorf("deploy rebuilt module: %w", err)
	}
	return nil
}
