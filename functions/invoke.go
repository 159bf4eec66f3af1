package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	paths   sandbox.TierArtifacts // its artifacts' cache keys, by tier

	// Guarded by set.mu: a tier-up or a recompile replaces the artifacts.
	artifacts worker.Artifacts
	tier      sandbox.Tier
	gen       int // counts artifact changes: a worker of an older one takes no new event
	cacheHit  bool
	workers   []*proc       // the workers taking events
	starting  chan struct{} // closed when the worker being started is up, or failed
	live      int           // workers started and not yet stopped
	reaper    *time.Timer   // stops workers idle past the idle timeout
	retired   bool          // replaced or removed

	compileMu sync.Mutex // one compile at a time

	kvMu   sync.Mutex
	kv     jetstream.KeyValue // the function's bucket, once created
	seenKV jetstream.KeyValue // its seen bucket, once created
}

// proc is one worker process of a function: it runs up to
// maxInstancesPerWorker events at once, each in its own instance. Its
// fields are guarded by set.mu.
type proc struct {
	p         *worker.Process
	gen       int
	inflight  int
	peak      int       // most events at once: the instances it holds
	idleSince time.Time // when inflight last fell to 0
	out       bool      // takes no new event; stops when inflight is 0
	dead      bool      // the process ended under an invocation
	reported  bool      // its death was reported to the observer
}

// Worker bounds: instances per worker process, and recycling (wasmer
// leaks a little per instantiation, and a guest's memory is capped but the
// worker's own is not).
const (
	maxInstancesPerWorker   = 64
	maxInvocationsPerWorker = 100_000
	rssCheckEvery           = 64
	maxWorkerOverhead       = 256 << 20 // allowed RSS beyond its instances' memory limits
)

func (f *function) idleTimeout() time.Duration {
	if f.cfg.IdleTimeout > 0 {
		return f.cfg.IdleTimeout
	}
	return defaultIdleTimeout
}

// take returns a worker with room for one more event, the busiest such
// (so that one process serves a function's concurrency), or starts one,
// timing it as a cold start when the function had no worker at all. Events
// arriving while a worker starts wait for it rather than start their own.
func (f *function) take() (*proc, error) {
	s := f.set
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		var best *proc
		for _, w := range f.workers {
			if w.inflight < maxInstancesPerWorker && (best == nil || w.inflight > best.inflight) {
				best = w
			}
		}
		if best != nil {
			best.inflight++
			best.peak = max(best.peak, best.inflight)
			s.mu.Unlock()
			return best, nil
		}
		if f.starting == nil {
			break
		}
		ch := f.starting
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
	ch := make(chan struct{})
	f.starting = ch
	cold := f.live == 0
	s.mu.Unlock()
	start := time.Now()
	p, gen, err := f.spawn()
	s.mu.Lock()
	f.starting = nil
	close(ch)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	w := &proc{p: p, gen: gen, inflight: 1, peak: 1}
	if !s.closed && !f.retired && gen == f.gen {
		f.workers = append(f.workers, w)
	} else {
		w.out = true
	}
	s.mu.Unlock()
	if cold {
		s.opts.Observer.ColdStart(f.cfg.Name, time.Since(start))
	}
	return w, nil
}

// release ends one event's use of w. err is the worker's error, if any:
// then the worker is gone. A worker that is out (replaced, recycled,
// dead) stops with its last event; a healthy one with none left becomes
// idle.
func (f *function) release(w *proc, err error) {
	rss := int64(0)
	n := w.p.Invoked()
	if err == nil && n%rssCheckEvery == 0 {
		rss = w.p.RSS()
	}
	s := f.set
	s.mu.Lock()
	w.inflight--
	report := ""
	if err != nil {
		w.dead = true
		if !w.reported && !errors.Is(err, worker.ErrReleased) {
			w.reported = true
			report = deathReason(err)
		}
	}
	if w.dead || s.closed || f.retired || w.gen != f.gen || n >= maxInvocationsPerWorker ||
		rss > f.cfg.Memory*int64(w.peak)+maxWorkerOverhead {
		f.dropLocked(w)
	}
	stop := w.out && w.inflight == 0
	if !w.out && w.inflight == 0 {
		w.idleSince = time.Now()
		if f.reaper == nil {
			f.reaper = time.AfterFunc(f.idleTimeout(), f.reap)
		}
	}
	s.mu.Unlock()
	if report != "" {
		s.opts.Observer.WorkerDied(f.cfg.Name, report)
	}
	if stop {
		f.stop(w)
	}
}

func deathReason(err error) string {
	switch {
	case errors.Is(err, worker.ErrTimeout):
		return WorkerTimeout
	case errors.Is(err, worker.ErrProtocol):
		return WorkerProtocol
	}
	return WorkerCrash
}

// dropLocked takes w out of the workers taking events.
func (f *function) dropLocked(w *proc) {
	if w.out {
		return
	}
	w.out = true
	f.workers = slices.DeleteFunc(f.workers, func(x *proc) bool { return x == w })
}

// stop ends a worker that has no event left.
func (f *function) stop(w *proc) {
	if w.dead {
		w.p.Kill()
	} else {
		w.p.Close()
	}
	f.lost()
}

// addIdle makes a worker started outside take (a deploy's first one) idle.
func (f *function) addIdle(p *worker.Process, gen int) {
	s := f.set
	s.mu.Lock()
	if s.closed || f.retired || gen != f.gen {
		s.mu.Unlock()
		f.discard(p)
		return
	}
	f.workers = append(f.workers, &proc{p: p, gen: gen, idleSince: time.Now()})
	if f.reaper == nil {
		f.reaper = time.AfterFunc(f.idleTimeout(), f.reap)
	}
	s.mu.Unlock()
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
	if _, err := f.compile(wasm, tier, false); err != nil {
		return nil, 0, err
	}
	f.set.opts.Observer.Compiled(f.cfg.Name, false)
	return f.start()
}

// compileAndProve compiles wasm in the first tier unless the cache had an
// artifact, and proves the module with a first worker, which it keeps
// (warm) or stops. A compile from the cache (or one another function of
// the same module stored meanwhile) was proved when it was made.
func (f *function) compileAndProve(wasm []byte, warm bool) error {
	if !f.cacheHit {
		if _, err := f.compile(wasm, f.tier, true); err != nil {
			return err
		}
	}
	if f.cacheHit && !warm {
		return nil
	}
	p, gen, err := f.start()
	if errors.Is(err, worker.ErrArtifact) && f.cacheHit {
		// A damaged or altered artifact: compile again.
		if _, err = f.compile(wasm, f.tier, false); err == nil {
			p, gen, err = f.start()
		}
	}
	if err != nil {
		return fmt.Errorf("function %s: %w", f.cfg.Name, err)
	}
	if warm {
		f.addIdle(p, gen)
	} else {
		f.discard(p)
	}
	return nil
}

// compile compiles wasm with tier's compiler in a compile worker, stores
// its artifacts and makes them the ones new workers load. Workers of the
// previous artifacts finish their invocation and stop. With reuse, the
// artifacts another function of the same module and memory limit stored
// meanwhile are taken instead of compiling again: a thousand functions
// of one module compile once per tier, not a thousand times (not for an
// artifact found damaged, which must be compiled again).
func (f *function) compile(wasm []byte, tier sandbox.Tier, reuse bool) (compiled bool, err error) {
	f.compileMu.Lock()
	defer f.compileMu.Unlock()
	s, fc := f.set, f.cfg
	if reuse {
		if a, ok := cachedArtifacts(f.paths[tier]); ok {
			f.swap(a, tier, true)
			return false, nil
		}
	}
	p, err := worker.Start(s.opts.WorkerEnv...)
	if err != nil {
		return false, fmt.Errorf("function %s: %w", fc.Name, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		p.Kill()
		return false, ErrClosed
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
		return false, ErrClosed
	case errors.Is(err, worker.ErrTimeout):
		err = fmt.Errorf("compiling took longer than %s and was stopped", compileTimeout)
	}
	if err != nil {
		return false, fmt.Errorf("function %s: module %s: %w", fc.Name, fc.Module, err)
	}
	a := worker.Artifacts{Paths: f.paths[tier]}
	if a.Module, err = sandbox.StoreArtifact(a.Paths.Module, module); err != nil {
		return false, fmt.Errorf("function %s: compile cache: %w", fc.Name, err)
	}
	if a.Adapter, err = sandbox.StoreArtifact(a.Paths.Adapter, adapter); err != nil {
		return false, fmt.Errorf("function %s: compile cache: %w", fc.Name, err)
	}
	f.swap(a, tier, false)
	return true, nil
}

// cachedArtifacts are the artifacts the compile cache records at paths.
func cachedArtifacts(paths sandbox.Artifacts) (worker.Artifacts, bool) {
	mod, modOK := sandbox.RecordedDigest(paths.Module)
	ad, adOK := sandbox.RecordedDigest(paths.Adapter)
	return worker.Artifacts{Paths: paths, Module: mod, Adapter: ad}, modOK && adOK
}

// swap makes a the artifacts new workers load; workers of the previous
// ones finish their invocation and stop. A first-tier compile that ends
// after the tier-up keeps the optimized artifacts.
func (f *function) swap(a worker.Artifacts, tier sandbox.Tier, cached bool) {
	s := f.set
	s.mu.Lock()
	if tier == sandbox.TierFast && f.tier == sandbox.TierOptimized {
		s.mu.Unlock()
		return
	}
	f.artifacts, f.tier, f.cacheHit = a, tier, cached
	f.gen++
	stale := f.retireWorkersLocked()
	s.mu.Unlock()
	for _, w := range stale {
		f.stop(w)
	}
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
		compiled, err := f.compile(wasm, sandbox.TierOptimized, true)
		switch {
		case errors.Is(err, ErrClosed):
		case err != nil:
			s.opts.Logger.Warn("optimizing compile failed; the function stays on its first tier", "function", f.cfg.Name, "error", err)
		default:
			s.opts.Logger.Info("function optimized", "function", f.cfg.Name, "tier", sandbox.TierOptimized,
				"compiled", compiled, "took", time.Since(start).Round(time.Millisecond))
		}
	})
}

// initError is a worker's load that failed in the guest's own code.
type initError struct{ err error }

func (e *initError) Error() string { return e.err.Error() }
func (e *initError) Unwrap() error { return e.err }

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
		switch {
		case errors.Is(err, worker.ErrTimeout):
			err = &initError{fmt.Errorf("the module's _initialize did not return within %s", initTimeout)}
		case !errors.Is(err, worker.ErrArtifact):
			// Instantiating ran the guest's _initialize: a trap or a crash
			// there is the function's own failure.
			err = &initError{err}
		}
		return nil, 0, fmt.Errorf("load %s in a worker: %w", f.cfg.Module, err)
	}
	s.mu.Lock()
	f.live++
	s.mu.Unlock()
	s.opts.Observer.WorkerStarted(f.cfg.Name)
	return p, gen, nil
}

// discard stops a worker no event has.
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
	var stale []*proc
	var next time.Time
	for _, w := range f.workers {
		switch {
		case w.inflight > 0:
		case !w.idleSince.After(cutoff):
			stale = append(stale, w)
		case next.IsZero() || w.idleSince.Before(next):
			next = w.idleSince
		}
	}
	for _, w := range stale {
		f.dropLocked(w)
	}
	if next.IsZero() {
		f.reaper = nil
	} else {
		f.reaper.Reset(time.Until(next.Add(timeout)))
	}
	s.reaping.Add(1)
	s.mu.Unlock()
	defer s.reaping.Done()
	for _, w := range stale {
		f.stop(w)
	}
}

// retireWorkersLocked takes every worker out of service and returns the
// idle ones, for the caller to stop; busy ones stop after their last event.
func (f *function) retireWorkersLocked() []*proc {
	var idle []*proc
	for _, w := range slices.Clone(f.workers) {
		f.dropLocked(w)
		if w.inflight == 0 {
			idle = append(idle, w)
		}
	}
	return idle
}

// stopIdle stops the function's idle workers and its reaper; busy ones
// stop after their last event.
func (f *function) stopIdle() {
	s := f.set
	s.mu.Lock()
	idle := f.retireWorkersLocked()
	if f.reaper != nil {
		f.reaper.Stop()
		f.reaper = nil
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range idle {
		wg.Go(func() { f.stop(w) })
	}
	wg.Wait()
}

func (f *function) invoke(ctx context.Context, ev Event) (Result, error) {
	start := time.Now()
	fail := func(kind Kind, reason string) (Result, error) {
		return Result{}, &Error{Function: f.cfg.Name, Version: f.version, Kind: kind, Reason: reason}
	}
	w, err := f.take()
	var ie *initError
	switch {
	case errors.As(err, &ie):
		// Its own _initialize failed: the function's failure, counted as
		// an attempt, or a module that never initializes would be put
		// back forever.
		return fail(KindTrap, err.Error())
	case err != nil:
		// The guest did not run: not the function's failure (the caller
		// puts the event back without counting an attempt).
		return Result{}, fmt.Errorf("%w: %w", ErrNoWorker, err)
	}
	// The timeout is the guest's: it starts when the worker gets the event,
	// after any cold start, as the worker's kill timer does.
	h := &host{ctx: ctx, f: f, ev: ev, deadline: time.Now().Add(f.cfg.Timeout)}
	call := &sandbox.Call{
		Payload: ev.Data, Subject: ev.Subject, ID: ev.ID, Headers: ev.Headers,
		Binding: ev.Binding, Function: f.cfg.Name, Attempt: ev.Attempt,
		Limits: sandbox.Limits{ResultBytes: int(f.cfg.MaxResultSize), LogBytes: int(f.cfg.MaxLogSize), PublishBytes: f.set.opts.MaxPublishSize},
	}
	out, err := w.p.Invoke(call, h, f.cfg.Timeout)
	f.release(w, err)
	switch {
	case errors.Is(err, worker.ErrReleased):
		return Result{}, fmt.Errorf("function %s: %w", f.cfg.Name, ErrReleased)
	case errors.Is(err, worker.ErrTimeout):
		return fail(KindTimeout, fmt.Sprintf("timed out after %s (the worker was stopped)", f.cfg.Timeout))
	case errors.Is(err, worker.ErrProtocol):
		// The worker runs guest code: a frame it may not send is an
		// attack or a corrupted worker, never a guest's ordinary failure.
		h.logger().Error("worker protocol violation; the worker was stopped", "error", err)
		return fail(KindTrap, err.Error())
	case err != nil:
		return fail(KindTrap, err.Error())
	}
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
	// A stream without a leader is waited for, within the invocation's
	// deadline; a publish not stored by then fails the call.
	ctx, cancel, err := h.callContext(maxPublishTimeout)
	if err != nil {
		return err
	}
	defer cancel()
	if err := h.f.set.opts.Publisher.Publish(ctx, subject, data); err != nil {
		h.logger().Warn("publish failed", "subject", subject, "error", err)
		return err
	}
	return nil
}

var slogLevels = [...]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}

func (h *host) Log(level int, line string) {
	h.logger().Log(h.ctx, slogLevels[level], line, "source", "guest")
	if sink := h.f.set.opts.Logs; sink != nil {
		sink.GuestLog(LogLine{
			Time: time.Now(), Function: h.f.cfg.Name, Binding: h.ev.Binding, Event: h.ev.ID,
			Attempt: h.ev.Attempt, Level: slogLevels[level], Line: line,
		})
	}
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
