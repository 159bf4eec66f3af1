package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
)

// Invoker runs a function on an event; *functions.Set is one.
type Invoker interface {
	Invoke(ctx context.Context, function string, ev functions.Event) (functions.Result, error)
}

// Options configures a Runner.
type Options struct {
	JS        jetstream.JetStream
	Publisher *Publisher
	Invoker   Invoker
	Logger    *slog.Logger
	// DrainTimeout bounds how long Run waits for in-flight invocations after
	// its context ends. Default 30s.
	DrainTimeout time.Duration
	// Observer hears every outcome (for metrics); nil for none.
	Observer Observer
	// Node names this runtime in attempt histories. Default: the host name.
	Node string
	// SyncAcks has the server confirm acks, with at most Prefetch acks of
	// a binding unconfirmed at a time, so that a crash re-runs at most
	// concurrency + prefetch finished events (an ack sent but not applied
	// is otherwise redelivered after AckWait, and under load the server
	// can hold hundreds). Set it with durable storage.
	SyncAcks bool
}

// Observer hears what happens to events, for metrics. Its methods must be
// quick and safe for concurrent use.
type Observer interface {
	// Invoked reports one invocation: outcome is "succeeded" or the
	// failure's functions.Kind.
	Invoked(binding, function, outcome string, attempt int, took time.Duration)
	// Retried reports a failed event scheduled for another attempt.
	Retried(binding, function string)
	// DeadLettered reports an event stored as a dead letter.
	DeadLettered(binding, function string)
	// NotStored reports a publish that had to be stored and was not: what
	// is "dead_letter", "result" (on_success) or "failure" (on_failure).
	// The event stays pending and is settled again later.
	NotStored(binding, function, what string)
	// Deduplicated reports an event acknowledged without running, since
	// it already succeeded at the binding (dedupe).
	Deduplicated(binding, function string)
}

type noObserver struct{}

func (noObserver) Invoked(string, string, string, int, time.Duration) {}
func (noObserver) Retried(string, string)                             {}
func (noObserver) DeadLettered(string, string)                        {}
func (noObserver) NotStored(string, string, string)                   {}
func (noObserver) Deduplicated(string, string)                        {}

// Runner consumes every binding of a config. Apply changes the bindings
// while it runs.
type Runner struct {
	opts   Options
	status *StatusStore

	// mu serializes Run's start and end with Apply, and guards what
	// follows.
	mu       sync.Mutex
	cfg      *config.Config
	bindings map[string]*binding // the bindings of cfg, by name
	order    []string            // their names, in config order
	ctx      context.Context     // Run's, once it started
	stopped  bool                // Run's context ended (or its start failed)
	live     map[string]*liveBinding
	// loads count each binding's work on this node, by name; they
	// survive a binding's restart by Apply.
	loads map[string]*load
	// shares is how many nodes consume each binding, this one included
	// (1 when absent): a binding's rate is the whole cluster's, so each
	// node takes its share of it.
	shares map[string]int
	// replies are cfg's ReplySubjects, readable without mu.
	replies atomic.Pointer[[]string]
}

// SetShares tells the runner how many nodes consume each binding, this one
// included; each binding's rate limit becomes its rate divided by that
// number. Bindings not named keep theirs.
func (r *Runner) SetShares(shares map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, n := range shares {
		n = max(1, n)
		if r.shares[name] == n {
			continue
		}
		r.shares[name] = n
		if b, ok := r.bindings[name]; ok && b.limiter != nil {
			b.limiter.SetLimit(rate.Limit(b.cfg.Rate.PerSecond() / float64(n)))
		}
	}
}

// load counts one binding's work on this node.
type load struct {
	inFlight    atomic.Int64
	invocations atomic.Uint64
	succeeded   atomic.Uint64
}

// Load is a binding's work on this node.
type Load = client.Load

// Loads returns the work of every binding the runner consumes on this
// node, by binding name.
func (r *Runner) Loads() map[string]Load {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Load, len(r.order))
	for _, name := range r.order {
		l := r.loadOf(name)
		out[name] = Load{InFlight: int(l.inFlight.Load()), Invocations: l.invocations.Load(), Succeeded: l.succeeded.Load()}
	}
	return out
}

// loadOf returns the counters of a binding; r.mu must be held.
func (r *Runner) loadOf(name string) *load {
	l, ok := r.loads[name]
	if !ok {
		l = &load{}
		r.loads[name] = l
	}
	return l
}

// liveBinding is a running binding and how to stop it.
type liveBinding struct {
	b      *binding
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRunner prepares the bindings of cfg. The streams and consumers must
// exist (see Ensure).
func NewRunner(ctx context.Context, cfg *config.Config, opts Options) (*Runner, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	if opts.Node == "" {
		opts.Node, _ = os.Hostname()
	}
	status, err := NewStatusStore(ctx, opts.JS)
	if err != nil {
		return nil, fmt.Errorf("status bucket: %w", err)
	}
	r := &Runner{opts: opts, cfg: cfg, status: status, bindings: map[string]*binding{}, live: map[string]*liveBinding{}, loads: map[string]*load{}, shares: map[string]int{}}
	r.replies.Store(&cfg.ReplySubjects)
	for _, b := range cfg.Bindings() {
		bb, err := r.prepare(ctx, b)
		if err != nil {
			return nil, err
		}
		r.bindings[b.Name] = bb
		r.order = append(r.order, b.Name)
	}
	return r, nil
}

// prepare looks up b's consumers and makes its binding; r.mu must be held
// (or r not yet shared).
func (r *Runner) prepare(ctx context.Context, b config.Binding) (*binding, error) {
	cons, err := r.opts.JS.Consumer(ctx, StreamName(b), ConsumerName(b))
	if err != nil {
		return nil, fmt.Errorf("binding %s: consumer: %w", b.Name, err)
	}
	replays, err := r.opts.JS.Consumer(ctx, ReplayStreamName(b.Name), ReplayConsumerName(b.Name))
	if err != nil {
		return nil, fmt.Errorf("binding %s: replay consumer: %w", b.Name, err)
	}
	bb := &binding{
		r: r, cfg: b, cons: cons, replays: replays, stream: StreamName(b), load: r.loadOf(b.Name),
		slots: make(chan struct{}, b.Concurrency),
		log:   r.opts.Logger.With("binding", b.Name, "function", b.Function),
		rnd:   rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		acks:  newAcker(Prefetch(b)), replayAcks: newAcker(b.Concurrency),
	}
	if perSec := b.Rate.PerSecond(); perSec > 0 {
		bb.limiter = rate.NewLimiter(rate.Limit(perSec/float64(max(1, r.shares[b.Name]))), max(1, b.Concurrency))
	}
	return bb, nil
}

// Run consumes until ctx ends, then stops pulling and lets the invocations
// in flight (and the messages already pulled) finish, for at most
// DrainTimeout. Messages not settled by then are redelivered by JetStream.
// A binding that cannot start consuming stops the others and ends Run with
// its error.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.ctx != nil {
		r.mu.Unlock()
		return errors.New("triggers: Run called twice")
	}
	r.ctx = ctx
	var errs []error
	for _, name := range r.order {
		if err := r.startLocked(r.bindings[name]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		r.stopped = true
		r.stopLocked(r.liveNames())
		r.mu.Unlock()
		return errors.Join(errs...)
	}
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	r.stopLocked(r.liveNames())
	return nil
}

// Changes says what an Apply did, by binding name.
type Changes struct {
	Added, Changed, Removed []string
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Added)+len(c.Changed)+len(c.Removed) == 0 }

// Apply makes the runner consume the bindings of cfg instead of those it
// has: it starts the new ones, stops the removed ones (they stop pulling
// and their invocations in flight finish, for at most DrainTimeout), and
// restarts those whose settings changed. Bindings that did not change keep
// running untouched. The streams and consumers of cfg must exist (see
// Ensure); those of removed bindings are left as they are, so that their
// backlog waits in JetStream.
//
// When a new binding's consumer cannot be found, Apply changes nothing. It
// may be called before Run (the bindings start with Run) but not after
// Run returned.
func (r *Runner) Apply(ctx context.Context, cfg *config.Config) (Changes, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return Changes{}, errors.New("triggers: the runner has stopped")
	}
	var ch Changes
	next := map[string]*binding{}
	var order []string
	for _, b := range cfg.Bindings() {
		order = append(order, b.Name)
		old, ok := r.bindings[b.Name]
		if ok && old.cfg == b {
			next[b.Name] = old
			continue
		}
		bb, err := r.prepare(ctx, b)
		if err != nil {
			return Changes{}, err
		}
		next[b.Name] = bb
		if ok {
			ch.Changed = append(ch.Changed, b.Name)
		} else {
			ch.Added = append(ch.Added, b.Name)
		}
	}
	for _, name := range r.order {
		if _, ok := next[name]; !ok {
			ch.Removed = append(ch.Removed, name)
		}
	}
	r.cfg, r.bindings, r.order = cfg, next, order
	r.replies.Store(&cfg.ReplySubjects)
	if r.ctx == nil {
		return ch, nil // Run starts them
	}
	r.stopLocked(append(slices.Clone(ch.Removed), ch.Changed...))
	var errs []error
	for _, name := range append(slices.Clone(ch.Changed), ch.Added...) {
		if err := r.startLocked(next[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return ch, errors.Join(errs...)
}

// Bindings returns the settings of the bindings the runner consumes, in
// config order.
func (r *Runner) Bindings() []config.Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]config.Binding, 0, len(r.order))
	for _, name := range r.order {
		out = append(out, r.bindings[name].cfg)
	}
	return out
}

// startLocked opens b's iterators and consumes them until its own context
// (a child of Run's) ends.
func (r *Runner) startLocked(b *binding) error {
	events, replays, err := b.open()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.ctx)
	lb := &liveBinding{b: b, cancel: cancel, done: make(chan struct{})}
	r.live[b.cfg.Name] = lb
	go func() {
		defer close(lb.done)
		b.consume(ctx, events, replays)
	}()
	return nil
}

// stopLocked stops the named live bindings together and waits until each
// drained.
func (r *Runner) stopLocked(names []string) {
	var stopping []*liveBinding
	for _, name := range names {
		if lb, ok := r.live[name]; ok {
			lb.cancel()
			stopping = append(stopping, lb)
			delete(r.live, name)
		}
	}
	for _, lb := range stopping {
		<-lb.done
		lb.b.acks.wg.Wait()
		lb.b.replayAcks.wg.Wait()
	}
}

func (r *Runner) liveNames() []string {
	names := make([]string, 0, len(r.live))
	for name := range r.live {
		names = append(names, name)
	}
	return names
}

type binding struct {
	r       *Runner
	cfg     config.Binding
	cons    jetstream.Consumer
	replays jetstream.Consumer
	stream  string
	// slots bounds invocations across the event and replay consumers.
	slots   chan struct{}
	log     *slog.Logger
	limiter *rate.Limiter
	load    *load
	// acks and replayAcks count the unconfirmed acks of the event and
	// replay consumers.
	acks, replayAcks *acker

	rndMu sync.Mutex
	rnd   *rand.Rand
}

// pullExpiry is how long each pull request waits at the server. A waiting
// request the server forgets to serve is only replaced when it expires (or
// its heartbeat, half of it, is missed): nats-server 2.15.2 does not wake
// the waiting requests of a consumer resumed without its pause timer
// (chaos.TestUpstreamResumeWakesNoWaitingPull), which held a backlog for
// 15–30 s with nats.go's 30 s default. Idle, this costs a pull request per
// binding every few seconds.
const pullExpiry = 5 * time.Second

// open starts pulling from the binding's event and replay consumers.
func (b *binding) open() (events, replays jetstream.MessagesContext, err error) {
	events, err = b.cons.Messages(jetstream.PullMaxMessages(Prefetch(b.cfg)), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return nil, nil, fmt.Errorf("binding %s: consume: %w", b.cfg.Name, err)
	}
	replays, err = b.replays.Messages(jetstream.PullMaxMessages(b.cfg.Concurrency), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		events.Stop()
		return nil, nil, fmt.Errorf("binding %s: consume replays: %w", b.cfg.Name, err)
	}
	return events, replays, nil
}

// consume handles what events and replays deliver until ctx ends, then
// stops pulling and drains: see Run.
func (b *binding) consume(ctx context.Context, events, replays jetstream.MessagesContext) {
	var wg sync.WaitGroup
	for range b.cfg.Concurrency {
		wg.Go(func() { b.work(ctx, events) })
	}
	wg.Go(func() { b.work(ctx, replays) })
	<-ctx.Done()
	events.Drain()
	replays.Drain()
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	// A drained iterator can sit on an open pull request until it
	// expires; once nothing runs any more, stop it rather than wait.
	deadline := time.Now().Add(b.r.opts.DrainTimeout)
	idleSince := time.Time{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-drained:
			return
		case now := <-tick.C:
			switch {
			case len(b.slots) > 0:
				idleSince = time.Time{}
			case idleSince.IsZero():
				idleSince = now
			}
			idle := !idleSince.IsZero() && now.Sub(idleSince) > 500*time.Millisecond
			if idle || now.After(deadline) {
				if !idle {
					b.log.Warn("drain timed out; unsettled events will be redelivered", "timeout", b.r.opts.DrainTimeout)
				}
				events.Stop()
				replays.Stop()
				<-drained
				return
			}
		}
	}
}

// work takes messages until the iterator closes. Settling uses a context
// that outlives shutdown: an event that started must be settled.
func (b *binding) work(ctx context.Context, it jetstream.MessagesContext) {
	settleCtx := context.WithoutCancel(ctx)
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return
		}
		if err != nil {
			// Transient (a paused consumer, a missed heartbeat): the
			// iterator retries; do not spin meanwhile.
			b.log.Debug("pull", "error", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		b.load.inFlight.Add(1)
		if b.limiter != nil && ctx.Err() == nil {
			// Ignore the error: on shutdown the event runs anyway,
			// since it is already pulled.
			_ = b.limiter.Wait(ctx)
		}
		b.slots <- struct{}{}
		b.handle(settleCtx, msg)
		<-b.slots
		b.load.inFlight.Add(-1)
	}
}

func (b *binding) backoff(attempt int) time.Duration {
	b.rndMu.Lock()
	defer b.rndMu.Unlock()
	return Backoff(b.cfg.Retry, attempt, b.rnd)
}

// eventOrigin returns the event's id and the subject it was published to.
// A replayed event keeps both from its dead letter.
func (b *binding) eventOrigin(msg jetstream.Msg, md *jetstream.MsgMetadata) (id, subject string) {
	h := msg.Headers()
	if md.Stream != b.stream {
		if id, subject = h.Get(HdrEventID), h.Get(HdrSubject); id != "" && subject != "" {
			return id, subject
		}
	}
	if id = h.Get(nats.MsgIdHdr); id == "" {
		id = fmt.Sprintf("%s-%d", md.Stream, md.Sequence.Stream)
	}
	return id, msg.Subject()
}

// delivery is one delivery of an event being handled: the status it
// builds, and the stored one as last seen, for compare-and-set.
type delivery struct {
	msg    jetstream.Msg
	st     Status
	last   Revision
	replay bool // from the binding's replay stream
}

// handle runs one delivery through the settle policy (settle.go): Admit
// finishes what an earlier delivery of the same message decided, or
// names the attempt to run; Settle decides on its outcome.
func (b *binding) handle(ctx context.Context, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		b.log.Error("message without metadata", "error", err)
		return
	}
	id, subject := b.eventOrigin(msg, md)
	d := &delivery{msg: msg, st: Status{
		ID: id, Binding: b.cfg.Name, Function: b.cfg.Function, MaxAttempts: b.cfg.Retry.MaxAttempts,
		Subject: subject, Stream: md.Stream, Sequence: md.Sequence.Stream, Round: md.Timestamp.UnixNano(),
	}}
	var h History
	// A first delivery has no history in its round, so its status is
	// read only when the binding de-duplicates, or for a replay (which
	// adds to the history of the event's earlier rounds).
	replay := md.Stream != b.stream
	d.replay = replay
	if md.NumDelivered > 1 || b.cfg.Dedupe > 0 || replay {
		prev, rev, ok, err := b.r.status.get(ctx, StatusKey(id, b.cfg.Name))
		if err != nil {
			b.release(d, "status store unavailable: "+err.Error())
			return
		}
		if ok {
			d.last = Revision{Status: prev, Rev: rev}
		}
		switch {
		case !ok:
		case prev.Round == d.st.Round:
			h = History{Found: true, State: prev.State, Attempts: prev.Attempts, LastKind: functions.Kind(prev.ErrorKind),
				LastError: prev.Error, Interrupted: prev.Interrupted}
			d.st = prev
			d.st.MaxAttempts = b.cfg.Retry.MaxAttempts
		case b.cfg.Dedupe > 0 && prev.State == StateSucceeded && time.Since(prev.UpdatedAt) < b.cfg.Dedupe:
			b.r.opts.Observer.Deduplicated(b.cfg.Name, b.cfg.Function)
			b.log.Info("event already succeeded; not run again (dedupe)", "event", id, "succeeded_at", prev.UpdatedAt)
			b.reply(ctx, msg, prev)
			b.ack(ctx, d)
			return
		case replay:
			d.st.History = prev.History
		}
	}
	dec := Admit(h, b.cfg.Retry, b.backoff)
	switch dec.Action {
	case Ack:
		// Succeeded and recorded before; its settlement was cut short.
		b.finishSuccess(ctx, d)
		return
	case Term:
		b.term(d)
		return
	case Retry, DeadLetter:
		fe := &functions.Error{Function: b.cfg.Function, Version: d.st.Version, Kind: functions.Kind(d.st.ErrorKind), Reason: dec.Reason}
		if dec.Interrupted {
			fe.Kind = functions.KindFailed
			b.failed(d, dec.Attempt, fe, 0)
		}
		b.settleFailure(ctx, d, dec, fe)
		return
	}
	attempt := dec.Attempt
	if h.State == StateRunning {
		// The last run of this attempt lost its outcome.
		d.st.Interrupted++
	}
	d.st.State, d.st.Attempts, d.st.NextTryAt = StateRunning, attempt, nil
	ev := functions.Event{
		ID: id, Subject: subject, Binding: b.cfg.Name, Data: msg.Data(),
		Headers: msg.Headers(), Attempt: attempt,
	}
	running := b.markRunning(ctx, d)
	b.load.invocations.Add(1)
	started := time.Now()
	res, err := b.r.opts.Invoker.Invoke(ctx, b.cfg.Function, ev)
	took := time.Since(started)
	running.stop()
	var o Outcome
	var fe *functions.Error
	switch {
	case err == nil:
	case errors.As(err, &fe):
		o.Err = fe
	default:
		o.NotRun = err.Error()
	}
	dec = Settle(o, attempt, b.cfg.Retry, b.backoff)
	switch dec.Action {
	case Release:
		b.release(d, "not run: "+dec.Reason)
	case Ack:
		b.r.opts.Observer.Invoked(b.cfg.Name, b.cfg.Function, StateSucceeded, attempt, took)
		d.st.State, d.st.Version, d.st.Result = StateSucceeded, res.Version, res.Output
		d.st.Error, d.st.ErrorKind = "", ""
		d.st.History = appendAttempt(d.st.History, AttemptRecord{
			Attempt: attempt, Kind: StateSucceeded, Duration: took.String(), Version: res.Version,
			Node: b.r.opts.Node, At: time.Now().UTC(),
		})
		b.succeed(ctx, d)
	default:
		b.r.opts.Observer.Invoked(b.cfg.Name, b.cfg.Function, string(fe.Kind), attempt, took)
		b.failed(d, attempt, fe, took)
		b.settleFailure(ctx, d, dec, fe)
	}
}

// failed adds a failed attempt to the status being built.
func (b *binding) failed(d *delivery, attempt int, fe *functions.Error, took time.Duration) {
	now := time.Now().UTC()
	d.st.Attempts, d.st.Version, d.st.Error, d.st.ErrorKind = attempt, fe.Version, fe.Reason, string(fe.Kind)
	if d.st.FirstFailAt == nil {
		d.st.FirstFailAt = &now
	}
	d.st.History = appendAttempt(d.st.History, AttemptRecord{
		Attempt: attempt, Kind: string(fe.Kind), Error: fe.Reason, Duration: took.String(),
		Version: fe.Version, Node: b.r.opts.Node, At: now,
	})
}

func appendAttempt(h []AttemptRecord, a AttemptRecord) []AttemptRecord {
	h = append(slices.Clip(h), a)
	if n := len(h); n > MaxHistory {
		h = h[n-MaxHistory:]
	}
	return h
}

// settleFailure records a failed attempt, then puts the event back for
// the next one or dead-letters it. The attempt is recorded first: if that
// fails, the event is released and the attempt runs again, uncounted; if
// the dead letter then fails, the redelivery dead-letters it without
// running the function again.
func (b *binding) settleFailure(ctx context.Context, d *delivery, dec Decision, fe *functions.Error) {
	d.st.State, d.st.NextTryAt = StateRetrying, nil
	if dec.Action == Retry {
		next := time.Now().UTC().Add(dec.Delay)
		d.st.NextTryAt = &next
	}
	if err := b.record(ctx, d); err != nil {
		b.release(d, "failed attempt not recorded: "+err.Error())
		return
	}
	if dec.Action == DeadLetter {
		b.deadLetter(ctx, d, fe)
		return
	}
	b.log.Warn("invocation failed, will retry", "event", d.st.ID, "attempt", dec.Attempt,
		"max_attempts", b.cfg.Retry.MaxAttempts, "kind", fe.Kind, "error", fe.Reason, "retry_in", dec.Delay)
	b.r.opts.Observer.Retried(b.cfg.Name, b.cfg.Function)
	b.nak(d, dec.Delay)
}

// succeed records a success, then publishes its result and acknowledges
// the event. The status write does not wait for the broker (a success is
// the common case, and a round trip per event costs throughput), but it
// is on the connection before the ack. A status that cannot be recorded
// does not undo the success.
func (b *binding) succeed(ctx context.Context, d *delivery) {
	d.st.UpdatedAt = time.Now().UTC()
	err := b.r.status.AdvanceAsync(d.st, d.last)
	if errors.Is(err, errStatusBacklog) {
		err = b.record(ctx, d)
	}
	if err != nil {
		b.log.Warn("status not recorded", "event", d.st.ID, "state", d.st.State, "error", err)
	}
	b.finishSuccess(ctx, d)
}

// finishSuccess publishes a recorded success's result and acknowledges
// the event. A result that is not stored leaves the event pending: its
// next delivery publishes the result again, from the status, without
// running the function.
func (b *binding) finishSuccess(ctx context.Context, d *delivery) {
	st := d.st
	if b.cfg.OnSuccess != "" {
		out := &nats.Msg{Subject: b.cfg.OnSuccess, Data: st.Result, Header: nats.Header{}}
		out.Header.Set(HdrEventID, st.ID)
		out.Header.Set(HdrBinding, b.cfg.Name)
		out.Header.Set(HdrNode, b.r.opts.Node)
		out.Header.Set(HdrFunction, b.cfg.Function)
		if err := b.publish(ctx, out, fmt.Sprintf("ok:%s:%d:%s", st.Stream, st.Sequence, b.cfg.Name)); err != nil {
			b.log.Error("on_success result not stored; the event stays pending", "event", st.ID, "error", err)
			b.r.opts.Observer.NotStored(b.cfg.Name, b.cfg.Function, "result")
			b.nak(d, b.backoff(max(1, st.Attempts)))
			return
		}
	}
	b.reply(ctx, d.msg, st)
	b.ack(ctx, d)
	b.load.succeeded.Add(1)
}

// deadLetter stores the event in the binding's dead-letter stream, and only
// once that is acknowledged terminates the original. The message id makes
// a redo after a crash a duplicate the stream drops. A dead letter (or
// failure record) that is not stored leaves the event pending, with no
// attempt used: its next delivery dead-letters it again.
func (b *binding) deadLetter(ctx context.Context, d *delivery, fe *functions.Error) {
	msg, st := d.msg, d.st
	now := time.Now().UTC()
	dl := &nats.Msg{Subject: DeadLetterSubject(b.cfg.DeadLetter, st.ID), Data: msg.Data(), Header: ProducerHeaders(msg.Headers())}
	first := now
	if st.FirstFailAt != nil {
		first = *st.FirstFailAt
	}
	dl.Header.Set(HdrSubject, st.Subject)
	dl.Header.Set(HdrBinding, b.cfg.Name)
	dl.Header.Set(HdrNode, b.r.opts.Node)
	dl.Header.Set(HdrFunction, b.cfg.Function)
	dl.Header.Set(HdrVersion, fe.Version)
	dl.Header.Set(HdrAttempts, strconv.Itoa(st.Attempts))
	dl.Header.Set(HdrError, fe.Reason)
	dl.Header.Set(HdrErrorKind, string(fe.Kind))
	dl.Header.Set(HdrFirstFailure, first.Format(time.RFC3339Nano))
	dl.Header.Set(HdrLastFailure, now.Format(time.RFC3339Nano))
	dl.Header.Set(HdrEventID, st.ID)
	dl.Header.Set(HdrStream, st.Stream)
	dl.Header.Set(HdrSequence, strconv.FormatUint(st.Sequence, 10))
	dl.Header.Set(HdrHistory, historyHeader(st.History))
	if err := b.r.opts.Publisher.Store(ctx, dl, fmt.Sprintf("%s:%d", st.Stream, st.Sequence)); err != nil {
		b.log.Error("dead letter not stored; the event stays pending", "event", st.ID, "dead_letter", b.cfg.DeadLetter, "error", err)
		b.r.opts.Observer.NotStored(b.cfg.Name, b.cfg.Function, "dead_letter")
		b.nak(d, b.backoff(max(1, st.Attempts)))
		return
	}
	st.State, st.NextTryAt, st.DeadLetter = StateDeadLettered, nil, b.cfg.DeadLetter
	st.Error, st.ErrorKind, st.Version = fe.Reason, string(fe.Kind), fe.Version
	if b.cfg.OnFailure != "" {
		record, _ := json.Marshal(st)
		out := &nats.Msg{Subject: b.cfg.OnFailure, Data: record, Header: nats.Header{}}
		out.Header.Set(HdrEventID, st.ID)
		out.Header.Set(HdrBinding, b.cfg.Name)
		out.Header.Set(HdrNode, b.r.opts.Node)
		if err := b.publish(ctx, out, fmt.Sprintf("fail:%s:%d:%s", st.Stream, st.Sequence, b.cfg.Name)); err != nil {
			b.log.Error("on_failure record not stored; the event stays pending", "event", st.ID, "error", err)
			b.r.opts.Observer.NotStored(b.cfg.Name, b.cfg.Function, "failure")
			b.nak(d, b.backoff(max(1, st.Attempts)))
			return
		}
	}
	d.st = st
	if err := b.record(ctx, d); err != nil {
		// Settled only once the status says so: the redelivery records it.
		b.log.Error("dead-lettered status not recorded; the event stays pending", "event", st.ID, "error", err)
		b.nak(d, ReleaseDelay)
		return
	}
	b.r.opts.Observer.DeadLettered(b.cfg.Name, b.cfg.Function)
	b.log.Error("event dead-lettered", "event", st.ID, "attempts", st.Attempts,
		"kind", fe.Kind, "error", fe.Reason, "dead_letter", b.cfg.DeadLetter)
	b.reply(ctx, msg, st)
	b.term(d)
}

func (b *binding) publish(ctx context.Context, m *nats.Msg, msgID string) error {
	return b.r.opts.Publisher.PublishMsg(ctx, m, msgID)
}

// record stores the status being built, unless a newer one is stored.
func (b *binding) record(ctx context.Context, d *delivery) error {
	d.st.UpdatedAt = time.Now().UTC()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	last, stored, err := b.r.status.Advance(ctx, d.st, d.last)
	if err != nil {
		return err
	}
	if !stored {
		b.log.Debug("status not recorded: a newer one is stored", "event", d.st.ID, "state", d.st.State, "attempt", d.st.Attempts)
	}
	d.last = last
	return nil
}

// ack settles a succeeded event. With SyncAcks, at most Prefetch acks of
// a binding are unconfirmed at a time, so that a crash re-runs at most
// concurrency + prefetch finished events. Acks are plain; once half the
// window is unconfirmed, one is sent as AckSync: the server applies a
// consumer's acks in the order a connection sent them, so its answer
// confirms every ack sent before it. Workers wait only when the window is
// full.
func (b *binding) ack(ctx context.Context, d *delivery) {
	if !b.r.opts.SyncAcks {
		if err := d.msg.Ack(); err != nil {
			b.log.Error("ack", "event", d.st.ID, "error", err)
		}
		return
	}
	// A confirmation covers the acks of its own consumer only.
	a := b.acks
	if d.replay {
		a = b.replayAcks
	}
	a.mu.Lock()
	for a.unconfirmed >= a.window {
		a.cond.Wait()
	}
	a.unconfirmed++
	covered := a.unconfirmed
	confirm := !a.confirming && 2*covered >= a.window
	if !confirm {
		// Sent under the lock, so that every ack counted before a
		// confirmation is on the connection before it.
		err := d.msg.Ack()
		a.mu.Unlock()
		if err != nil {
			b.log.Error("ack", "event", d.st.ID, "error", err)
		}
		return
	}
	a.confirming = true
	a.mu.Unlock()
	a.wg.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := d.msg.DoubleAck(ctx); err != nil {
			// Unconfirmed, not lost: the window opens again, and an
			// ack that did not apply is redelivered and finished from
			// the status.
			b.log.Warn("ack not confirmed", "event", d.st.ID, "error", err)
		}
		a.mu.Lock()
		a.unconfirmed -= covered
		a.confirming = false
		a.cond.Broadcast()
		a.mu.Unlock()
	})
}

// acker counts a binding's acks that the server has not confirmed; the
// binding's stop waits for the confirmation in flight.
type acker struct {
	mu          sync.Mutex
	cond        *sync.Cond
	window      int
	unconfirmed int
	confirming  bool
	wg          sync.WaitGroup
}

func newAcker(window int) *acker {
	a := &acker{window: window}
	a.cond = sync.NewCond(&a.mu)
	return a
}

// nak puts the event back for a later delivery.
func (b *binding) nak(d *delivery, delay time.Duration) {
	if err := d.msg.NakWithDelay(delay); err != nil {
		b.log.Error("nak", "event", d.st.ID, "error", err)
	}
}

// release puts back an event whose function did not run, or whose
// attempt could not be recorded: no attempt is used.
func (b *binding) release(d *delivery, why string) {
	b.log.Warn("event released without using an attempt", "event", d.st.ID, "reason", why, "retry_in", ReleaseDelay)
	b.nak(d, ReleaseDelay)
}

// term terminates an event whose dead letter is stored.
func (b *binding) term(d *delivery) {
	if err := d.msg.TermWithReason("dead-lettered to " + b.cfg.DeadLetter); err != nil {
		b.log.Error("term", "event", d.st.ID, "error", err)
	}
}

// runningAfter is how long an invocation runs before its status says so:
// a quick one goes straight to its outcome, saving a write per event.
const runningAfter = 50 * time.Millisecond

// runningMark writes the "running" status of a slow invocation.
type runningMark struct {
	mu    sync.Mutex
	done  bool
	timer *time.Timer
}

// markRunning records d's status as running once the invocation has run
// for runningAfter. The write updates d.last; the caller reads d again
// only after stop.
func (b *binding) markRunning(ctx context.Context, d *delivery) *runningMark {
	m := &runningMark{}
	st := d.st
	m.timer = time.AfterFunc(runningAfter, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.done {
			return
		}
		st.UpdatedAt = time.Now().UTC()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		last, _, err := b.r.status.Advance(wctx, st, d.last)
		if err != nil {
			b.log.Debug("running status not recorded", "event", st.ID, "error", err)
			return
		}
		d.last = last
	})
	return m
}

// stop cancels the write, or waits until it is done, so that the next
// status is written after it.
func (m *runningMark) stop() {
	m.timer.Stop()
	m.mu.Lock()
	m.done = true
	m.mu.Unlock()
}

// reply sends the final outcome to the subject the producer named in
// HdrReply, if any. It is best effort: the outcome is also in the status.
func (b *binding) reply(ctx context.Context, msg jetstream.Msg, st Status) {
	to := msg.Headers().Get(HdrReply)
	if to == "" || b.replyRefused(st, to) {
		return
	}
	body, _ := json.Marshal(st)
	out := &nats.Msg{Subject: to, Data: body, Header: nats.Header{}}
	out.Header.Set(HdrEventID, st.ID)
	out.Header.Set(HdrBinding, b.cfg.Name)
	out.Header.Set(HdrNode, b.r.opts.Node)
	var err error
	if strings.HasPrefix(to, "_INBOX.") {
		// An inbox is never a stream's: skip the Publisher's lookup,
		// which every new inbox would miss (one JetStream request per
		// reply).
		err = b.r.opts.Publisher.nc.PublishMsg(out)
	} else {
		err = b.publish(ctx, out, "")
	}
	if err != nil {
		b.log.Warn("reply not sent", "event", st.ID, "reply", to, "error", err)
	}
}

// historyHeader encodes attempts for a dead letter's header, with each
// error cut short so that the header stays small.
func historyHeader(h []AttemptRecord) string {
	short := make([]AttemptRecord, len(h))
	for i, a := range h {
		if len(a.Error) > 200 {
			a.Error = a.Error[:200] + "…"
		}
		short[i] = a
	}
	b, _ := json.Marshal(short)
	return string(b)
}
