package triggers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// TestInterruptedAttemptRunsAgainWithoutUsingAnAttempt: with
// max_attempts = 1, `sluice run` killed (kill -9) during an invocation
// runs the event again after its restart, and it succeeds; its history
// shows one function attempt.
func TestInterruptedAttemptRunsAgainWithoutUsingAnAttempt(t *testing.T) {
	guest := testenv.Guest(t, "internal/testguests/stall")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "runtime.hcl")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
function "stall" {
  module  = %q
  timeout = "5s"
  publish = ["stall.started"]
}
queue "jobs" {
  subject     = "jobs.run"
  function    = "stall"
  concurrency = 4
  retry {
    max_attempts = 1
  }
}
`, guest)), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	args := []string{"--data", filepath.Join(dir, "data"), "--listen", listen, "--metrics-listen", "127.0.0.1:0", "--log-level", "warn"}
	node := testenv.StartNode(t, "n1", cfgPath, args...)
	nc, js := testenv.Connect(t, "nats://"+listen)
	started := make(chan struct{}, 1)
	if _, err := nc.Subscribe("stall.started", func(*nats.Msg) { started <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: "jobs.run", Data: []byte("x"), Header: nats.Header{}}
	m.Header.Set("Started", "stall.started")
	m.Header.Set("Stall", "4s")
	if _, err := js.PublishMsg(context.Background(), m, jetstream.WithMsgID("int-1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("the invocation did not start")
	}
	testenv.Eventually(t, 3*time.Second, "the running status", func() bool {
		return status(t, js, "int-1", "jobs").State == triggers.StateRunning
	})
	node.Kill9(t)
	nc.Close()

	node = testenv.StartNode(t, "n1", cfgPath, args...)
	_, js = testenv.Connect(t, "nats://"+listen)
	// JetStream redelivers the interrupted event after the consumer's
	// AckWait, 20 s here.
	testenv.Eventually(t, 2*time.Minute, "the event to succeed after the restart", func() bool {
		return status(t, js, "int-1", "jobs").State == triggers.StateSucceeded
	})
	st := status(t, js, "int-1", "jobs")
	if st.Attempts != 1 || len(st.History) != 1 || st.History[0].Attempt != 1 || st.History[0].Kind != triggers.StateSucceeded {
		t.Errorf("attempts %d, history %+v: want one attempt, succeeded", st.Attempts, st.History)
	}
	// The running mark is flushed within ~8 ms of its write (the status
	// bucket's async persistence): a kill in that window loses it, and
	// with it the note of the interruption, not the attempt count.
	if st.Interrupted > 1 {
		t.Errorf("interrupted runs %d, want at most 1", st.Interrupted)
	}
	if n := streamMsgs(js, triggers.DeadLetterStreamName("jobs")); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	if err := node.Stop(t); err != nil {
		t.Fatalf("graceful stop: %v\n%s", err, node.Output())
	}
}
