package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/version"
	"github.com/sluice-run/sluice/triggers"
)

// AdminSubjectPrefix is where the admin API listens: a NATS micro service
// named "sluice", discoverable with standard NATS tooling.
const AdminSubjectPrefix = "sluice.admin"

// DeployRequest asks the runtime to make a stored module version live.
type DeployRequest struct {
	Function string `json:"function"`
	// Version is a version in the module store; for a rollback, empty
	// means the version before the live one.
	Version string `json:"version"`
	By      string `json:"by,omitempty"`
}

// DeployReply says what changed.
type DeployReply struct {
	Function string `json:"function"`
	Version  string `json:"version"`
	Previous string `json:"previous"`
}

// admin serves deploy and rollback. Deploys are serialized: each compiles
// in a worker and swaps the function in.
type admin struct {
	r     *Runtime
	store *functions.Store
	dir   string // where deployed modules are written for the workers
	mu    sync.Mutex
	svc   micro.Service
	// watch follows the records, so that a deploy answered by another node
	// reaches this one; followed is closed when its goroutine ends.
	watch    jetstream.KeyWatcher
	followed chan struct{}
}

// resolveModules opens the module store and decides which module each
// function loads: the file runtime.hcl names, unless a later deploy (or
// rollback) made another version live and the file has not changed since.
func (r *Runtime) resolveModules(ctx context.Context, modulesDir string) ([]config.Function, error) {
	store, err := functions.OpenStore(ctx, r.js, r.cfg.NATS.Replicas)
	if err != nil {
		return nil, err
	}
	r.admin = &admin{r: r, store: store, dir: modulesDir}
	fns := append([]config.Function(nil), r.cfg.Functions...)
	for i, fc := range fns {
		wasm, err := os.ReadFile(fc.Module)
		if errors.Is(err, fs.ErrNotExist) {
			// Another node put it in the store: a node needs only its
			// config, not the modules.
			path, err := r.storedLiveModule(ctx, fc.Name)
			if err != nil {
				return nil, fmt.Errorf("function %s: %s is missing here: %w", fc.Name, fc.Module, err)
			}
			fns[i].Module, fns[i].Source = path, ""
			r.log.Info("module file missing; loading the live version from the module store", "function", fc.Name, "module", fc.Module)
			continue
		}
		if err != nil {
			continue // functions.Load reports it, with every other problem
		}
		rec, ok, err := store.Record(ctx, fc.Name)
		if err != nil {
			return nil, err
		}
		if !ok || rec.ConfigVersion != functions.Version(wasm) || rec.Live == rec.ConfigVersion {
			continue
		}
		path, err := r.admin.moduleFile(ctx, rec.Live)
		if err != nil {
			return nil, fmt.Errorf("function %s: deployed version: %w", fc.Name, err)
		}
		fns[i].Module, fns[i].Source = path, ""
		r.log.Info("loading the deployed version", "function", fc.Name, "version", rec.Live[:12])
	}
	return fns, nil
}

// errNotStored says a function's module is neither on disk nor in the
// module store; in a cluster another node may be about to store it.
var errNotStored = errors.New("no version of it is in the module store yet (start a node that has the module file)")

// storedLiveModule writes the live version of function from the module
// store to a file and returns its path.
func (r *Runtime) storedLiveModule(ctx context.Context, function string) (string, error) {
	rec, ok, err := r.admin.store.Record(ctx, function)
	if err != nil {
		return "", err
	}
	if !ok || rec.Live == "" {
		return "", errNotStored
	}
	return r.admin.moduleFile(ctx, rec.Live)
}

// recordModules stores the modules runtime.hcl names and records them as
// live where the file changed since the last start.
func (r *Runtime) recordModules(ctx context.Context) error {
	for _, fc := range r.cfg.Functions {
		wasm, err := os.ReadFile(fc.Module)
		if errors.Is(err, fs.ErrNotExist) {
			continue // loaded from the store: see resolveModules
		}
		if err != nil {
			return err
		}
		v := functions.Version(wasm)
		rec, ok, err := r.admin.store.Record(ctx, fc.Name)
		if err != nil {
			return err
		}
		if ok && rec.ConfigVersion == v {
			continue
		}
		if _, err := r.admin.store.PutModule(ctx, wasm); err != nil {
			return err
		}
		info := functions.VersionInfo{Version: v, Size: int64(len(wasm)), DeployedAt: time.Now().UTC(), Source: "runtime.hcl"}
		if _, err := r.admin.store.SetLive(ctx, fc.Name, info, v); err != nil {
			return err
		}
	}
	return nil
}

// moduleFile writes a stored version where workers can read it.
func (a *admin) moduleFile(ctx context.Context, version string) (string, error) {
	path := filepath.Join(a.dir, version+".wasm")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	wasm, err := a.store.Module(ctx, version)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, wasm, 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

func (r *Runtime) startAdmin() error {
	svc, err := micro.AddService(r.nc, micro.Config{
		Name: "sluice", Version: version.SemVer(),
		Description: "sluice runtime administration: deploy and roll back functions",
	})
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	g := svc.AddGroup(AdminSubjectPrefix)
	for name, h := range map[string]func(context.Context, DeployRequest) (DeployReply, error){
		"deploy":   r.admin.deploy,
		"rollback": r.admin.rollback,
	} {
		if err := g.AddEndpoint(name, micro.HandlerFunc(func(req micro.Request) {
			var in DeployRequest
			if err := json.Unmarshal(req.Data(), &in); err != nil {
				_ = req.Error("400", "bad request: "+err.Error(), nil)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			out, err := h(ctx, in)
			if err != nil {
				_ = req.Error("400", err.Error(), nil)
				return
			}
			_ = req.RespondJSON(out)
		})); err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
	}
	// Every node answers a reload (no queue group): each reads its own
	// config file, and the caller hears from every one of them.
	node := micro.WithHeaders(micro.Headers{triggers.HdrNode: []string{r.node}})
	if err := g.AddEndpoint("reload", micro.HandlerFunc(func(req micro.Request) {
		if err := r.Reload(); err != nil {
			_ = req.Error("400", err.Error(), nil, node)
			return
		}
		_ = req.Respond([]byte("reloaded"), node)
	}), micro.WithEndpointQueueGroupDisabled()); err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	r.admin.svc = svc
	return r.admin.follow(context.Background())
}

func (a *admin) stop() {
	if a == nil {
		return
	}
	if a.svc != nil {
		_ = a.svc.Stop()
	}
	if a.watch != nil {
		_ = a.watch.Stop()
		// The watcher closes its channel from the connection's callback
		// goroutine; do not hang a shutdown on it.
		select {
		case <-a.followed:
		case <-time.After(5 * time.Second):
			a.r.log.Warn("function version watcher did not stop")
		}
	}
}

// follow makes this node run the version every node records as live: the
// admin service answers a deploy on one node, and the others see the
// record change.
func (a *admin) follow(ctx context.Context) error {
	w, err := a.store.Watch(ctx)
	if err != nil {
		return fmt.Errorf("follow function versions: %w", err)
	}
	a.watch, a.followed = w, make(chan struct{})
	go func() {
		defer close(a.followed)
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if rec, err := functions.DecodeRecord(e); err == nil {
				a.adopt(rec)
			}
		}
	}()
	return nil
}

// adopt swaps in a record's live version when this node runs another.
func (a *admin) adopt(rec functions.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fc, ok := a.r.CurrentConfig().Function(rec.Name)
	if v, _, loaded := a.r.fns.Version(rec.Name); !ok || !loaded || v == rec.Live {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	path, err := a.moduleFile(ctx, rec.Live)
	if err == nil {
		fc.Module, fc.Source = path, ""
		err = a.r.fns.Update(fc)
	}
	if err != nil {
		a.r.log.Error("version deployed on another node not applied", "function", rec.Name, "version", short(rec.Live), "error", err)
		return
	}
	a.r.log.Info("version deployed on another node applied", "function", rec.Name, "version", short(rec.Live))
}

func (a *admin) deploy(ctx context.Context, in DeployRequest) (DeployReply, error) {
	return a.makeLive(ctx, in, "deploy")
}

func (a *admin) rollback(ctx context.Context, in DeployRequest) (DeployReply, error) {
	rec, ok, err := a.store.Record(ctx, in.Function)
	if err != nil {
		return DeployReply{}, err
	}
	if !ok {
		return DeployReply{}, fmt.Errorf("function %q has no versions", in.Function)
	}
	if in.Version == "" {
		for i, v := range rec.Versions {
			if v.Version == rec.Live && i > 0 {
				in.Version = rec.Versions[i-1].Version
			}
		}
		if in.Version == "" {
			return DeployReply{}, fmt.Errorf("function %s has no version before the live one (%s)", in.Function, short(rec.Live))
		}
	}
	in.Version = matchVersion(rec, in.Version)
	return a.makeLive(ctx, in, "rollback")
}

// matchVersion expands a version prefix (as `sluice functions` prints
// them) to the full version it names.
func matchVersion(rec functions.Record, prefix string) string {
	for _, v := range rec.Versions {
		if len(prefix) >= 7 && len(prefix) <= len(v.Version) && v.Version[:len(prefix)] == prefix {
			return v.Version
		}
	}
	return prefix
}

func (a *admin) makeLive(ctx context.Context, in DeployRequest, source string) (DeployReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fc, ok := a.r.CurrentConfig().Function(in.Function)
	if !ok {
		return DeployReply{}, fmt.Errorf("function %q is not in %s: add a function block for it first", in.Function, a.r.CurrentConfig().Path)
	}
	path, err := a.moduleFile(ctx, in.Version)
	if err != nil {
		return DeployReply{}, err
	}
	previous, _, _ := a.r.fns.Version(in.Function)
	fc.Module, fc.Source = path, ""
	if err := a.r.fns.Update(fc); err != nil {
		return DeployReply{}, err
	}
	info, err := os.Stat(path)
	if err != nil {
		return DeployReply{}, err
	}
	vi := functions.VersionInfo{Version: in.Version, Size: info.Size(), DeployedAt: time.Now().UTC(), DeployedBy: in.By, Source: source}
	if _, err := a.store.SetLive(ctx, in.Function, vi, ""); err != nil {
		return DeployReply{}, fmt.Errorf("%s is live but its record was not updated: %w", short(in.Version), err)
	}
	a.r.log.Info(source+" applied", "function", in.Function, "version", short(in.Version), "previous", short(previous), "by", in.By)
	return DeployReply{Function: in.Function, Version: in.Version, Previous: previous}, nil
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}
