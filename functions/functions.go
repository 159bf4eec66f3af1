// Package functions owns the runtime's WebAssembly functions: it loads and
// validates their modules, keeps warm instances, and invokes them with the
// limits and capabilities runtime.hcl gives each one.
//
// Invoke is the seam between the triggers and the sandbox: it takes an
// event and returns a result or a typed *Error whose Kind the retry layer
// branches on.
package functions

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/functions/worker"
)

// Kind classifies a failed invocation.
type Kind string

// The kinds of failure, as counted in metrics and dead-letter headers.
const (
	KindFailed    Kind = "failed"    // handle returned 1 (or an unknown code)
	KindPermanent Kind = "permanent" // handle returned 2: do not retry
	KindTrap      Kind = "trap"      // the guest trapped, aborted or exited
	KindTimeout   Kind = "timeout"   // the invocation ran past the function's timeout
	KindMemory    Kind = "memory"    // the guest hit its memory limit
)

// Sentinels matched by errors.Is on an *Error of the same kind.
var (
	ErrFailed      = errors.New("function failed")
	ErrPermanent   = errors.New("function failed permanently")
	ErrTrap        = errors.New("function trapped")
	ErrTimeout     = errors.New("function timed out")
	ErrMemoryLimit = errors.New("function exceeded its memory limit")
	// ErrUnknownFunction is returned by Invoke for a name not loaded.
	ErrUnknownFunction = errors.New("unknown function")
	// ErrClosed is returned by Invoke after Close.
	ErrClosed = errors.New("functions closed")
	// ErrNoWorker is returned by Invoke when no worker could be started
	// for the invocation and the guest did not run (a failed fork, a
	// stale artifact). A guest whose own _initialize traps or loops fails
	// as KindTrap instead: that is the function's failure.
	ErrNoWorker = errors.New("no worker for the invocation")
	// ErrReleased is returned by Invoke when the event was in flight in a
	// worker that was stopped for another event (its timeout, or its
	// protocol violation): the event is not at fault, did not fail, and
	// should run again without using an attempt.
	ErrReleased = errors.New("released: the worker was stopped for another event")
)

var kindSentinels = map[Kind]error{
	KindFailed: ErrFailed, KindPermanent: ErrPermanent, KindTrap: ErrTrap,
	KindTimeout: ErrTimeout, KindMemory: ErrMemoryLimit,
}

// Error is a failed invocation.
type Error struct {
	Function string
	Version  string
	Kind     Kind
	// Reason is the guest's own reason, or what the host saw.
	Reason string
	// RetryAfter is the delay the guest asked for (0: use the policy).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("function %s: %s: %s", e.Function, e.Kind, e.Reason)
}

// Is makes errors.Is(err, ErrTimeout) and friends work.
func (e *Error) Is(target error) bool { return kindSentinels[e.Kind] == target }

// Event is one event handed to a function.
type Event struct {
	ID      string
	Subject string
	Binding string
	Data    []byte
	Headers map[string][]string
	Attempt int
}

// Result is a successful invocation.
type Result struct {
	Output        []byte
	Version       string
	Duration      time.Duration
	LogsTruncated bool
}

// Publisher is how guests' publishes reach the broker.
type Publisher interface {
	// Publish sends data to subject and waits for the broker to store it
	// when a stream captures the subject.
	Publish(ctx context.Context, subject string, data []byte) error
}

// Options configures Load.
type Options struct {
	// CacheDir holds compiled artifacts ("" disables the cache).
	CacheDir  string
	Publisher Publisher
	Logger    *slog.Logger
	// MaxPublishSize bounds one guest publish. Default 1 MiB.
	MaxPublishSize int
	// WorkerEnv is added to the environment of worker processes (not to
	// the guests'), e.g. GOGC for tests that stress the worker's GC.
	WorkerEnv []string
	// JS holds the functions' key-value buckets (kv_* and seen host calls).
	// Nil: those calls fail with ERR_FAILED.
	JS jetstream.JetStream
	// Replicas is how many copies JetStream keeps of those buckets.
	// Default 1.
	Replicas int
	// Observer hears about worker processes and compiles (for metrics);
	// nil for none.
	Observer Observer
	// Modules holds module bytes by function name, loaded instead of the
	// function's Module file (which then only names it in messages).
	Modules map[string][]byte
	// InitTimeout bounds a new worker's load of a module, _initialize
	// included. Default 15 s.
	InitTimeout time.Duration
	// Logs hears every guest log line (sluice_log and WASI stdout/stderr),
	// within the function's max_log_size, besides Logger; nil for none.
	Logs LogSink
}

// LogSink hears guest log lines as the guest writes them. GuestLog runs
// on the invocation's path: it must not block.
type LogSink interface {
	GuestLog(LogLine)
}

// LogLine is one line a guest logged during an invocation.
type LogLine struct {
	Time     time.Time
	Function string
	Binding  string
	Event    string
	Attempt  int
	Level    slog.Level
	Line     string
}

// Observer hears about a Set's worker processes and compiles, for metrics.
// Its methods must be quick and safe for concurrent use.
type Observer interface {
	// WorkerStarted reports a worker that loaded a function's module.
	WorkerStarted(function string)
	// WorkerDied reports a worker that ended abnormally; reason is one of
	// the Worker* reasons.
	WorkerDied(function, reason string)
	// WorkerStopped reports the end of a worker WorkerStarted reported,
	// however it ended: with WorkerStarted it counts a function's workers.
	WorkerStopped(function string)
	// ColdStart reports an event that found the function without any
	// worker, and how long starting one took (process start and module
	// load).
	ColdStart(function string, took time.Duration)
	// Compiled reports a loaded function, and whether its compiled artifact
	// came from the compile cache.
	Compiled(function string, cacheHit bool)
}

// Reasons a worker ended abnormally, as reported to Observer.WorkerDied.
const (
	WorkerTimeout  = "timeout"  // killed at an invocation's timeout
	WorkerCrash    = "crash"    // died during an invocation
	WorkerLoad     = "load"     // could not load the module
	WorkerProtocol = "protocol" // broke the worker protocol and was killed
)

type noObserver struct{}

func (noObserver) WorkerStarted(string)            {}
func (noObserver) WorkerDied(string, string)       {}
func (noObserver) WorkerStopped(string)            {}
func (noObserver) ColdStart(string, time.Duration) {}
func (noObserver) Compiled(string, bool)           {}

// Time bounds of loading a module. A compile runs no guest code but a
// hostile module can make the compiler work very hard; _initialize is guest
// code and may loop.
const (
	compileTimeout     = time.Minute
	defaultInitTimeout = 15 * time.Second
	// defaultIdleTimeout stands in for a config.Function built without
	// config's defaults (config applies the same one).
	defaultIdleTimeout = 5 * time.Minute
)

// Set is the loaded functions of one configuration.
type Set struct {
	opts Options
	http *http.Transport // outbound HTTP of every function

	fmu   sync.RWMutex
	funcs map[string]*function

	mu        sync.Mutex // guards closed, compiling and every function's workers, artifacts and retired
	closed    bool
	compiling map[*worker.Process]struct{} // compile workers, killed by Close
	reaping   sync.WaitGroup               // idle-worker stops in progress, awaited by Close

	stop   chan struct{}  // closed by Close: tier-ups give up
	tierUp chan struct{}  // bounds concurrent tier-up compiles
	bg     sync.WaitGroup // tier-up goroutines, awaited by Close
}

// Load reads, validates and compiles every function's module. All
// problems are reported together, each naming the function and its file.
func Load(fns []config.Function, opts Options) (*Set, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxPublishSize <= 0 {
		opts.MaxPublishSize = 1 << 20
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	if opts.InitTimeout <= 0 {
		opts.InitTimeout = defaultInitTimeout
	}
	if opts.CacheDir == "" {
		dir, err := os.MkdirTemp("", "sluice-cache-")
		if err != nil {
			return nil, fmt.Errorf("compile cache: %w", err)
		}
		opts.CacheDir = dir
	}
	s := &Set{opts: opts, funcs: make(map[string]*function, len(fns)), http: newHTTPTransport(),
		compiling: map[*worker.Process]struct{}{}, stop: make(chan struct{}),
		// Tier-ups share the cores with events being served.
		tierUp: make(chan struct{}, max(1, goruntime.NumCPU()/2)),
	}
	// First what the compile cache holds: reading and hashing a module is
	// quick, and tells how many need a compile.
	errs := make([]error, len(fns))
	loaded := make([]*function, len(fns))
	wasms := make([][]byte, len(fns))
	// Functions of one module keep one copy of it until their tier-up.
	var sharedMu sync.Mutex
	shared := map[string][]byte{}
	parallel(len(fns), 2*goruntime.NumCPU(), func(i int) {
		fc := fns[i]
		wasm, given := opts.Modules[fc.Name]
		var before stamp
		if !given {
			// A file unchanged since a load that found its optimized
			// artifact needs no read (stamp.go).
			if sum, ok := recalledVersion(opts.CacheDir, fc.Module); ok {
				if f := s.newFunctionOf(fc, sum); f.cacheHit && f.tier == sandbox.TierOptimized {
					loaded[i] = f
					return
				}
			}
			before, _ = stampOf(fc.Module)
			var err error
			if wasm, err = ReadModule(fc.Module); err != nil {
				errs[i] = fmt.Errorf("function %s: read module: %w", fc.Name, err)
				return
			}
		}
		f := s.newFunction(fc, wasm)
		if !given {
			rememberVersion(opts.CacheDir, fc.Module, before, f.version)
		}
		loaded[i] = f
		if !f.cacheHit || f.tier != sandbox.TierOptimized {
			sharedMu.Lock()
			if first, ok := shared[f.version]; ok {
				wasm = first
			} else {
				shared[f.version] = wasm
			}
			sharedMu.Unlock()
			wasms[i] = wasm // for the compile, or the tier-up
		}
	})
	var todo []int
	for i, f := range loaded {
		if f != nil && !f.cacheHit {
			todo = append(todo, i)
		}
	}
	if len(todo) > 0 {
		// A compile keeps a core busy: one per core at once.
		opts.Logger.Info(fmt.Sprintf("compiling %d functions…", len(todo)), "tier", firstTier())
		var done atomic.Int32
		parallel(len(todo), goruntime.NumCPU(), func(k int) {
			i := todo[k]
			start := time.Now()
			errs[i] = loaded[i].compileAndProve(wasms[i], false)
			if errs[i] == nil {
				opts.Logger.Info(fmt.Sprintf("compiling %d functions… %d/%d", len(todo), done.Add(1), len(todo)),
					"function", fns[i].Name, "took", time.Since(start).Round(time.Millisecond))
			}
		})
	}
	if err := errors.Join(errs...); err != nil {
		s.Close()
		return nil, err
	}
	for i, f := range loaded {
		s.funcs[f.cfg.Name] = f
		opts.Observer.Compiled(f.cfg.Name, f.cacheHit)
		if f.tier != sandbox.TierOptimized {
			s.startTierUp(f, wasms[i])
		}
	}
	return s, nil
}

// parallel runs do(0..n-1), at most limit at once.
func parallel(n, limit int, do func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			do(i)
		})
	}
	wg.Wait()
}

// firstTier is the tier a module is compiled with first: the fast one,
// when this build of wasmer has it.
func firstTier() sandbox.Tier {
	if sandbox.FastTierAvailable() {
		return sandbox.TierFast
	}
	return sandbox.TierOptimized
}

// ReadModule reads a module file: a regular file of at most MaxModuleSize
// bytes, so that a device such as /dev/zero is a clear error.
func ReadModule(path string) ([]byte, error) {
	return sandbox.ReadFileCapped(path, MaxModuleSize)
}

// ReadDeployable reads a module file to deploy and makes the checks that
// need no engine, with the runtime's own words: a regular file within
// MaxModuleSize (/dev/zero is an error, not an endless read) and a module
// whose memory section parses. The runtime checks the rest (exports,
// imports) when it compiles the module.
func ReadDeployable(path string) ([]byte, error) {
	wasm, err := ReadModule(path)
	if err != nil {
		return nil, err
	}
	if _, err := sandbox.CapMemory(wasm, 4<<30); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return wasm, nil
}

// FileVersions gives the version of each function of cfg from its module
// file, the way the runtime computes it when it loads the file; a module
// not built yet has none ("").
func FileVersions(cfg *config.Config) func(function string) string {
	return func(name string) string {
		f, ok := cfg.Function(name)
		if !ok {
			return ""
		}
		b, err := ReadModule(f.Module)
		if err != nil {
			return ""
		}
		return client.ModuleVersion(b)
	}
}

// load reads fc's module and loads it (loadModule).
func (s *Set) load(fc config.Function) (*function, error) {
	wasm, err := ReadModule(fc.Module)
	if err != nil {
		return nil, fmt.Errorf("function %s: read module: %w", fc.Name, err)
	}
	return s.loadModule(fc, wasm)
}

// newFunction returns the function of fc and wasm with the best artifacts
// the compile cache holds for it (cacheHit), if any: the optimized tier's,
// or else the fast tier's.
func (s *Set) newFunction(fc config.Function, wasm []byte) *function {
	return s.newFunctionOf(fc, sandbox.DigestOf(wasm))
}

// newFunctionOf is newFunction for a module known by its digest.
func (s *Set) newFunctionOf(fc config.Function, sum sandbox.Digest) *function {
	f := &function{set: s, cfg: fc, version: hex.EncodeToString(sum[:]), tier: firstTier()}
	paths := sandbox.ArtifactPaths(s.opts.CacheDir, sum, fc.Memory)
	f.paths = paths
	for _, t := range []sandbox.Tier{sandbox.TierOptimized, sandbox.TierFast} {
		if a, ok := cachedArtifacts(paths[t]); ok {
			f.tier, f.cacheHit, f.artifacts = t, true, a
			break
		}
	}
	return f
}

// loadModule loads a function to be swapped in while running (a deploy or
// a reload): compiled (in the fast tier, then optimized in the background)
// unless cached, and warm: a first worker is up, proving the module
// instantiates.
func (s *Set) loadModule(fc config.Function, wasm []byte) (*function, error) {
	f := s.newFunction(fc, wasm)
	if err := f.compileAndProve(wasm, true); err != nil {
		return nil, err
	}
	if f.tier != sandbox.TierOptimized {
		s.startTierUp(f, wasm)
	}
	return f, nil
}

// Version returns the version (sha256) of a loaded function, and whether its
// compiled artifact came from the cache.
func (s *Set) Version(name string) (version string, cacheHit bool, ok bool) {
	f, ok := s.lookup(name)
	if !ok {
		return "", false, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return f.version, f.cacheHit, true
}

// Tier returns the compiler tier of the artifacts the function's new
// workers load: the fast one until its optimized compile is swapped in.
func (s *Set) Tier(name string) (sandbox.Tier, bool) {
	f, ok := s.lookup(name)
	if !ok {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return f.tier, true
}

// Invoke runs the function called name on ev. It returns when the guest
// returns or the function's timeout passes, whichever is first; ctx only
// carries values (an invocation in flight is never abandoned early, so that
// shutdown can drain it).
func (s *Set) Invoke(ctx context.Context, name string, ev Event) (Result, error) {
	f, ok := s.lookup(name)
	if !ok {
		return Result{}, fmt.Errorf("%w %q", ErrUnknownFunction, name)
	}
	return f.invoke(ctx, ev)
}

// Close stops every idle worker; workers still running an invocation stop
// when it returns.
func (s *Set) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	compiling := make([]*worker.Process, 0, len(s.compiling))
	for p := range s.compiling {
		compiling = append(compiling, p)
	}
	s.mu.Unlock()
	for _, p := range compiling {
		p.Kill()
	}
	s.bg.Wait()
	s.fmu.RLock()
	var wg sync.WaitGroup
	for _, f := range s.funcs {
		wg.Go(f.stopIdle)
	}
	s.fmu.RUnlock()
	wg.Wait()
	s.reaping.Wait()
	s.http.CloseIdleConnections()
}

func (s *Set) lookup(name string) (*function, bool) {
	s.fmu.RLock()
	defer s.fmu.RUnlock()
	f, ok := s.funcs[name]
	return f, ok
}

// Update adds fc, or replaces the function of that name: the new module is
// validated, compiled and started first, so a bad one leaves the live
// version untouched. Invocations already running finish on the old
// version; the next ones get the new one.
func (s *Set) Update(fc config.Function) error {
	f, err := s.load(fc)
	if err != nil {
		return err
	}
	s.swap(f)
	return nil
}

// Prepared is a function whose module is validated, compiled and running
// in a first worker, but not yet live: Swap makes it live, Discard drops
// it. Preparing takes as long as compiling and _initialize; swapping is
// immediate, so a caller can prepare without holding its own locks.
type Prepared struct{ f *function }

// Prepare loads fc with the module's bytes in hand: nothing is read from
// fc.Module, which only names the module in messages.
func (s *Set) Prepare(fc config.Function, wasm []byte) (*Prepared, error) {
	f, err := s.loadModule(fc, wasm)
	if err != nil {
		return nil, err
	}
	return &Prepared{f: f}, nil
}

// Swap makes p live in place of the function of its name (as Update).
func (s *Set) Swap(p *Prepared) { s.swap(p.f) }

// Discard stops a prepared function that will not be swapped in.
func (p *Prepared) Discard() { p.f.set.retire(p.f) }

func (s *Set) swap(f *function) {
	fc := f.cfg
	s.opts.Observer.Compiled(fc.Name, f.cacheHit)
	s.fmu.Lock()
	old := s.funcs[fc.Name]
	s.funcs[fc.Name] = f
	s.fmu.Unlock()
	s.retire(old)
}

// Remove takes a function out: later invocations fail with
// ErrUnknownFunction; running ones finish.
func (s *Set) Remove(name string) {
	s.fmu.Lock()
	old := s.funcs[name]
	delete(s.funcs, name)
	s.fmu.Unlock()
	s.retire(old)
}

// retire closes a replaced function's idle workers; its busy ones close
// when their invocation returns.
func (s *Set) retire(f *function) {
	if f == nil {
		return
	}
	s.mu.Lock()
	f.retired = true
	s.mu.Unlock()
	f.stopIdle()
}

// Workers returns how many worker processes the function called name has,
// idle or busy.
func (s *Set) Workers(name string) int {
	f, ok := s.lookup(name)
	if !ok {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return f.live
}
