package triggers_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// TestResumeWithoutPauseTimerStillDelivers: a pull request that reaches a
// paused consumer is not served when ResumeConsumer ends the pause
// (nats-server 2.15.2 wakes waiting requests only from its pause timer; see
// chaos.TestUpstreamResumeWakesNoWaitingPull). The binding's event is
// delivered anyway once that request's heartbeat or expiry comes, seconds
// later; with nats.go's default expiry it waited 15 s.
func TestResumeWithoutPauseTimerStillDelivers(t *testing.T) {
	srv := testenv.Server(t)
	cfg := testenv.Config(t, policyConfig)
	nc, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := triggers.Ensure(ctx, js, cfg); err != nil {
		t.Fatalf("ensure: %v", err)
	}
	stream, consumer := triggers.BindingStreamName("jobs"), triggers.BindingConsumerName("jobs")
	if _, err := js.PauseConsumer(ctx, stream, consumer, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int32
	inv := invokerFunc(func(functions.Event) (functions.Result, error) {
		handled.Add(1)
		return functions.Result{}, nil
	})
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
	cons, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the binding's pull request to wait at the paused consumer", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumWaiting > 0
	})
	publish(t, js, "jobs.run", "paused-1")
	if _, err := js.ResumeConsumer(ctx, stream, consumer); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the event handled after the resume", func() bool {
		return handled.Load() == 1
	})
}

// TestShutdownDoesNotWaitOutAnOpenPull: a binding stopped while its pull
// request waits at the server, with nothing running, returns at once
// rather than after the request's expiry or the drain timeout (30 s
// here): shutdowns and reloads do not stall on an idle binding.
func TestShutdownDoesNotWaitOutAnOpenPull(t *testing.T) {
	srv := testenv.Server(t)
	cfg := testenv.Config(t, policyConfig)
	nc, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := triggers.Ensure(ctx, js, cfg); err != nil {
		t.Fatalf("ensure: %v", err)
	}
	inv := invokerFunc(func(functions.Event) (functions.Result, error) { return functions.Result{}, nil })
	runner, err := triggers.NewRunner(ctx, cfg, triggers.Options{JS: js, Publisher: triggers.NewPublisher(nc, js),
		Invoker: inv, Logger: testenv.Logger(t), DrainTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("runner: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	cons, err := js.Consumer(ctx, triggers.BindingStreamName("jobs"), triggers.BindingConsumerName("jobs"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the binding's pull request to wait at the server", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumWaiting > 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still draining 10 s after its context ended, with nothing running")
	}
}
