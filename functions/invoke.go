package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions/sandbox"
)

type function struct {
	set    *Set
	cfg    config.Function
	module *sandbox.Module
	idle   []*slot // guarded by set.mu
}

// slot is a goroutine that owns one wasmer instance: wasmer objects must
// stay on one goroutine (and thread) for their whole life.
type slot struct {
	jobs chan *job
}

type job struct {
	call *sandbox.Call
	done chan sandbox.Outcome
}

// take returns an idle slot or starts a new one.
func (f *function) take() (*slot, error) {
	s := f.set
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(f.idle); n > 0 {
		sl := f.idle[n-1]
		f.idle = f.idle[:n-1]
		s.mu.Unlock()
		return sl, nil
	}
	s.wg.Add(1)
	s.mu.Unlock()

	sl := &slot{jobs: make(chan *job)}
	ready := make(chan error, 1)
	go func() {
		defer s.wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		inst, err := f.module.Instantiate(f.cfg.Env)
		ready <- err
		if err != nil {
			return
		}
		defer inst.Close()
		for j := range sl.jobs {
			j.done <- inst.Handle(j.call)
		}
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	return sl, nil
}

// release returns a healthy slot to the idle list.
func (f *function) release(sl *slot) {
	s := f.set
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(sl.jobs)
		return
	}
	f.idle = append(f.idle, sl)
}

func (f *function) invoke(ctx context.Context, ev Event) (Result, error) {
	start := time.Now()
	fail := func(kind Kind, reason string) (Result, error) {
		return Result{}, &Error{Function: f.cfg.Name, Version: f.module.Version, Kind: kind, Reason: reason}
	}
	sl, err := f.take()
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return Result{}, err
		}
		return fail(KindTrap, err.Error())
	}
	h := &host{ctx: ctx, f: f, ev: ev}
	j := &job{
		call: &sandbox.Call{
			Payload: ev.Data, Subject: ev.Subject, ID: ev.ID, Headers: ev.Headers,
			Binding: ev.Binding, Function: f.cfg.Name, Attempt: ev.Attempt,
			Limits: f.set.opts.Limits, Host: h,
		},
		done: make(chan sandbox.Outcome, 1),
	}
	timer := time.NewTimer(f.cfg.Timeout)
	defer timer.Stop()
	sl.jobs <- j
	var out sandbox.Outcome
	select {
	case out = <-j.done:
	case <-timer.C:
		// The call cannot be interrupted in this process: the slot is
		// abandoned and exits when the guest returns, if ever.
		close(sl.jobs)
		return fail(KindTimeout, fmt.Sprintf("timed out after %s", f.cfg.Timeout))
	}
	if out.LogsTruncated {
		h.logger().Warn("guest logs truncated", "limit_bytes", j.call.Limits.LogBytes)
	}
	if out.Err != nil {
		close(sl.jobs)
		if out.MemoryExceeded {
			return fail(KindMemory, fmt.Sprintf("memory limit of %s exceeded: %s", formatBytes(f.cfg.Memory), trapMessage(out.Err)))
		}
		return fail(KindTrap, trapMessage(out.Err))
	}
	f.release(sl)
	switch out.Status {
	case sandbox.StatusOK:
		return Result{Output: out.Result, Version: f.module.Version, Duration: time.Since(start), LogsTruncated: out.LogsTruncated}, nil
	case sandbox.StatusPermanent:
		return fail(KindPermanent, orDefault(out.Reason, "handle returned 2 (permanent failure)"))
	case sandbox.StatusFailed:
		e := &Error{Function: f.cfg.Name, Version: f.module.Version, Kind: KindFailed,
			Reason: orDefault(out.Reason, "handle returned 1 (failure)"), RetryAfter: out.RetryAfter}
		return Result{}, e
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
	ctx context.Context
	f   *function
	ev  Event
}

func (h *host) logger() *slog.Logger {
	return h.f.set.opts.Logger.With("function", h.f.cfg.Name, "binding", h.ev.Binding, "event", h.ev.ID, "attempt", h.ev.Attempt)
}

func (h *host) Publish(subject string, data []byte) error {
	if err := config.ValidSubject(subject, false); err != nil {
		return fmt.Errorf("%w: %w", sandbox.ErrInvalid, err)
	}
	if !allowed(h.f.cfg.Publish, subject) {
		h.logger().Warn("publish denied", "subject", subject, "allowed", h.f.cfg.Publish)
		return sandbox.ErrDenied
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
