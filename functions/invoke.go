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
	set       *Set
	cfg       config.Function
	version   string
	artifacts worker.Artifacts
	cacheHit  bool
	idle      []*worker.Process // guarded by set.mu
	retired   bool              // replaced or removed; guarded by set.mu

	kvMu   sync.Mutex
	kv     jetstream.KeyValue // the function's bucket, once created
	seenKV jetstream.KeyValue // its seen bucket, once created
}

// Worker recycling bounds: wasmer leaks a little per instantiation, and a
// guest's memory is capped but the worker's own is not.
const (
	maxInvocationsPerWorker = 100_000
	rssCheckEvery           = 64
	maxWorkerOverhead       = 256 << 20 // allowed RSS beyond the guest's memory limit
)

// take returns an idle worker or starts a new one with the function loaded.
func (f *function) take() (*worker.Process, error) {
	s := f.set
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(f.idle); n > 0 {
		p := f.idle[n-1]
		f.idle = f.idle[:n-1]
		s.mu.Unlock()
		return p, nil
	}
	s.mu.Unlock()
	return f.spawn()
}

func (f *function) spawn() (*worker.Process, error) {
	p, err := worker.Start(f.set.opts.WorkerEnv...)
	if err != nil {
		return nil, err
	}
	initTimeout := f.set.opts.InitTimeout
	if err := p.Load(f.artifacts, f.cfg.Memory, f.cfg.Env, f.cfg.FreshInstance, initTimeout); err != nil {
		p.Kill()
		f.set.opts.Observer.WorkerDied(f.cfg.Name, WorkerLoad)
		if errors.Is(err, worker.ErrTimeout) {
			err = fmt.Errorf("the module's _initialize did not return within %s", initTimeout)
		}
		return nil, fmt.Errorf("load %s in a worker: %w", f.cfg.Module, err)
	}
	f.set.opts.Observer.WorkerStarted(f.cfg.Name)
	return p, nil
}

// release returns a healthy worker to the idle list, or retires it.
func (f *function) release(p *worker.Process) {
	retire := p.Invoked >= maxInvocationsPerWorker ||
		(p.Invoked%rssCheckEvery == 0 && p.RSS() > f.cfg.Memory+maxWorkerOverhead)
	s := f.set
	s.mu.Lock()
	if !s.closed && !retire && !f.retired {
		f.idle = append(f.idle, p)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	p.Close()
}

func (f *function) invoke(ctx context.Context, ev Event) (Result, error) {
	start := time.Now()
	fail := func(kind Kind, reason string) (Result, error) {
		return Result{}, &Error{Function: f.cfg.Name, Version: f.version, Kind: kind, Reason: reason}
	}
	p, err := f.take()
	if err != nil {
		// The guest did not run: not the function's failure (the caller
		// puts the event back without counting an attempt).
		return Result{}, fmt.Errorf("%w: %w", ErrNoWorker, err)
	}
	h := &host{ctx: ctx, f: f, ev: ev, deadline: start.Add(f.cfg.Timeout)}
	call := &sandbox.Call{
		Payload: ev.Data, Subject: ev.Subject, ID: ev.ID, Headers: ev.Headers,
		Binding: ev.Binding, Function: f.cfg.Name, Attempt: ev.Attempt,
		Limits: sandbox.Limits{ResultBytes: int(f.cfg.MaxResultSize), LogBytes: int(f.cfg.MaxLogSize), PublishBytes: f.set.opts.MaxPublishSize},
	}
	out, err := p.Invoke(call, h, f.cfg.Timeout)
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
	f.release(p)
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
