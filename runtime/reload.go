package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/triggers"
)

// reloadDebounce is how long the config file must be quiet after a change
// before it is read: editors write a file in several steps.
const reloadDebounce = 200 * time.Millisecond

// ErrRestartRequired wraps a reload refused because the change cannot be
// applied to a running runtime (the nats block, say).
var ErrRestartRequired = errors.New("a restart is needed")

// reloader is the live-configuration state of a Runtime.
type reloader struct {
	// mu serializes reloads, and Shutdown with them.
	mu     sync.Mutex
	closed bool
	runner *triggers.Runner
	ctx    context.Context // the runner's: ends at Shutdown
	// sums are the sha256 of each function's module file as last applied:
	// a module is reloaded when its file changed, not merely because the
	// live version differs (a deploy made another version live).
	sums  map[string]string
	count *prometheus.CounterVec

	cfgMu sync.RWMutex // guards Runtime.cfg once Start returned

	watcher   *fsnotify.Watcher
	watchQuit chan struct{}
	watchDone chan struct{}
}

// initReload records what Start applied; Start calls it before the
// runner runs.
func (r *Runtime) initReload(ctx context.Context, runner *triggers.Runner) {
	rl := &r.reload
	rl.runner, rl.ctx = runner, ctx
	rl.sums = map[string]string{}
	for _, fc := range r.cfg.Functions {
		if sum, err := moduleSum(fc.Module); err == nil {
			rl.sums[fc.Name] = sum
		} else if live, _, _ := r.fns.Version(fc.Name); live != "" {
			rl.sums[fc.Name] = live // loaded from the module store
		}
	}
	rl.count = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_config_reloads_total",
		Help: "Reloads of the config file by result: applied, or failed (the running config stayed).",
	}, []string{"result"})
	rl.count.WithLabelValues("applied")
	rl.count.WithLabelValues("failed")
	_ = r.metrics.Registry().Register(rl.count)
}

// CurrentConfig is the config the runtime runs: the one it started with,
// or the last one Reload applied.
func (r *Runtime) CurrentConfig() *config.Config {
	r.reload.cfgMu.RLock()
	defer r.reload.cfgMu.RUnlock()
	return r.cfg
}

// Reload reads the config file again and applies what changed without a
// restart: functions whose module file or settings changed are swapped in
// (invocations in flight finish on the old version), new functions and
// bindings start, changed bindings restart, removed bindings stop pulling
// and let their invocations in flight finish (bounded by DrainTimeout),
// then removed functions go. Unchanged bindings keep running untouched.
// A removed binding's durable consumer and backlog stay in JetStream.
//
// A file that does not load (the error is a *config.DiagnosticsError
// holding every diagnostic) or a change that needs a restart (the nats
// block; wraps ErrRestartRequired) is logged and returned, and the running
// config stays. Reloads run one at a time.
func (r *Runtime) Reload() error {
	rl := &r.reload
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.closed || rl.runner == nil {
		return errors.New("reload: the runtime is not running")
	}
	if r.admin != nil {
		// Deploys read the config and swap functions too.
		r.admin.mu.Lock()
		defer r.admin.mu.Unlock()
	}
	err := r.reloadLocked()
	if err != nil {
		rl.count.WithLabelValues("failed").Inc()
		r.log.Error("config not reloaded; the running config stays", "config", r.cfg.Path, "error", err)
		return err
	}
	rl.count.WithLabelValues("applied").Inc()
	return nil
}

func (r *Runtime) reloadLocked() error {
	rl := &r.reload
	old := r.cfg
	if old.Path == "" {
		return errors.New("reload: the config was not read from a file")
	}
	cfg, err := config.Load(old.Path)
	if err != nil {
		return err
	}
	if err := r.checkLive(old, cfg); err != nil {
		return err
	}
	ctx := rl.ctx
	if err := BuildSources(ctx, cfg.Functions, r.log); err != nil {
		return err
	}

	// Functions first: a bad module stops the reload before any binding
	// changes.
	var added, updated, removed []string
	sums := map[string]string{}
	for _, fc := range cfg.Functions {
		asWritten := fc
		sum, err := moduleSum(fc.Module)
		if errors.Is(err, fs.ErrNotExist) && r.admin != nil {
			// As at start: a node without the module file runs the live
			// version from the module store.
			if path, serr := r.storedLiveModule(ctx, fc.Name); serr == nil {
				fc.Module, fc.Source = path, ""
				sum, err = moduleSum(path)
			}
		}
		if err != nil {
			r.removeFunctions(added)
			return fmt.Errorf("function %s: read module: %w", fc.Name, err)
		}
		sums[fc.Name] = sum
		prev, existed := old.Function(fc.Name)
		switch {
		case !existed:
			added = append(added, fc.Name)
		case sum != rl.sums[fc.Name]:
			updated = append(updated, fc.Name)
		case !reflect.DeepEqual(prev, asWritten):
			// Same file, new settings: keep the version that is live
			// (a deploy may have replaced the file's).
			if live, _, _ := r.fns.Version(fc.Name); live != sum && r.admin != nil {
				path, err := r.admin.moduleFile(ctx, live)
				if err != nil {
					r.removeFunctions(added)
					return fmt.Errorf("function %s: live version: %w", fc.Name, err)
				}
				fc.Module, fc.Source = path, ""
			}
			updated = append(updated, fc.Name)
		default:
			continue
		}
		if err := r.fns.Update(fc); err != nil {
			r.removeFunctions(added)
			return err
		}
	}
	for _, fc := range old.Functions {
		if _, ok := cfg.Function(fc.Name); !ok {
			removed = append(removed, fc.Name)
		}
	}

	if err := triggers.Ensure(ctx, r.js, cfg); err != nil {
		r.removeFunctions(added)
		return err
	}
	changes, err := rl.runner.Apply(ctx, cfg)
	if err != nil && changes.Empty() {
		r.removeFunctions(added)
		return err
	}
	if uerr := r.reloadUsers(cfg); uerr != nil {
		r.log.Warn("users and publish permissions not reloaded; they stay as they were", "error", uerr)
	}
	// The bindings of removed functions have stopped.
	r.removeFunctions(removed)
	rl.sums = sums
	rl.cfgMu.Lock()
	r.cfg = cfg
	rl.cfgMu.Unlock()
	r.metrics.Watch(r.js, cfg)
	r.probe.mu.Lock()
	r.probe.bindings = cfg.Bindings()
	r.probe.mu.Unlock()
	if r.admin != nil {
		if rerr := r.recordModules(ctx); rerr != nil {
			r.log.Warn("function versions not recorded", "error", rerr)
		}
	}
	if rerr := r.publishConfig(ctx); rerr != nil {
		r.log.Warn("effective config not recorded", "error", rerr)
	}
	r.log.Info("config reloaded", "config", cfg.Path,
		"functions_added", added, "functions_updated", updated, "functions_removed", removed,
		"bindings_added", changes.Added, "bindings_changed", changes.Changed, "bindings_removed", changes.Removed)
	if err != nil {
		// Applied, but some binding could not start consuming.
		return fmt.Errorf("config applied, but: %w", err)
	}
	return nil
}

// checkLive refuses changes a running runtime cannot apply.
func (r *Runtime) checkLive(old, cfg *config.Config) error {
	on, nn := old.NATS, cfg.NATS
	if r.opts.Listen != "" {
		on.Listen, nn.Listen = "", ""
	}
	if r.opts.DataDir != "" {
		on.StoreDir, nn.StoreDir = "", ""
	}
	if r.opts.Name != "" {
		on.Name, nn.Name = "", ""
	}
	if r.opts.ClusterListen != "" && on.Cluster != nil && nn.Cluster != nil {
		oc, nc := *on.Cluster, *nn.Cluster
		oc.Listen, nc.Listen = "", ""
		on.Cluster, nn.Cluster = &oc, &nc
	}
	if !reflect.DeepEqual(on, nn) {
		return fmt.Errorf("the nats block changed: %w to apply it (nothing was applied)", ErrRestartRequired)
	}
	if r.srv != nil && (len(old.Users) == 0) != (len(cfg.Users) == 0) {
		// The runtime's own connection authenticates, or not, as the
		// server did when it started.
		return fmt.Errorf("authentication was turned on or off (user blocks): %w to apply it (nothing was applied)", ErrRestartRequired)
	}
	if r.opts.MetricsListen == "" && !reflect.DeepEqual(old.Metrics, cfg.Metrics) {
		return fmt.Errorf("the metrics block changed: %w to apply it (nothing was applied)", ErrRestartRequired)
	}
	if r.srv != nil {
		maxEvent := int64(1 << 20)
		for _, b := range cfg.Bindings() {
			maxEvent = max(maxEvent, b.MaxEventSize)
		}
		if need := min(maxEvent+64<<10, 64<<20); need > r.nc.MaxPayload() {
			return fmt.Errorf("max_event_size %d is above what the embedded server was started for: %w to apply it (nothing was applied)", maxEvent, ErrRestartRequired)
		}
	}
	return nil
}

func (r *Runtime) removeFunctions(names []string) {
	for _, name := range names {
		r.fns.Remove(name)
	}
}

func moduleSum(path string) (string, error) {
	b, err := functions.ReadModule(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// startWatch reloads the config when its file changes. It watches the
// file's directory, since editors and tools replace the file rather than
// write it in place, and waits for reloadDebounce of quiet first.
func (r *Runtime) startWatch() error {
	path := r.cfg.Path
	if path == "" {
		return errors.New("the config was not read from a file")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return err
	}
	rl := &r.reload
	rl.watcher, rl.watchQuit, rl.watchDone = w, make(chan struct{}), make(chan struct{})
	kick := make(chan struct{}, 1)
	debounce := time.AfterFunc(time.Hour, func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	debounce.Stop()
	go func() {
		defer close(rl.watchDone)
		defer debounce.Stop()
		for {
			select {
			case <-rl.watchQuit:
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) == path && ev.Op&^fsnotify.Chmod != 0 {
					debounce.Reset(reloadDebounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				r.log.Warn("config file watch", "error", err)
			case <-kick:
				r.log.Info("config file changed: reloading", "config", path)
				_ = r.Reload() // logged
			}
		}
	}()
	return nil
}

// stopWatch stops the file watch and waits for a reload it started.
func (r *Runtime) stopWatch() {
	rl := &r.reload
	if rl.watcher == nil {
		return
	}
	close(rl.watchQuit)
	<-rl.watchDone
	_ = rl.watcher.Close()
}

// closeReload waits for a reload in progress and refuses later ones.
func (r *Runtime) closeReload() {
	r.reload.mu.Lock()
	r.reload.closed = true
	r.reload.mu.Unlock()
}
