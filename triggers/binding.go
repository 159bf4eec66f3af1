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
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

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
}

type noObserver struct{}

func (noObserver) Invoked(string, string, string, int, time.Duration) {}
func (noObserver) Retried(string, string)                             {}
func (noObserver) DeadLettered(string, string)                        {}

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
type Load struct {
	// InFlight counts events this node took from JetStream and has not
	// settled: running, or waiting for a slot or the rate limit.
	InFlight int `json:"in_flight"`
	// Invocations counts invocations started since the node started.
	Invocations uint64 `json:"invocations"`
	// Succeeded counts events this node settled as succeeded.
	Succeeded uint64 `json:"succeeded"`
}

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

// handle invokes the function on one message and settles it.
func (b *binding) handle(ctx context.Context, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		b.log.Error("message without metadata", "error", err)
		return
	}
	attempt := int(md.NumDelivered)
	id, subject := b.eventOrigin(msg, md)
	st := Status{
		ID: id, Binding: b.cfg.Name, Function: b.cfg.Function,
		State: StateRunning, Attempts: attempt, MaxAttempts: b.cfg.Retry.MaxAttempts,
		Subject: subject, Stream: md.Stream, Sequence: md.Sequence.Stream,
	}
	if attempt > b.cfg.Retry.MaxAttempts {
		// Delivered again after its last attempt: the runtime stopped
		// between the last invocation and its settlement.
		prev, _, _ := b.r.status.Get(ctx, st.ID, b.cfg.Name)
		fe := &functions.Error{Function: b.cfg.Function, Version: prev.Version, Kind: functions.Kind(prev.ErrorKind), Reason: prev.Error}
		if fe.Reason == "" {
			fe.Kind = functions.KindFailed
			fe.Reason = fmt.Sprintf("no outcome after %d deliveries (the runtime stopped during the invocation)", attempt-1)
		}
		st.Attempts = attempt - 1
		st.FirstFailAt, st.History = prev.FirstFailAt, prev.History
		b.deadLetter(ctx, msg, st, fe)
		return
	}
	ev := functions.Event{
		ID: st.ID, Subject: st.Subject, Binding: b.cfg.Name, Data: msg.Data(),
		Headers: msg.Headers(), Attempt: attempt,
	}
	running := b.markRunning(ctx, st)
	b.load.invocations.Add(1)
	started := time.Now()
	res, err := b.r.opts.Invoker.Invoke(ctx, b.cfg.Function, ev)
	took := time.Since(started)
	running.stop()
	if err == nil {
		b.r.opts.Observer.Invoked(b.cfg.Name, b.cfg.Function, StateSucceeded, attempt, took)
		b.succeed(ctx, msg, st, res)
		return
	}
	var fe *functions.Error
	if !errors.As(err, &fe) {
		// Not the function's failure (the runtime is closing, say): put the
		// event back without recording an attempt.
		b.log.Warn("invocation not run", "event", st.ID, "error", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	b.r.opts.Observer.Invoked(b.cfg.Name, b.cfg.Function, string(fe.Kind), attempt, took)
	now := time.Now().UTC()
	st.Version, st.Error, st.ErrorKind = fe.Version, fe.Reason, string(fe.Kind)
	prev, _, _ := b.r.status.Get(ctx, st.ID, b.cfg.Name)
	st.FirstFailAt = prev.FirstFailAt
	if st.FirstFailAt == nil {
		st.FirstFailAt = &now
	}
	st.History = append(prev.History, AttemptRecord{
		Attempt: attempt, Kind: string(fe.Kind), Error: fe.Reason, Duration: took.String(),
		Version: fe.Version, Node: b.r.opts.Node, At: now,
	})
	if n := len(st.History); n > MaxHistory {
		st.History = st.History[n-MaxHistory:]
	}
	if fe.Kind == functions.KindPermanent || attempt >= b.cfg.Retry.MaxAttempts {
		b.deadLetter(ctx, msg, st, fe)
		return
	}
	delay := b.backoff(attempt)
	if fe.RetryAfter > 0 {
		delay = min(fe.RetryAfter, b.cfg.Retry.Max)
	}
	next := now.Add(delay)
	st.State, st.NextTryAt = StateRetrying, &next
	b.log.Warn("invocation failed, will retry", "event", st.ID, "attempt", attempt,
		"max_attempts", b.cfg.Retry.MaxAttempts, "kind", fe.Kind, "error", fe.Reason, "retry_in", delay)
	b.putStatus(ctx, st)
	b.r.opts.Observer.Retried(b.cfg.Name, b.cfg.Function)
	if err := msg.NakWithDelay(delay); err != nil {
		b.log.Error("nak", "event", st.ID, "error", err)
	}
}

func (b *binding) succeed(ctx context.Context, msg jetstream.Msg, st Status, res functions.Result) {
	st.State, st.Version, st.Result = StateSucceeded, res.Version, res.Output
	if b.cfg.OnSuccess != "" {
		out := &nats.Msg{Subject: b.cfg.OnSuccess, Data: res.Output, Header: nats.Header{}}
		out.Header.Set(HdrEventID, st.ID)
		out.Header.Set(HdrBinding, b.cfg.Name)
		out.Header.Set(HdrNode, b.r.opts.Node)
		out.Header.Set(HdrFunction, b.cfg.Function)
		if err := b.publish(ctx, out, fmt.Sprintf("ok:%s:%d:%s", st.Stream, st.Sequence, b.cfg.Name)); err != nil {
			// The result must not be lost: run the event again later.
			b.log.Error("on_success publish failed; the event will be retried", "event", st.ID, "error", err)
			_ = msg.NakWithDelay(b.backoff(st.Attempts))
			return
		}
	}
	b.putStatusAsync(ctx, st)
	b.reply(ctx, msg, st)
	if err := msg.Ack(); err != nil {
		b.log.Error("ack", "event", st.ID, "error", err)
	}
	b.load.succeeded.Add(1)
}

// deadLetter stores the event in the binding's dead-letter stream, and only
// once that is acknowledged terminates the original. The message id makes
// a redo after a crash a duplicate the stream drops.
func (b *binding) deadLetter(ctx context.Context, msg jetstream.Msg, st Status, fe *functions.Error) {
	now := time.Now().UTC()
	dl := &nats.Msg{Subject: b.cfg.DeadLetter, Data: msg.Data(), Header: ProducerHeaders(msg.Headers())}
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
	if err := b.publish(ctx, dl, fmt.Sprintf("%s:%d", st.Stream, st.Sequence)); err != nil {
		b.log.Error("dead letter not stored; the event stays pending", "event", st.ID, "error", err)
		_ = msg.NakWithDelay(b.backoff(st.Attempts))
		return
	}
	b.r.opts.Observer.DeadLettered(b.cfg.Name, b.cfg.Function)
	b.log.Error("event dead-lettered", "event", st.ID, "attempts", st.Attempts,
		"kind", fe.Kind, "error", fe.Reason, "dead_letter", b.cfg.DeadLetter)
	st.State, st.NextTryAt, st.DeadLetter = StateDeadLettered, nil, b.cfg.DeadLetter
	st.Error, st.ErrorKind, st.Version = fe.Reason, string(fe.Kind), fe.Version
	if b.cfg.OnFailure != "" {
		record, _ := json.Marshal(st)
		out := &nats.Msg{Subject: b.cfg.OnFailure, Data: record, Header: nats.Header{}}
		out.Header.Set(HdrEventID, st.ID)
		out.Header.Set(HdrBinding, b.cfg.Name)
		out.Header.Set(HdrNode, b.r.opts.Node)
		if err := b.publish(ctx, out, fmt.Sprintf("fail:%s:%d:%s", st.Stream, st.Sequence, b.cfg.Name)); err != nil {
			b.log.Error("on_failure publish failed", "event", st.ID, "error", err)
		}
	}
	b.putStatus(ctx, st)
	b.reply(ctx, msg, st)
	if err := msg.TermWithReason("dead-lettered to " + b.cfg.DeadLetter); err != nil {
		b.log.Error("term", "event", st.ID, "error", err)
	}
}

func (b *binding) publish(ctx context.Context, m *nats.Msg, msgID string) error {
	return b.r.opts.Publisher.PublishMsg(ctx, m, msgID)
}

func (b *binding) putStatus(ctx context.Context, st Status) {
	st.UpdatedAt = time.Now().UTC()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.r.status.Put(ctx, st); err != nil {
		b.log.Warn("status not recorded", "event", st.ID, "state", st.State, "error", err)
	}
}

// putStatusAsync records a state without waiting for the broker; writes
// on one connection land in order. When the client has too many writes
// outstanding it falls back to a synchronous write for final states, which
// `publish --wait` must see, and drops transient ones.
func (b *binding) putStatusAsync(ctx context.Context, st Status) {
	st.UpdatedAt = time.Now().UTC()
	err := b.r.status.PutAsync(st)
	switch {
	case err == nil:
	case st.Final():
		b.putStatus(ctx, st)
	default:
		b.log.Debug("status not recorded", "event", st.ID, "state", st.State, "error", err)
	}
}

// runningAfter is how long an invocation runs before its status says so:
// a quick one goes straight to its final state, saving a write per event.
const runningAfter = 50 * time.Millisecond

// runningMark writes the "running" status of a slow invocation.
type runningMark struct {
	mu    sync.Mutex
	done  bool
	timer *time.Timer
}

func (b *binding) markRunning(ctx context.Context, st Status) *runningMark {
	m := &runningMark{}
	m.timer = time.AfterFunc(runningAfter, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.done {
			return
		}
		// The record it replaces may hold earlier attempts, which the
		// failure path reads back: keep them.
		if prev, ok, _ := b.r.status.Get(ctx, st.ID, b.cfg.Name); ok {
			st.History, st.FirstFailAt = prev.History, prev.FirstFailAt
		}
		b.putStatusAsync(ctx, st)
	})
	return m
}

// stop cancels the write, or waits until it is on the connection, so that
// the final status is written after it.
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
	if err := b.publish(ctx, out, ""); err != nil {
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
