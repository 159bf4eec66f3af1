package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/functions/worker"
)

type function struct {
	set     *Set
	cfg     config.Function
	version string

	paths sandbox.TierArtifacts // its artifacts' cache keys, by tier

	// Guarded by set.mu: a tier-up or a recompile replaces the artifacts.
	artifacts worker.Artifacts
	tier      sandbox.Tier
	gen       int // counts artifact changes: a worker of an older one is not reused
	cacheHit  bool
	idle      []idleWorker // oldest first
	live      int          // workers started and not yet stopped
	reaper    *time.Timer  // stops idle workers past the idle timeout
	retired   bool         // replaced or removed

	compileMu sync.Mutex // one recompile at a time

	kvMu   sync.Mutex
	kv     jetstream.KeyValue // the function's bucket, once created
	seenKV jetstream.KeyValue // its seen bucket, once created
}

type idleWorker struct {
	p     *worker.Process
	gen   int
	since time.Time
}

// Worker recycling bounds: wasmer leaks a little per instantiation, and a
// guest's memory is capped but the worker's own is not.
const (
	maxInvocationsPerWorker = 100_000
	rssCheckEvery           = 64
	maxWorkerOverhead       = 256 << 20 // allowed RSS beyond the guest's memory limit
)

func (f *function) idleTimeout() time.Duration {
	if f.cfg.IdleTimeout > 0 {
		return f.cfg.IdleTimeout
	}
	return defaultIdleTimeout
}

// take returns an idle worker (the most recently used, so that the others
// age out) or starts a new one, timing it as a cold start when the
// function had no worker at all; and the artifacts' generation it runs.
func (f *function) take() (*worker.Process, int, error) {
	s := f.set
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, 0, ErrClosed
	}
	if n := len(f.idle); n > 0 {
		w := f.idle[n-1]
		f.idle = f.idle[:n-1]
		s.mu.Unlock()
		return w.p, w.gen, nil
	}
	cold := f.live == 0
	s.mu.Unlock()
	start := time.Now()
	p, gen, err := f.spawn()
	if err == nil && cold {
		f.set.opts.Observer.ColdStart(f.cfg.Name, time.Since(start))
	}
	return p, gen, err
}

// spawn starts a worker, compiling the module again when its cached
// artifact turns out damaged or altered.
func (f *function) spawn() (*worker.Process, int, error) {
	p, gen, err := f.start()
	if !errors.Is(err, worker.ErrArtifact) {
		return p, gen, err
	}
	wasm, rerr := ReadModule(f.cfg.Module)
	switch {
	case rerr != nil:
		return nil, 0, fmt.Errorf("%w; the module could not be read to compile it again: %w", err, rerr)
	case Version(wasm) != f.version:
		return nil, 0, fmt.Errorf("%w; the module file changed since it was loaded", err)
	}
	f.set.mu.Lock()
	tier := f.tier
	f.set.mu.Unlock()
	if err := f.compile(wasm, tier); err != nil {
		return nil, 0, err
	}
	f.set.opts.Observer.Compiled(f.cfg.Name, false)
	return f.start()
}

// compileAndProve compiles wasm in the first tier unless the cache had an
// artifact, and proves the module with a first worker, which it keeps
// (warm) or stops. A compile from the cache was proved when it was made.
func (f *function) compileAndProve(wasm []byte, warm bool) error {
	if f.cacheHit && !warm {
		return nil
	}
	if !f.cacheHit {
		if err := f.compile(wasm, f.tier); err != nil {
			return err
		}
	}
	p, gen, err := f.start()
	if errors.Is(err, worker.ErrArtifact) && f.cacheHit {
		// A damaged or altered artifact: compile again.
		if err = f.compile(wasm, f.tier); err == nil {
			p, gen, err = f.start()
		}
	}
	if err != nil {
		return fmt.Errorf("function %s: %w", f.cfg.Name, err)
	}
	if warm {
		f.release(p, gen)
	} else {
		f.discard(p)
	}
	return nil
}

// compile compiles wasm with tier's compiler in a compile worker, stores
// its artifacts and makes them the ones new workers load. Workers of the
// previous artifacts finish their invocation and stop.
func (f *function) compile(wasm []byte, tier sandbox.Tier) error {
	f.compileMu.Lock()
	defer f.compileMu.Unlock()
	s, fc := f.set, f.cfg
	p, err := worker.Start(s.opts.WorkerEnv...)
	if err != nil {
		return fmt.Errorf("function %s: %w", fc.Name, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		p.Kill()
		return ErrClosed
	}
	s.compiling[p] = struct{}{}
	s.mu.Unlock()
	module, adapter, err := p.Compile(wasm, fc.Memory, tier, compileTimeout)
	s.mu.Lock()
	delete(s.compiling, p)
	closed := s.closed
	s.mu.Unlock()
	p.Close()
	switch {
	case closed:
		return ErrClosed
	case errors.Is(err, worker.ErrTimeout):
		err = fmt.Errorf("compiling took longer than %s and was stopped", compileTimeout)
	}
	if err != nil {
		return fmt.Errorf("function %s: module %s: %w", fc.Name, fc.Module, err)
	}
	a := worker.Artifacts{Paths: f.paths[tier]}
	if a.Module, err = sandbox.StoreArtifact(a.Paths.Module, module); err != nil {
		return fmt.Errorf("function %s: compile cache: %w", fc.Name, err)
	}
	if a.Adapter, err = sandbox.StoreArtifact(a.Paths.Adapter, adapter); err != nil {
		return fmt.Errorf("function %s: compile cache: %w", fc.Name, err)
	}
	s.mu.Lock()
	if tier == sandbox.TierFast && f.tier == sandbox.TierOptimized {
		// A tier-up finished first: keep it.
		s.mu.Unlock()
		return nil
	}
	f.artifacts, f.tier, f.cacheHit = a, tier, false
	f.gen++
	stale := f.idle
	f.idle = nil
	s.mu.Unlock()
	for _, w := range stale {
		f.discard(w.p)
	}
	return nil
}

// startTierUp compiles wasm with the optimizing tier in the background and
// swaps its artifacts in: new workers load them.
func (s *Set) startTierUp(f *function, wasm []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.bg.Go(func() {
		select {
		case s.tierUp <- struct{}{}:
		case <-s.stop:
			return
		}
		defer func() { <-s.tierUp }()
		start := time.Now()
		err := f.compile(wasm, sandbox.TierOptimized)
		switch {
		case errors.Is(err, ErrClosed):
		case err != nil:
			s.opts.Logger.Warn("optimizing compile failed; the function stays on its first tier", "function", f.cfg.Name, "error", err)
		default:
			s.opts.Logger.Info("function optimized", "function", f.cfg.Name, "tier", sandbox.TierOptimized, "took", time.Since(start).Round(time.Millisecond))
		}
	})
}

// start starts a worker with the function's current artifacts loaded, and
// returns their generation.
func (f *function) start() (*worker.Process, int, error) {
	s := f.set
	p, err := worker.Start(s.opts.WorkerEnv...)
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	a, gen := f.artifacts, f.gen
	s.mu.Unlock()
	initTimeout := s.opts.InitTimeout
	if err := p.Load(a, f.cfg.Memory, f.cfg.Env, f.cfg.FreshInstance, initTimeout); err != nil {
		p.Kill()
		s.opts.Observer.WorkerDied(f.cfg.Name, WorkerLoad)
		if errors.Is(err, worker.ErrTimeout) {
			err = fmt.Errorf("the module's _initialize did not return within %s", initTimeout)
		}
		return nil, 0, fmt.Errorf("load %s in a worker: %w", f.cfg.Module, err)
	}
	s.mu.Lock()
	f.live++
	s.mu.Unlock()
	s.opts.Observer.WorkerStarted(f.cfg.Name)
	return p, gen, nil
}

// release returns a healthy worker of generation gen to the idle list, or
// stops it.
func (f *function) release(p *worker.Process, gen int) {
	retire := p.Invoked >= maxInvocationsPerWorker ||
		(p.Invoked%rssCheckEvery == 0 && p.RSS() > f.cfg.Memory+maxWorkerOverhead)
	s := f.set
	s.mu.Lock()
	if !s.closed && !retire && !f.retired && gen == f.gen {
		f.idle = append(f.idle, idleWorker{p: p, gen: gen, since: time.Now()})
		if f.reaper == nil {
			f.reaper = time.AfterFunc(f.idleTimeout(), f.reap)
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	f.discard(p)
}

// discard stops a worker that is not idle.
func (f *function) discard(p *worker.Process) {
	p.Close()
	f.lost()
}

// lost accounts for a worker that has ended.
func (f *function) lost() {
	f.set.mu.Lock()
	f.live--
	f.set.mu.Unlock()
	f.set.opts.Observer.WorkerStopped(f.cfg.Name)
}

// reap stops the workers idle for the idle timeout or longer, and sets
// itself to run again when the next one will be.
func (f *function) reap() {
	s := f.set
	s.mu.Lock()
	if s.closed || f.retired || f.reaper == nil {
		s.mu.Unlock()
		return
	}
	timeout := f.idleTimeout()
	cutoff := time.Now().Add(-timeout)
	n := 0
	for n < len(f.idle) && !f.idle[n].since.After(cutoff) {
		n++
	}
	stale := make([]idleWorker, n)
	copy(stale, f.idle)
	f.idle = append(f.idle[:0], f.idle[n:]...)
	if len(f.idle) > 0 {
		f.reaper.Reset(time.Until(f.idle[0].since.Add(timeout)))
	} else {
		f.reaper = nil
	}
	s.reaping.Add(1)
	s.mu.Unlock()
	defer s.reaping.Done()
	for _, w := range stale {
		f.discard(w.p)
	}
}

// stopIdle stops the function's idle workers and its reaper.
func (f *function) stopIdle() {
	s := f.set
	s.mu.Lock()
	idle := f.idle
	f.idle = nil
	if f.reaper != nil {
		f.reaper.Stop()
		f.reaper = nil
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range idle {
		wg.Go(func() { f.discard(w.p) })
	}
	wg.Wait()
}

func (f *function) invoke(ctx context.Context, ev Event) (Result, error) {
	start := time.Now()
	fail := func(kind Kind, reason string) (Result, error) {
		return Result{}, &Error{Function: f.cfg.Name, Version: f.version, Kind: kind, Reason: reason}
	}
	p, gen, err := f.take()
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return Result{}, err
		}
		return fail(KindTrap, err.Error())
	}
	// The timeout is the guest's: it starts when the worker gets the event,
	// after any cold start, as the worker's kill timer does.
	h := &host{ctx: ctx, f: f, ev: ev, deadline: time.Now().Add(f.cfg.Timeout)}
	call := &sandbox.Call{
		Payload: ev.Data, Subject: ev.Subject, ID: ev.ID, Headers: ev.Headers,
		Binding: ev.Binding, Function: f.cfg.Name, Attempt: ev.Attempt,
		Limits: sandbox.Limits{ResultBytes: int(f.cfg.MaxResultSize), LogBytes: int(f.cfg.MaxLogSize), PublishBytes: f.set.opts.MaxPublishSize},
	}
	out, err := p.Invoke(call, h, f.cfg.Timeout)
	if err != nil {
		f.lost() // the worker is dead
	}
	switch {
	case errors.Is(err, worker.ErrTimeout):
		f.set.opts.Observer.WorkerDied(f.cfg.Name, WorkerTimeout)
		return fail(KindTimeout, fmt.Sprintf("timed out after %s (the worker was stopped)", f.cfg.Timeout))
	case errors.Is(err, worker.ErrProtocol):
		// The worker runs guest code: a frame it may not send is an
		// attack or a corrupted worker, never a guest's ordinary failure.
		h.logger().Error("worker protocol violation; the worker was stopped", "error", err)
		f.set.opts.Observer.WorkerDied(f.cfg.Name, WorkerProtocol)
		return fail(KindTrap, err.Error())
	case err != nil:
		f.set.opts.Observer.WorkerDied(f.cfg.Name, WorkerCrash)
		return fail(KindTrap, err.Error())
	}
	f.release(p, gen)
	if out.LogsTruncated {
		h.logger().Warn("guest logs truncated", "limit_bytes", f.cfg.MaxLogSize)
	}
	if out.ErrText != "" {
		if out.MemoryExceeded {
			return fail(KindMemory, fmt.Sprintf("memory limit of %s exceeded: %s", formatBytes(f.cfg.Memory), out.ErrText))
		}
		return fail(KindTrap, out.ErrText)
	}
	switch out.Status {
	case sandbox.StatusOK:
		return Result{Output: out.Result, Version: f.version, Duration: time.Since(start), LogsTruncated: out.LogsTruncated}, nil
	case sandbox.StatusPermanent:
		return fail(KindPermanent, orDefault(out.Reason, "handle returned 2 (permanent failure)"))
	case sandbox.StatusFailed:
		return Result{}, &Error{Function: f.cfg.Name, Version: f.version, Kind: KindFailed,
			Reason: orDefault(out.Reason, "handle returned 1 (failure)"), RetryAfter: out.RetryAfter}
	default:
		return fail(KindFailed, fmt.Sprintf("handle returned %d", out.Status))
	}
}

func trapMessage(err error) string {
	msg := strings.TrimSpace(err.Error())
	if msg == "" {
		return "trap"
	}
	return msg
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// host answers one invocation's host calls with the function's capabilities.
type host struct {
	ctx      context.Context
	f        *function
	ev       Event
	deadline time.Time // the invocation's timeout
}

func (h *host) logger() *slog.Logger {
	return h.f.set.opts.Logger.With("function", h.f.cfg.Name, "binding", h.ev.Binding, "event", h.ev.ID, "attempt", h.ev.Attempt)
}

func (h *host) Publish(subject string, data []byte) error {
	if err := h.checkPublish(subject); err != nil {
		return err
	}
	if len(data) > h.f.set.opts.MaxPublishSize {
		return sandbox.ErrTooLarge
	}
	if h.f.set.opts.Publisher == nil {
		return errors.New("no publisher")
	}
	if err := h.f.set.opts.Publisher.Publish(h.ctx, subject, data); err != nil {
		h.logger().Warn("publish failed", "subject", subject, "error", err)
		return err
	}
	return nil
}

var slogLevels = [...]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}

func (h *host) Log(level int, line string) {
	h.logger().Log(h.ctx, slogLevels[level], line, "source", "guest")
}

// allowed reports whether subject matches one of the patterns (NATS
// wildcards: "*" one token, ">" one or more trailing tokens).
func allowed(patterns []string, subject string) bool {
	for _, p := range patterns {
		if subjectMatches(p, subject) {
			return true
		}
	}
	return false
}

func subjectMatches(pattern, subject string) bool {
	pt := strings.Split(pattern, ".")
	st := strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}
