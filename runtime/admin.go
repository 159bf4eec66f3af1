package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/version"
	"github.com/sluice-run/sluice/triggers"
)

// AdminSubjectPrefix is where the admin API listens: a NATS micro service
// named "sluice", discoverable with standard NATS tooling.
const AdminSubjectPrefix = client.AdminSubjectPrefix

// DeployRequest asks the runtime to make a stored module version live.
type DeployRequest = client.DeployRequest

// DeployReply says what changed.
type DeployReply = client.VersionChange

// admin serves deploy and rollback. A deploy validates the module (a
// compile worker, then a first worker running _initialize, each with a
// time bound) holding only its function's lock, so that a slow or hostile
// module delays no other function's deploy; mu is held only to swap.
type admin struct {
	r     *Runtime
	store *functions.Store
	// dir keeps modules that passed validation, for restarts; nothing is
	// written there before.
	dir string
	// mu serializes swapping functions in (deploys, adoptions, reloads).
	mu    sync.Mutex
	locks sync.Map // function name -> *sync.Mutex serializing its deploys
	svc   micro.Service
	// watch follows the records, so that a deploy answered by another node
	// reaches this one; followed is closed when its goroutine ends.
	watch    jetstream.KeyWatcher
	followed chan struct{}
}

// resolveModules opens the module store and decides which module each
// function loads: the file runtime.hcl names, unless a later deploy (or
// rollback) made another version live and the file has not changed since.
// Modules from the store come back as bytes, by function name: keepModules
// writes them to the module directory once functions.Load validated them.
func (r *Runtime) resolveModules(ctx context.Context, modulesDir string) ([]config.Function, map[string][]byte, error) {
	store, err := functions.OpenStore(ctx, r.js, r.cfg.NATS.Replicas)
	if err != nil {
		return nil, nil, err
	}
	r.admin = &admin{r: r, store: store, dir: modulesDir}
	fns := append([]config.Function(nil), r.cfg.Functions...)
	stored := map[string][]byte{}
	for i, fc := range fns {
		version, err := functions.FileVersion(r.cacheDir, fc.Module)
		if errors.Is(err, fs.ErrNotExist) {
			// Another node put it in the store: a node needs only its
			// config, not the modules.
			rec, ok, err := store.Record(ctx, fc.Name)
			if err == nil && (!ok || rec.Live == "") {
				err = errNotStored
			}
			var path string
			if err == nil {
				path, stored[fc.Name], err = r.admin.module(ctx, rec.Live)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("function %s: %s is missing here: %w", fc.Name, fc.Module, err)
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
			return nil, nil, err
		}
		if !ok || rec.ConfigVersion != version || rec.Live == rec.ConfigVersion {
			continue
		}
		path, b, err := r.admin.module(ctx, rec.Live)
		if err != nil {
			return nil, nil, fmt.Errorf("function %s: deployed version: %w", fc.Name, err)
		}
		fns[i].Module, fns[i].Source, stored[fc.Name] = path, "", b
		r.log.Info("loading the deployed version", "function", fc.Name, "version", rec.Live[:12])
	}
	return fns, stored, nil
}

// keepModules writes validated modules to the module directory, by the
// paths resolveModules gave their functions.
func (a *admin) keepModules(fns []config.Function, stored map[string][]byte) error {
	for _, fc := range fns {
		if wasm, ok := stored[fc.Name]; ok {
			if err := a.keep(fc.Module, wasm); err != nil {
				return err
			}
		}
	}
	return nil
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
		// Most restarts change no module: the version alone (recalled by
		// the file's stamp) tells, and the bytes are read only to store.
		v, err := functions.FileVersion(r.cacheDir, fc.Module)
		if errors.Is(err, fs.ErrNotExist) {
			continue // loaded from the store: see resolveModules
		}
		if err != nil {
			return err
		}
		rec, ok, err := r.admin.store.Record(ctx, fc.Name)
		if err != nil {
			return err
		}
		if ok && rec.ConfigVersion == v {
			continue
		}
		wasm, err := functions.ReadModule(fc.Module)
		if err != nil {
			return err
		}
		v = functions.Version(wasm) // the bytes stored, should the file have changed since
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

// module returns a stored version's bytes, from the module directory when
// a validated copy is there, else from the module store, and the path
// where the module directory keeps (or will keep) it.
func (a *admin) module(ctx context.Context, version string) (string, []byte, error) {
	path := filepath.Join(a.dir, version+".wasm")
	if wasm, err := functions.ReadModule(path); err == nil && functions.Version(wasm) == version {
		return path, wasm, nil
	}
	wasm, err := a.store.Module(ctx, version)
	if err != nil {
		return "", nil, err
	}
	return path, wasm, nil
}

// keep writes a validated module to the module directory.
func (a *admin) keep(path string, wasm []byte) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return fmt.Errorf("module directory: %w", err)
	}
	tmp, err := os.CreateTemp(a.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("module directory: %w", err)
	}
	_, werr := tmp.Write(wasm)
	if err := errors.Join(werr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("module directory: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// moduleFile returns the path of a stored version in the module directory,
// writing it there first if needed. Only versions some node validated
// before recording them live may come here (reloads); a deploy goes
// through prepare.
func (a *admin) moduleFile(ctx context.Context, version string) (string, error) {
	path, wasm, err := a.module(ctx, version)
	if err != nil {
		return "", err
	}
	return path, a.keep(path, wasm)
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
			// The header holds one line; the body keeps the diagnostics'
			// line breaks.
			_ = req.Error("400", err.Error(), []byte(err.Error()), node)
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
	unlock := a.lockFunction(rec.Name)
	defer unlock()
	if _, ok := a.r.CurrentConfig().Function(rec.Name); !ok {
		return
	}
	if v, _, loaded := a.r.fns.Version(rec.Name); !loaded || v == rec.Live {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, _, err := a.prepareAndSwap(ctx, rec.Name, rec.Live)
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

// lockFunction serializes deploys and adoptions of one function.
func (a *admin) lockFunction(name string) (unlock func()) {
	l, _ := a.locks.LoadOrStore(name, &sync.Mutex{})
	mu := l.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// prepareAndSwap validates a stored version of function from memory (a
// compile worker, then a first worker running _initialize), swaps it in,
// and only then keeps it in the module directory. It returns the previous
// live version and the module's size. The caller holds the function's lock.
func (a *admin) prepareAndSwap(ctx context.Context, function, version string) (previous string, size int64, err error) {
	fc, ok := a.r.CurrentConfig().Function(function)
	if !ok {
		return "", 0, fmt.Errorf("function %q is not in %s: add a function block for it first", function, a.r.CurrentConfig().Path)
	}
	path, wasm, err := a.module(ctx, version)
	if err != nil {
		return "", 0, err
	}
	fc.Module, fc.Source = path, ""
	p, err := a.r.fns.Prepare(fc, wasm)
	if err != nil {
		return "", 0, err
	}
	a.mu.Lock()
	// A reload may have removed or changed the function meanwhile.
	now, ok := a.r.CurrentConfig().Function(function)
	now.Module, now.Source = fc.Module, fc.Source
	if !ok || !reflect.DeepEqual(now, fc) {
		a.mu.Unlock()
		p.Discard()
		return "", 0, fmt.Errorf("function %s changed in %s during the deploy; deploy again", function, a.r.CurrentConfig().Path)
	}
	previous, _, _ = a.r.fns.Version(function)
	a.r.fns.Swap(p)
	a.mu.Unlock()
	if err := a.keep(path, wasm); err != nil {
		a.r.log.Warn("deployed module not kept in the module directory; a restart reads it from the module store", "function", function, "error", err)
	}
	return previous, int64(len(wasm)), nil
}

func (a *admin) makeLive(ctx context.Context, in DeployRequest, source string) (DeployReply, error) {
	unlock := a.lockFunction(in.Function)
	defer unlock()
	previous, size, err := a.prepareAndSwap(ctx, in.Function, in.Version)
	if err != nil {
		return DeployReply{}, err
	}
	vi := functions.VersionInfo{Version: in.Version, Size: size, DeployedAt: time.Now().UTC(), DeployedBy: in.By, Source: source}
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
