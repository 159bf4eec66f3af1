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
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions/sandbox"
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
	// Limits bound results, reasons and logs per invocation.
	Limits sandbox.Limits
}

// Set is the loaded functions of one configuration.
type Set struct {
	opts  Options
	funcs map[string]*function

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
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
	engine := sandbox.NewEngine(opts.CacheDir)
	s := &Set{opts: opts, funcs: make(map[string]*function, len(fns))}
	errs := make([]error, len(fns))
	loaded := make([]*function, len(fns))
	var wg sync.WaitGroup
	for i, fc := range fns {
		wg.Go(func() { loaded[i], errs[i] = s.load(engine, fc) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, f := range loaded {
		s.funcs[f.cfg.Name] = f
	}
	return s, nil
}

func (s *Set) load(engine *sandbox.Engine, fc config.Function) (*function, error) {
	wasm, err := os.ReadFile(fc.Module)
	if err != nil {
		return nil, fmt.Errorf("function %s: read module: %w", fc.Name, err)
	}
	mod, err := engine.Compile(wasm, fc.Memory)
	if err != nil {
		return nil, fmt.Errorf("function %s: module %s: %w", fc.Name, fc.Module, err)
	}
	return &function{set: s, cfg: fc, module: mod}, nil
}

// Version returns the version (sha256) of a loaded function, and whether its
// compiled artifact came from the cache.
func (s *Set) Version(name string) (version string, cacheHit bool, ok bool) {
	f, ok := s.funcs[name]
	if !ok {
		return "", false, false
	}
	return f.module.Version, f.module.CacheHit, true
}

// Invoke runs the function called name on ev. It returns when the guest
// returns or the function's timeout passes, whichever is first; ctx only
// carries values (an invocation in flight is never abandoned early, so that
// shutdown can drain it).
func (s *Set) Invoke(ctx context.Context, name string, ev Event) (Result, error) {
	f, ok := s.funcs[name]
	if !ok {
		return Result{}, fmt.Errorf("%w %q", ErrUnknownFunction, name)
	}
	return f.invoke(ctx, ev)
}

// Close stops every idle instance. Instances still running (only possible
// after a timeout, see slot) stop when their call returns.
func (s *Set) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, f := range s.funcs {
		for _, sl := range f.idle {
			close(sl.jobs)
		}
		f.idle = nil
	}
	s.mu.Unlock()
	s.wg.Wait()
}
