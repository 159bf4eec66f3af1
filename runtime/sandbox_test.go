package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
	"github.com/sluice-run/sluice/triggers"
)

// TestEndlessLoopTimesOutWhileOthersFlow: a function that never returns is
// stopped at its timeout, its worker's CPU is freed, the event follows the
// retry policy to a dead letter, and another binding keeps working.
func TestEndlessLoopTimesOutWhileOthersFlow(t *testing.T) {
	loop := testenv.WAT(t, `(module (memory (export "memory") 1)
		(func (export "handle") (result i32) (loop $forever (br $forever)) (i32.const 0)))`)
	testenv.Guest(t, "examples/emails/sender")
	cfg := testenv.Config(t, `
function "loop" {
  module  = "`+loop+`"
  timeout = "1s"
}
function "sender" {
  module  = "examples/emails/sender/sender.wasm"
  publish = ["email.sent"]
}
queue "stuck" {
  subject  = "stuck.in"
  function = "loop"
  retry {
    max_attempts = 2
    initial      = "100ms"
    max          = "200ms"
  }
}
queue "emails" {
  subject     = "email.send"
  function    = "sender"
  concurrency = 2
}`)
	rt := testenv.Start(t, cfg, "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	sent := testenv.CountEffects(t, nc, "email.sent")
	ctx := context.Background()
	if _, err := js.Publish(ctx, "stuck.in", []byte("x"), jetstreamMsgID("loop-1")); err != nil {
		t.Fatal(err)
	}
	publishAll(t, js, "email.send", "flow-", 200, func(int) string { return `{"to":"x@example.com"}` })
	testenv.Eventually(t, time.Minute, "the other binding to handle its events", func() bool { return sent.Distinct() == 200 })
	store, err := triggers.NewStatusStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	var st triggers.Status
	testenv.Eventually(t, 30*time.Second, "the looping event to be dead-lettered", func() bool {
		st, _, _ = store.Get(ctx, "loop-1", "stuck")
		return st.State == triggers.StateDeadLettered
	})
	if st.ErrorKind != "timeout" || st.Attempts != 2 || !strings.Contains(st.Error, "1s") {
		t.Fatalf("status %+v, want 2 timed-out attempts", st)
	}
	if busy := testenv.BusyChildren(t); len(busy) > 0 {
		t.Fatalf("processes still burning CPU: %v", busy)
	}
}

// TestCapabilitiesHoldAgainstASpy: a guest that publishes outside its
// allow list gets an error, and a subscriber on ">" sees nothing it should
// not.
func TestCapabilitiesHoldAgainstASpy(t *testing.T) {
	testenv.Guest(t, "internal/testguests/publisher")
	cfg := testenv.Config(t, `
function "publisher" {
  module  = "internal/testguests/publisher/publisher.wasm"
  publish = ["allowed.>"]
}
queue "pub" {
  subject  = "pub.in"
  function = "publisher"
  retry {
    max_attempts = 1
  }
}`)
	rt := testenv.Start(t, cfg, "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	var mu sync.Mutex
	var seen []string
	if _, err := nc.Subscribe(">", func(m *nats.Msg) {
		mu.Lock()
		seen = append(seen, m.Subject)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for id, target := range map[string]string{"ok": "allowed.one", "bad": "secret.stuff", "sys": "$JS.API.STREAM.DELETE.SLUICE_Q_pub"} {
		m := nats.NewMsg("pub.in")
		m.Data = []byte("payload")
		m.Header.Set("Target", target)
		m.Header.Set(nats.MsgIdHdr, id)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	store, err := triggers.NewStatusStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"ok": triggers.StateSucceeded, "bad": triggers.StateDeadLettered, "sys": triggers.StateDeadLettered} {
		testenv.Eventually(t, 30*time.Second, id+" to settle", func() bool {
			st, _, _ := store.Get(ctx, id, "pub")
			return st.State == want
		})
	}
	if st, _, _ := store.Get(ctx, "bad", "pub"); !strings.Contains(st.Error, "denied") {
		t.Errorf("denied publish reported as %q", st.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	var allowedSeen bool
	for _, s := range seen {
		if s == "secret.stuff" || strings.HasPrefix(s, "$JS.API.STREAM.DELETE") {
			t.Errorf("the spy saw an unauthorised publish to %s", s)
		}
		allowedSeen = allowedSeen || s == "allowed.one"
	}
	if !allowedSeen {
		t.Error("the spy did not see the allowed publish")
	}
}

// TestRestartUsesTheCompileCache: a restart with unchanged modules loads
// the compiled artifacts instead of compiling again.
func TestRestartUsesTheCompileCache(t *testing.T) {
	noop := testenv.Guest(t, "internal/testguests/noop")
	// A private copy, so no other test has compiled this exact module into
	// the data dir's cache.
	wasm, err := os.ReadFile(noop)
	if err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(t.TempDir(), "noop.wasm")
	if err := os.WriteFile(mod, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testenv.Config(t, `function "noop" { module = "`+mod+`" }`)
	data := t.TempDir()
	for i, wantHit := range []bool{false, true} {
		rt, err := runtime.Start(context.Background(), runtime.Options{Config: cfg, DataDir: data, Listen: "127.0.0.1:-1"})
		if err != nil {
			t.Fatal(err)
		}
		_, hit, _ := rt.Functions().Version("noop")
		if err := rt.Shutdown(); err != nil {
			t.Fatal(err)
		}
		if hit != wantHit {
			t.Fatalf("start %d: compile cache hit %v, want %v", i+1, hit, wantHit)
		}
	}
}
