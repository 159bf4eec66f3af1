package triggers_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// invokerFunc is a native Go handler standing in for wasm: the retry and
// dead-letter policy does not depend on the sandbox.
type invokerFunc func(ev functions.Event) (functions.Result, error)

func (f invokerFunc) Invoke(_ context.Context, _ string, ev functions.Event) (functions.Result, error) {
	return f(ev)
}

const policyConfig = `
function "f" {
  module  = "unused.wasm"
  timeout = "2s"
}
queue "jobs" {
  subject     = "jobs.run"
  function    = "f"
  concurrency = 2
  retry {
    max_attempts = 4
    initial      = "40ms"
    max          = "1s"
  }
}
`

// start lays out cfg on a fresh server and runs its bindings with inv.
func start(t *testing.T, hcl string, inv triggers.Invoker) jetstream.JetStream {
	t.Helper()
	srv := testenv.Server(t)
	cfg := testenv.Config(t, hcl)
	nc, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := triggers.Ensure(ctx, js, cfg); err != nil {
		t.Fatalf("ensure: %v", err)
	}
	runner, err := triggers.NewRunner(ctx, cfg, triggers.Options{JS: js, Publisher: triggers.NewPublisher(nc, js), Invoker: inv, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatalf("runner: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return js
}

type attemptLog struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func (l *attemptLog) record(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.times == nil {
		l.times = map[string][]time.Time{}
	}
	l.times[id] = append(l.times[id], time.Now())
	return len(l.times[id])
}

func (l *attemptLog) get(id string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.times[id]...)
}

func publish(t *testing.T, js jetstream.JetStream, subject, id string) {
	t.Helper()
	if _, err := js.Publish(context.Background(), subject, []byte("payload"), jetstream.WithMsgID(id)); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func deadLetters(t *testing.T, js jetstream.JetStream, stream string) []*nats.Msg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("dead-letter stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*nats.Msg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		out = append(out, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header})
	}
	return out
}

func TestFailingEventIsRetriedWithBackoffThenDeadLettered(t *testing.T) {
	var log attemptLog
	js := start(t, policyConfig, invokerFunc(func(ev functions.Event) (functions.Result, error) {
		n := log.record(ev.ID)
		if n != ev.Attempt {
			t.Errorf("attempt %d reported as %d", n, ev.Attempt)
		}
		return functions.Result{}, &functions.Error{Function: "f", Version: "v1", Kind: functions.KindFailed, Reason: "boom " + strconv.Itoa(n)}
	}))
	publish(t, js, "jobs.run", "ev-1")
	var dls []*nats.Msg
	testenv.Eventually(t, 20*time.Second, "a dead letter", func() bool {
		dls = deadLetters(t, js, "SLUICE_DLQ_jobs")
		return len(dls) > 0
	})
	times := log.get("ev-1")
	if len(times) != 4 {
		t.Fatalf("%d attempts, want exactly 4", len(times))
	}
	window := 40 * time.Millisecond
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < window/2 {
			t.Errorf("gap before attempt %d is %s, below the backoff floor %s", i+1, gap, window/2)
		}
		window *= 2
	}
	h := dls[0].Header
	want := map[string]string{
		triggers.HdrSubject: "jobs.run", triggers.HdrBinding: "jobs", triggers.HdrFunction: "f",
		triggers.HdrVersion: "v1", triggers.HdrAttempts: "4", triggers.HdrError: "boom 4",
		triggers.HdrErrorKind: "failed", triggers.HdrEventID: "ev-1", triggers.HdrStream: "SLUICE_Q_jobs",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("dead letter header %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{triggers.HdrFirstFailure, triggers.HdrLastFailure} {
		if _, err := time.Parse(time.RFC3339Nano, h.Get(k)); err != nil {
			t.Errorf("dead letter header %s = %q: %v", k, h.Get(k), err)
		}
	}
	if string(dls[0].Data) != "payload" {
		t.Errorf("dead letter payload %q", dls[0].Data)
	}
	st := status(t, js, "ev-1", "jobs")
	if st.State != triggers.StateDeadLettered || st.Attempts != 4 || st.Error != "boom 4" {
		t.Errorf("status %+v, want dead_lettered after 4 attempts with the last error", st)
	}
	// The original is gone from the work queue: nothing is redelivered.
	testenv.Eventually(t, 5*time.Second, "the queue to be empty", func() bool {
		s, _ := js.Stream(context.Background(), "SLUICE_Q_jobs")
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
	if n := len(log.get("ev-1")); n != 4 {
		t.Fatalf("%d attempts after dead-lettering, want 4", n)
	}
}

func TestPermanentFailureSkipsRetries(t *testing.T) {
	var log attemptLog
	js := start(t, policyConfig, invokerFunc(func(ev functions.Event) (functions.Result, error) {
		log.record(ev.ID)
		return functions.Result{}, &functions.Error{Function: "f", Kind: functions.KindPermanent, Reason: "bad input"}
	}))
	publish(t, js, "jobs.run", "ev-p")
	testenv.Eventually(t, 10*time.Second, "a dead letter", func() bool {
		return len(deadLetters(t, js, "SLUICE_DLQ_jobs")) == 1
	})
	if n := len(log.get("ev-p")); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	if st := status(t, js, "ev-p", "jobs"); st.ErrorKind != "permanent" || st.Attempts != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestGuestRetryDelayIsHonoured(t *testing.T) {
	var log attemptLog
	js := start(t, policyConfig, invokerFunc(func(ev functions.Event) (functions.Result, error) {
		if log.record(ev.ID) == 1 {
			return functions.Result{}, &functions.Error{Function: "f", Kind: functions.KindFailed, Reason: "later", RetryAfter: 700 * time.Millisecond}
		}
		return functions.Result{Output: []byte("ok")}, nil
	}))
	publish(t, js, "jobs.run", "ev-r")
	testenv.Eventually(t, 10*time.Second, "success", func() bool {
		return status(t, js, "ev-r", "jobs").State == triggers.StateSucceeded
	})
	times := log.get("ev-r")
	if len(times) != 2 || times[1].Sub(times[0]) < 700*time.Millisecond {
		t.Fatalf("attempts at %v, want 2 at least 700ms apart", times)
	}
}

func TestQueueHandlesEachEventOnce(t *testing.T) {
	var mu sync.Mutex
	handled := map[string]int{}
	js := start(t, policyConfig, invokerFunc(func(ev functions.Event) (functions.Result, error) {
		mu.Lock()
		handled[ev.ID]++
		mu.Unlock()
		return functions.Result{}, nil
	}))
	const n = 1000
	ctx := context.Background()
	for i := range n {
		if _, err := js.PublishAsync("jobs.run", []byte("x"), jetstream.WithMsgID("q-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishes not acknowledged")
	}
	testenv.Eventually(t, 60*time.Second, "every event handled and acked", func() bool {
		s, _ := js.Stream(ctx, "SLUICE_Q_jobs")
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != n {
		t.Fatalf("%d distinct events handled, want %d", len(handled), n)
	}
	for id, c := range handled {
		if c != 1 {
			t.Errorf("event %s handled %d times", id, c)
		}
	}
}

func status(t *testing.T, js jetstream.JetStream, id, binding string) triggers.Status {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), triggers.StatusBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), triggers.StatusKey(id, binding))
	if err != nil {
		return triggers.Status{}
	}
	var st triggers.Status
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSlowInvocationShowsRunning: each slow invocation shows "running",
// then its outcome. The events follow one another through the binding's
// worker goroutines, each of which re-arms one running mark per event.
func TestSlowInvocationShowsRunning(t *testing.T) {
	release := make(chan struct{})
	js := start(t, policyConfig, invokerFunc(func(ev functions.Event) (functions.Result, error) {
		<-release
		return functions.Result{Output: []byte("done " + ev.ID)}, nil
	}))
	for i := range 5 {
		id := "slow-" + strconv.Itoa(i)
		publish(t, js, "jobs.run", id)
		testenv.Eventually(t, 10*time.Second, "the running status of "+id, func() bool {
			return status(t, js, id, "jobs").State == triggers.StateRunning
		})
		release <- struct{}{}
		testenv.Eventually(t, 10*time.Second, "the final status of "+id, func() bool {
			st := status(t, js, id, "jobs")
			return st.State == triggers.StateSucceeded && string(st.Result) == "done "+id
		})
	}
}

// TestHistoryKeepsEveryAttemptOfSlowInvocations: a slow invocation's
// "running" status must not lose the attempts recorded before it.
func TestHistoryKeepsEveryAttemptOfSlowInvocations(t *testing.T) {
	js := start(t, policyConfig, invokerFunc(func(ev functions.Event) (functions.Result, error) {
		time.Sleep(120 * time.Millisecond) // the slow invocation under test, past the running mark
		return functions.Result{}, &functions.Error{Function: "f", Kind: functions.KindFailed, Reason: "slow " + strconv.Itoa(ev.Attempt)}
	}))
	publish(t, js, "jobs.run", "hist-1")
	testenv.Eventually(t, 30*time.Second, "the dead letter", func() bool {
		return status(t, js, "hist-1", "jobs").State == triggers.StateDeadLettered
	})
	h := status(t, js, "hist-1", "jobs").History
	if len(h) != 4 {
		t.Fatalf("history %+v, want 4 attempts", h)
	}
	for i, a := range h {
		if a.Attempt != i+1 || a.Error != "slow "+strconv.Itoa(i+1) {
			t.Errorf("attempt %d recorded as %+v", i+1, a)
		}
	}
}

// A binding's rate is the cluster's: told that four nodes share it, a
// runner takes a quarter.
func TestRateShare(t *testing.T) {
	srv := testenv.Server(t)
	cfg := testenv.Config(t, `
function "f" {
  module = "unused.wasm"
}
queue "paced" {
  subject     = "paced.run"
  function    = "f"
  concurrency = 2
  rate        = "200/s"
}
`)
	nc, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := triggers.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	var handled sync.WaitGroup
	const events = 100
	handled.Add(events)
	inv := invokerFunc(func(functions.Event) (functions.Result, error) {
		handled.Done()
		return functions.Result{}, nil
	})
	runner, err := triggers.NewRunner(ctx, cfg, triggers.Options{JS: js, Publisher: triggers.NewPublisher(nc, js), Invoker: inv, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runner.SetShares(map[string]int{"paced": 4})
	for i := range events {
		publish(t, js, "paced.run", "p"+strconv.Itoa(i))
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- runner.Run(runCtx) }()
	handled.Wait()
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// 50/s with a burst of 2: at least (100-2)/50 s; allow 10% above the rate
	// (55/s).
	if minimum := (events - 2) * time.Second / 55; took < minimum {
		t.Errorf("%d events took %s at a quarter of 200/s, want at least %s", events, took, minimum)
	}
}
