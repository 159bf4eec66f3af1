package triggers_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// serverAt starts an embedded server on the store in dir: starting another
// on the same dir after Shutdown is a restart of the server.
func serverAt(t *testing.T, dir string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 4 << 30, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// counts is an Observer that counts what the settle path reports.
type counts struct {
	triggers.Observer
	notStored    atomic.Int64
	deduplicated atomic.Int64
}

func (c *counts) Invoked(string, string, string, int, time.Duration) {}
func (c *counts) Retried(string, string)                             {}
func (c *counts) DeadLettered(string, string)                        {}
func (c *counts) NotStored(string, string, string)                   { c.notStored.Add(1) }
func (c *counts) Deduplicated(string, string)                        { c.deduplicated.Add(1) }

// runOn lays out cfg on the server at url and runs its bindings with inv
// until the returned stop is called (or the test ends).
func runOn(t *testing.T, url string, cfg *config.Config, inv triggers.Invoker, obs triggers.Observer) (jetstream.JetStream, func()) {
	t.Helper()
	nc, js := testenv.Connect(t, url)
	ctx := context.Background()
	if err := triggers.Ensure(ctx, js, cfg); err != nil {
		t.Fatalf("ensure: %v", err)
	}
	runner, err := triggers.NewRunner(ctx, cfg, triggers.Options{
		JS: js, Publisher: triggers.NewPublisher(nc, js), Invoker: inv, Logger: testenv.Logger(t), Observer: obs,
		SyncAcks: true,
	})
	if err != nil {
		t.Fatalf("runner: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return js, stop
}

func streamMsgs(js jetstream.JetStream, name string) uint64 {
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		return 0
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

const dedupeConfig = `
function "f" {
  module  = "unused.wasm"
  timeout = "2s"
}
queue "jobs" {
  subject     = "jobs.run"
  function    = "f"
  concurrency = 2
  dedupe      = "1h"
  retry {
    max_attempts = 2
    initial      = "40ms"
    max          = "200ms"
  }
}
`

// TestStatusesAndDedupeSurviveServerRestart: a publisher that retries the
// same Nats-Msg-Id after the server restarted gets its event stored again
// (the work queue's duplicate window forgot the consumed id), and a
// binding with dedupe acknowledges it without a second invocation, from
// the status kept on disk.
func TestStatusesAndDedupeSurviveServerRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testenv.Config(t, dedupeConfig)
	var log attemptLog
	inv := invokerFunc(func(ev functions.Event) (functions.Result, error) {
		if log.record(ev.ID); ev.ID == "bad-1" {
			return functions.Result{}, &functions.Error{Function: "f", Kind: functions.KindPermanent, Reason: "bad"}
		}
		return functions.Result{Output: []byte("done")}, nil
	})
	srv := serverAt(t, dir)
	js, stop := runOn(t, srv.ClientURL(), cfg, inv, nil)
	publish(t, js, "jobs.run", "dup-1")
	publish(t, js, "jobs.run", "bad-1")
	testenv.Eventually(t, 20*time.Second, "both events settled", func() bool {
		return status(t, js, "dup-1", "jobs").State == triggers.StateSucceeded &&
			status(t, js, "bad-1", "jobs").State == triggers.StateDeadLettered &&
			streamMsgs(js, "SLUICE_Q_jobs") == 0
	})
	stop()
	srv.Shutdown()
	srv.WaitForShutdown()

	srv = serverAt(t, dir)
	obs := &counts{}
	js, _ = runOn(t, srv.ClientURL(), cfg, inv, obs)
	if st := status(t, js, "dup-1", "jobs"); st.State != triggers.StateSucceeded || string(st.Result) != "done" {
		t.Fatalf("after the restart, status of dup-1 = %+v, want succeeded with its result", st)
	}
	if st := status(t, js, "bad-1", "jobs"); st.State != triggers.StateDeadLettered || st.Error != "bad" {
		t.Fatalf("after the restart, status of bad-1 = %+v, want dead_lettered", st)
	}
	ack, err := js.Publish(context.Background(), "jobs.run", []byte("payload"), jetstream.WithMsgID("dup-1"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatal("the server still knew the id after its restart: this test no longer covers the case")
	}
	testenv.Eventually(t, 20*time.Second, "the repeated publish acknowledged without running", func() bool {
		return obs.deduplicated.Load() == 1 && streamMsgs(js, "SLUICE_Q_jobs") == 0
	})
	if n := len(log.get("dup-1")); n != 1 {
		t.Fatalf("dup-1 invoked %d times, want once", n)
	}
}

// TestDedupeOffRunsARepeatedPublishAgain is the control: without dedupe
// the same id published again after a restart runs again.
func TestDedupeOffRunsARepeatedPublishAgain(t *testing.T) {
	dir := t.TempDir()
	cfg := testenv.Config(t, policyConfig)
	var log attemptLog
	inv := invokerFunc(func(ev functions.Event) (functions.Result, error) {
		log.record(ev.ID)
		return functions.Result{}, nil
	})
	srv := serverAt(t, dir)
	js, stop := runOn(t, srv.ClientURL(), cfg, inv, nil)
	publish(t, js, "jobs.run", "again-1")
	testenv.Eventually(t, 20*time.Second, "the event settled", func() bool {
		return status(t, js, "again-1", "jobs").State == triggers.StateSucceeded && streamMsgs(js, "SLUICE_Q_jobs") == 0
	})
	first := status(t, js, "again-1", "jobs").Round
	stop()
	srv.Shutdown()
	srv.WaitForShutdown()
	srv = serverAt(t, dir)
	js, _ = runOn(t, srv.ClientURL(), cfg, inv, nil)
	publish(t, js, "jobs.run", "again-1")
	testenv.Eventually(t, 20*time.Second, "the repeated publish to run", func() bool {
		return len(log.get("again-1")) == 2
	})
	// Its status replaces the first one's (a new round), although the
	// runner did not know a status was stored.
	testenv.Eventually(t, 10*time.Second, "the new round's status", func() bool {
		st := status(t, js, "again-1", "jobs")
		return st.Round > first && st.State == triggers.StateSucceeded
	})
}

// TestStaleReportDoesNotRegressStatus: statuses are written by
// compare-and-set and only move forward, whatever order reports arrive in.
func TestStaleReportDoesNotRegressStatus(t *testing.T) {
	srv := testenv.Server(t)
	cfg := testenv.Config(t, policyConfig)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := triggers.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	store, err := triggers.NewStatusStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	base := triggers.Status{ID: "ev-s", Binding: "jobs", Function: "f", Round: 100}
	at := func(state string, attempt int) triggers.Status {
		s := base
		s.State, s.Attempts = state, attempt
		return s
	}
	// The live sequence, each write knowing the last revision.
	var last triggers.Revision
	for _, s := range []triggers.Status{at(triggers.StateRunning, 1), at(triggers.StateRetrying, 1), at(triggers.StateRunning, 2), at(triggers.StateSucceeded, 2)} {
		var stored bool
		if last, stored, err = store.Advance(ctx, s, last); err != nil || !stored {
			t.Fatalf("advance to %s %d: stored %v, %v", s.State, s.Attempts, stored, err)
		}
	}
	// Late reports, from writers that saw an older revision, none, or
	// the latest.
	first := triggers.Revision{Status: at(triggers.StateRunning, 1), Rev: 1}
	for _, s := range []triggers.Status{at(triggers.StateRetrying, 1), at(triggers.StateRunning, 2), at(triggers.StateRetrying, 2), at(triggers.StateDeadLettered, 2)} {
		for _, seen := range []triggers.Revision{{}, first, last} {
			_, stored, err := store.Advance(ctx, s, seen)
			if err != nil {
				t.Fatalf("late %s %d: %v", s.State, s.Attempts, err)
			}
			if stored {
				t.Errorf("late report %s of attempt %d (revision %d) replaced the succeeded status", s.State, s.Attempts, seen.Rev)
			}
		}
	}
	if got, _, _ := store.Get(ctx, "ev-s", "jobs"); got.State != triggers.StateSucceeded || got.Attempts != 2 {
		t.Fatalf("status %s attempt %d, want succeeded on attempt 2", got.State, got.Attempts)
	}
	// A replay is a new round: it moves on from the final state.
	replay := at(triggers.StateRunning, 1)
	replay.Round = 200
	if _, stored, err := store.Advance(ctx, replay, last); err != nil || !stored {
		t.Fatalf("a new round was not stored: %v %v", stored, err)
	}
}

// TestStaleAttemptReportEndToEnd: an attempt that ends after the event
// was redelivered and settled by a newer attempt does not overwrite the
// final status.
func TestStaleAttemptReportEndToEnd(t *testing.T) {
	const hcl = `
function "f" {
  module  = "unused.wasm"
  timeout = "1s"
}
queue "jobs" {
  subject     = "jobs.run"
  function    = "f"
  concurrency = 2
  retry {
    max_attempts = 3
    initial      = "40ms"
    max          = "200ms"
  }
}
`
	// The first run outlives the consumer's AckWait (its status becomes
	// stale); the redelivery succeeds meanwhile.
	release := make(chan struct{})
	var runs atomic.Int64
	staleDone := make(chan struct{})
	inv := invokerFunc(func(ev functions.Event) (functions.Result, error) {
		if runs.Add(1) == 1 {
			<-release
			defer close(staleDone)
			return functions.Result{}, &functions.Error{Function: "f", Kind: functions.KindFailed, Reason: "stale"}
		}
		return functions.Result{Output: []byte("fresh")}, nil
	})
	srv := testenv.Server(t)
	js, stop := runOn(t, srv.ClientURL(), testenv.Config(t, hcl), inv, nil)
	ctx := context.Background()
	// A short AckWait makes JetStream redeliver while the first run hangs.
	cons, err := js.Consumer(ctx, "SLUICE_Q_jobs", "sluice_jobs")
	if err != nil {
		t.Fatal(err)
	}
	cc := cons.CachedInfo().Config
	cc.AckWait = 300 * time.Millisecond
	if _, err := js.UpdateConsumer(ctx, "SLUICE_Q_jobs", cc); err != nil {
		t.Fatal(err)
	}
	publish(t, js, "jobs.run", "stale-1")
	testenv.Eventually(t, 20*time.Second, "the redelivery to succeed", func() bool {
		return status(t, js, "stale-1", "jobs").State == triggers.StateSucceeded
	})
	close(release)
	<-staleDone
	// Stopping drains: the stale attempt has settled once stop returns.
	stop()
	if st := status(t, js, "stale-1", "jobs"); st.State != triggers.StateSucceeded || string(st.Result) != "fresh" {
		t.Fatalf("status after the stale report: %s %q (%+v), want succeeded with the fresh result", st.State, st.Result, st)
	}
}

const dlqConfig = `
function "f" {
  module  = "unused.wasm"
  timeout = "2s"
}
queue "jobs" {
  subject     = "jobs.run"
  function    = "f"
  concurrency = 2
  retry {
    max_attempts = 1
    initial      = "40ms"
    max          = "200ms"
  }
}
`

// TestDeadLetterNotStoredLeavesEventPending: with the dead-letter stream
// gone, the event is not terminated: it stays pending, without running
// again, and is dead-lettered once the stream is back.
func TestDeadLetterNotStoredLeavesEventPending(t *testing.T) {
	srv := testenv.Server(t)
	cfg := testenv.Config(t, dlqConfig)
	var log attemptLog
	inv := invokerFunc(func(ev functions.Event) (functions.Result, error) {
		log.record(ev.ID)
		return functions.Result{}, &functions.Error{Function: "f", Kind: functions.KindFailed, Reason: "boom"}
	})
	obs := &counts{}
	js, _ := runOn(t, srv.ClientURL(), cfg, inv, obs)
	ctx := context.Background()
	if err := js.DeleteStream(ctx, triggers.DeadLetterStreamName("jobs")); err != nil {
		t.Fatal(err)
	}
	publish(t, js, "jobs.run", "dl-1")
	testenv.Eventually(t, 20*time.Second, "the dead letter to fail a few times", func() bool {
		return obs.notStored.Load() >= 3
	})
	if st := status(t, js, "dl-1", "jobs"); st.State != triggers.StateRetrying || st.Attempts != 1 {
		t.Errorf("status while the dead letter cannot be stored: %s attempt %d, want retrying after attempt 1", st.State, st.Attempts)
	}
	if n := streamMsgs(js, "SLUICE_Q_jobs"); n != 1 {
		t.Fatalf("%d events in the queue, want the event still pending", n)
	}
	if err := triggers.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the event dead-lettered", func() bool {
		return status(t, js, "dl-1", "jobs").State == triggers.StateDeadLettered && streamMsgs(js, "SLUICE_Q_jobs") == 0
	})
	if dls := deadLetters(t, js, triggers.DeadLetterStreamName("jobs")); len(dls) != 1 || dls[0].Header.Get(triggers.HdrEventID) != "dl-1" {
		t.Fatalf("%d dead letters, want the one of dl-1", len(dls))
	}
	if n := len(log.get("dl-1")); n != 1 {
		t.Fatalf("the function ran %d times, want once: a dead letter not stored must not cost a run", n)
	}
}

// TestReleaseUsesNoAttempt: an invocation the runtime could not run (a
// function unknown during a reload, say) puts the event back without
// using an attempt, even with max_attempts = 1.
func TestReleaseUsesNoAttempt(t *testing.T) {
	srv := testenv.Server(t)
	cfg := testenv.Config(t, dlqConfig)
	var calls atomic.Int64
	inv := invokerFunc(func(ev functions.Event) (functions.Result, error) {
		if calls.Add(1) <= 2 {
			return functions.Result{}, functions.ErrUnknownFunction
		}
		return functions.Result{Output: []byte("ok")}, nil
	})
	js, _ := runOn(t, srv.ClientURL(), cfg, inv, nil)
	publish(t, js, "jobs.run", "rel-1")
	testenv.Eventually(t, 20*time.Second, "success after two releases", func() bool {
		return status(t, js, "rel-1", "jobs").State == triggers.StateSucceeded
	})
	st := status(t, js, "rel-1", "jobs")
	if st.Attempts != 1 || len(st.History) != 1 || st.History[0].Kind != triggers.StateSucceeded {
		t.Fatalf("status %+v, want one attempt, succeeded", st)
	}
	if n := streamMsgs(js, triggers.DeadLetterStreamName("jobs")); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
}

// flakyJS fails the first `fail` JetStream publishes with
// ErrNoStreamResponse, as nats.go does while a stream has no leader.
type flakyJS struct {
	jetstream.JetStream
	fail  atomic.Int64
	calls atomic.Int64
}

func (f *flakyJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	f.calls.Add(1)
	if f.fail.Add(-1) >= 0 {
		return nil, jetstream.ErrNoStreamResponse
	}
	return f.JetStream.PublishMsg(ctx, m, opts...)
}

// TestPublisherWaitsForTheStreamInsteadOfFallingBack: a publish to a
// subject a stream captures is stored or fails; no answer from the stream
// never turns into a plain NATS publish.
func TestPublisherWaitsForTheStreamInsteadOfFallingBack(t *testing.T) {
	srv := testenv.Server(t)
	nc, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OUT", Subjects: []string{"out.>"}}); err != nil {
		t.Fatal(err)
	}
	var core atomic.Int64
	sub, err := nc.Subscribe("out.>", func(*nats.Msg) { core.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	flaky := &flakyJS{JetStream: js}
	pub := triggers.NewPublisher(nc, flaky)

	flaky.fail.Store(3)
	if err := pub.Publish(ctx, "out.a", []byte("x")); err != nil {
		t.Fatalf("publish through a leader election: %v", err)
	}
	if n := flaky.calls.Load(); n != 4 {
		t.Errorf("%d JetStream publishes, want 4 (3 unanswered, then stored)", n)
	}
	if n := streamMsgs(js, "OUT"); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}

	flaky.fail.Store(1 << 30)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	err = pub.Publish(short, "out.b", []byte("y"))
	if !errors.Is(err, triggers.ErrNotStored) {
		t.Fatalf("publish with the stream never answering: %v, want ErrNotStored", err)
	}
	if n := streamMsgs(js, "OUT"); n != 1 {
		t.Fatalf("%d messages stored, want still 1", n)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := core.Load(); n != 1 {
		t.Fatalf("%d messages reached a plain subscriber, want 1 (the stored one): the failed publish must not fall back", n)
	}

	// A subject no stream captures is a plain publish by design; a
	// publish that must be stored there fails.
	if err := pub.Publish(ctx, "free.subject", []byte("z")); err != nil {
		t.Fatalf("plain publish: %v", err)
	}
	if err := pub.Store(ctx, &nats.Msg{Subject: "free.subject"}, ""); !errors.Is(err, triggers.ErrNoStream) {
		t.Fatalf("Store to an uncaptured subject: %v, want ErrNoStream", err)
	}
	// A subject too long for the server is refused before it is sent: the
	// server would close the connection for good.
	if err := pub.Publish(ctx, "out."+strings.Repeat("x", 5000), nil); !errors.Is(err, config.ErrSubjectTooLong) {
		t.Fatalf("publish to a 5 KB subject: %v, want ErrSubjectTooLong", err)
	}
	if !nc.IsConnected() {
		t.Fatal("the connection closed")
	}
}

// TestGuestPublishNotStoredFailsTheGuest: a guest's publish that the
// capturing stream does not store (here: the stream is full) returns an
// error to the guest, whose invocation then fails; nothing is sent to the
// subject as a plain message instead.
func TestGuestPublishNotStoredFailsTheGuest(t *testing.T) {
	testenv.Guest(t, "internal/testguests/echo")
	cfg := testenv.Config(t, `
function "echo" {
  module  = "internal/testguests/echo/echo.wasm"
  timeout = "5s"
  publish = ["full.>"]
}
queue "pub" {
  subject  = "pub.in"
  function = "echo"
  retry {
    max_attempts = 1
  }
}`)
	rt := testenv.Start(t, cfg, "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FULL", Subjects: []string{"full.>"}, MaxMsgs: 1, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "full.first", []byte("first")); err != nil {
		t.Fatal(err)
	}
	// A JetStream publish reaches plain subscribers too, with a reply
	// subject for the stream's answer; a fallback would come without one.
	var plain atomic.Int64
	sub, err := nc.Subscribe("full.>", func(m *nats.Msg) {
		if m.Reply == "" {
			plain.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	m := &nats.Msg{Subject: "pub.in", Data: []byte("effect"), Header: nats.Header{}}
	m.Header.Set("Reply-Effect", "full.x")
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID("gp-1")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the invocation to fail", func() bool {
		return status(t, js, "gp-1", "pub").State == triggers.StateDeadLettered
	})
	if st := status(t, js, "gp-1", "pub"); !strings.Contains(st.Error, "publish") {
		t.Errorf("error %q, want the guest's failed publish", st.Error)
	}
	if n := streamMsgs(js, "FULL"); n != 1 {
		t.Fatalf("%d messages in the full stream, want 1", n)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := plain.Load(); n != 0 {
		t.Fatalf("%d plain messages reached full.>, want none", n)
	}
}

// TestSuccessWithResultNotStoredIsNeverAFailure: an on_success result the
// stream does not store leaves the event pending; its redeliveries publish
// the result again without running the function or using an attempt, and
// it is never dead-lettered, even with max_attempts = 1.
func TestSuccessWithResultNotStoredIsNeverAFailure(t *testing.T) {
	srv := testenv.Server(t)
	cfg := testenv.Config(t, `
function "f" {
  module  = "unused.wasm"
  timeout = "2s"
}
queue "jobs" {
  subject    = "jobs.run"
  function   = "f"
  on_success = "results.jobs"
  retry {
    max_attempts = 1
    initial      = "40ms"
    max          = "200ms"
  }
}`)
	var log attemptLog
	inv := invokerFunc(func(ev functions.Event) (functions.Result, error) {
		log.record(ev.ID)
		return functions.Result{Output: []byte("the result")}, nil
	})
	obs := &counts{}
	js, _ := runOn(t, srv.ClientURL(), cfg, inv, obs)
	ctx := context.Background()
	results, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RESULTS", Subjects: []string{"results.>"}, MaxMsgs: 1, Discard: jetstream.DiscardNew})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "results.other", []byte("fills the stream")); err != nil {
		t.Fatal(err)
	}
	publish(t, js, "jobs.run", "res-1")
	testenv.Eventually(t, 20*time.Second, "the result to fail a few times", func() bool {
		return obs.notStored.Load() >= 3
	})
	if st := status(t, js, "res-1", "jobs"); st.State != triggers.StateSucceeded || st.Attempts != 1 {
		t.Errorf("status while the result cannot be stored: %s attempt %d, want succeeded on attempt 1", st.State, st.Attempts)
	}
	if n := streamMsgs(js, "SLUICE_Q_jobs"); n != 1 {
		t.Fatalf("%d events in the queue, want the event still pending", n)
	}
	if err := results.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the result stored and the event acknowledged", func() bool {
		return streamMsgs(js, "RESULTS") == 1 && streamMsgs(js, "SLUICE_Q_jobs") == 0
	})
	m, err := results.GetLastMsgForSubject(ctx, "results.jobs")
	if err != nil || string(m.Data) != "the result" {
		t.Fatalf("stored result %v, %v", m, err)
	}
	if n := len(log.get("res-1")); n != 1 {
		t.Fatalf("the function ran %d times, want once", n)
	}
	if n := streamMsgs(js, triggers.DeadLetterStreamName("jobs")); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
}

// TestStatusBucketMovesToDisk: a status bucket in memory (as older
// versions made it) is replaced by one on disk, written like every stream
// (never flushed asynchronously, which a kill -9 could lose).
func TestStatusBucketMovesToDisk(t *testing.T) {
	srv := testenv.Server(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: triggers.StatusBucket, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second Ensure keeps what the first made
		if err := triggers.Ensure(ctx, js, testenv.Config(t, policyConfig)); err != nil {
			t.Fatalf("ensure %d: %v", i+1, err)
		}
		s, err := js.Stream(ctx, "KV_"+triggers.StatusBucket)
		if err != nil {
			t.Fatal(err)
		}
		if c := s.CachedInfo().Config; c.Storage != jetstream.FileStorage || c.PersistMode == jetstream.AsyncPersistMode || c.MaxAge != triggers.StatusTTL {
			t.Fatalf("status bucket storage %v, persist mode %v, max age %s", c.Storage, c.PersistMode, c.MaxAge)
		}
	}
	if _, err := js.KeyValue(ctx, triggers.StatusBucket); err != nil {
		t.Fatalf("the stream is not a KV bucket: %v", err)
	}
}
