package runtime_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
	"github.com/sluice-run/sluice/triggers"
)

// liveConfig is a runtime.hcl in a temporary directory, loaded with
// config.Load so that its Path is set and Reload reads it again.
type liveConfig struct {
	t    *testing.T
	path string
	// modules are substituted for {{name}} in the file.
	modules map[string]string
}

func newLiveConfig(t *testing.T, guests ...string) *liveConfig {
	t.Helper()
	lc := &liveConfig{t: t, path: filepath.Join(t.TempDir(), "runtime.hcl"), modules: map[string]string{}}
	for _, g := range guests {
		lc.modules[filepath.Base(g)] = testenv.Guest(t, g)
	}
	return lc
}

func (lc *liveConfig) write(hcl string) {
	lc.t.Helper()
	for name, path := range lc.modules {
		hcl = strings.ReplaceAll(hcl, "{{"+name+"}}", strconv.Quote(path))
	}
	// Write then rename, as editors do: the watch sees one complete file.
	tmp := lc.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(hcl), 0o644); err != nil {
		lc.t.Fatal(err)
	}
	if err := os.Rename(tmp, lc.path); err != nil {
		lc.t.Fatal(err)
	}
}

func (lc *liveConfig) load() *config.Config {
	lc.t.Helper()
	cfg, err := config.Load(lc.path)
	if err != nil {
		lc.t.Fatalf("config: %v", err)
	}
	return cfg
}

func startLive(t *testing.T, lc *liveConfig, watch bool, log *testenv.Buffer) *runtime.Runtime {
	t.Helper()
	opts := testenv.RuntimeOptions(t, lc.load(), "")
	opts.WatchConfig = watch
	if log != nil {
		opts.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	rt, err := runtime.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start runtime: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() && log != nil {
			t.Logf("runtime log:\n%s", log)
		}
	})
	return rt
}

const signupFunctions = `
function "welcome_sms" {
  module  = {{welcome_sms}}
  timeout = "5s"
  publish = ["sms.outbox"]
}
function "profile_store" {
  module  = {{profile_store}}
  timeout = "5s"
  publish = ["profile.stored"]
}
`

func signup(i int) string { return `{"email":"user` + strconv.Itoa(i) + `@example.com"}` }

func TestReloadOnFileChangeAddsSubscriberWhileEventsFlow(t *testing.T) {
	lc := newLiveConfig(t, "examples/signup/welcome_sms", "examples/signup/profile_store")
	lc.write(signupFunctions + `
topic "user_registered" {
  subject = "user.registered"
  subscriber "profile_store" {
    function    = "profile_store"
    concurrency = 2
  }
}`)
	rt := startLive(t, lc, true, nil)
	nc, js := testenv.Connect(t, rt.ClientURL())
	profiles := testenv.CountEffects(t, nc, "profile.stored")
	sms := testenv.CountEffects(t, nc, "sms.outbox")

	const n = 50
	publishAll(t, js, "user.registered", "before-", n, signup)
	// Events keep flowing while the file changes.
	_, js2 := testenv.Connect(t, rt.ClientURL())
	var during sync.WaitGroup
	during.Go(func() {
		for i := range n {
			if _, err := js2.Publish(context.Background(), "user.registered", []byte(signup(i)),
				jetstream.WithMsgID("during-"+strconv.Itoa(i))); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
		}
	})
	lc.write(signupFunctions + `
topic "user_registered" {
  subject = "user.registered"
  subscriber "profile_store" {
    function    = "profile_store"
    concurrency = 2
  }
  subscriber "welcome_sms" { function = "welcome_sms" }
}`)
	// Probe until the new subscriber answers: the watch applied the file.
	probes := 0
	testenv.Eventually(t, time.Minute, "the new subscriber to handle an event", func() bool {
		if sms.Distinct() > 0 {
			return true
		}
		if _, err := js.Publish(context.Background(), "user.registered", []byte(signup(probes)),
			jetstream.WithMsgID("probe-"+strconv.Itoa(probes))); err != nil {
			t.Fatal(err)
		}
		probes++
		return false
	})
	publishAll(t, js, "user.registered", "after-", n, signup)
	during.Wait()
	total := 3*n + probes
	testenv.Eventually(t, time.Minute, "every event stored once by profile_store", func() bool { return profiles.Distinct() == total })
	testenv.Eventually(t, time.Minute, "the later events reach welcome_sms", func() bool {
		for i := range n {
			if sms.Count("after-"+strconv.Itoa(i)) == 0 {
				return false
			}
		}
		return true
	})
	if d := profiles.Duplicates(); len(d) > 0 {
		t.Errorf("profile_store handled events more than once: %v", d)
	}
	if d := sms.Duplicates(); len(d) > 0 {
		t.Errorf("welcome_sms handled events more than once: %v", d)
	}
	if got := len(rt.CurrentConfig().Bindings()); got != 2 {
		t.Errorf("bindings after the reload: %d, want 2", got)
	}
}

func TestReloadOfInvalidFileKeepsRunningConfig(t *testing.T) {
	lc := newLiveConfig(t, "examples/signup/welcome_sms", "examples/signup/profile_store")
	lc.write(signupFunctions + `
topic "user_registered" {
  subject = "user.registered"
  subscriber "profile_store" { function = "profile_store" }
}`)
	var log testenv.Buffer
	rt := startLive(t, lc, false, &log)
	nc, js := testenv.Connect(t, rt.ClientURL())
	profiles := testenv.CountEffects(t, nc, "profile.stored")
	sms := testenv.CountEffects(t, nc, "sms.outbox")

	lc.write(signupFunctions + `
topic "user_registered" {
  subject = "user.registered"
  subscriber "profile_store" { function = "profile_store" }
  subscriber "welcome_sms" { function = "welcome_sms"
}`)
	err := rt.Reload()
	var diags *config.DiagnosticsError
	if !errors.As(err, &diags) {
		t.Fatalf("Reload of a broken file: %v, want a *config.DiagnosticsError", err)
	}
	if !strings.Contains(log.String(), "config not reloaded") || !strings.Contains(log.String(), "runtime.hcl:") {
		t.Errorf("the diagnostic was not logged:\n%s", log.String())
	}
	const n = 20
	publishAll(t, js, "user.registered", "broken-", n, signup)
	testenv.Eventually(t, time.Minute, "events to flow under the old config", func() bool { return profiles.Distinct() == n })

	// Fixed: the change applies.
	lc.write(signupFunctions + `
topic "user_registered" {
  subject = "user.registered"
  subscriber "profile_store" { function = "profile_store" }
  subscriber "welcome_sms" { function = "welcome_sms" }
}`)
	if err := rt.Reload(); err != nil {
		t.Fatalf("Reload of the fixed file: %v", err)
	}
	publishAll(t, js, "user.registered", "fixed-", n, signup)
	testenv.Eventually(t, time.Minute, "both subscribers to get the later events", func() bool {
		return profiles.Distinct() == 2*n && sms.Distinct() == n
	})
	if d := profiles.Duplicates(); len(d) > 0 {
		t.Errorf("profile_store handled events more than once: %v", d)
	}
	if !strings.Contains(log.String(), "config reloaded") {
		t.Errorf("the applied reload was not logged:\n%s", log.String())
	}
}

func TestReloadRemovingBindingKeepsItsBacklog(t *testing.T) {
	lc := newLiveConfig(t, "examples/emails/sender", "examples/signup/profile_store")
	const functions = `
function "sender" {
  module  = {{sender}}
  publish = ["email.sent"]
  env     = { SENDER = "test@example.com" }
}
function "profile_store" {
  module  = {{profile_store}}
  publish = ["profile.stored"]
}
topic "user_registered" {
  subject = "user.registered"
  subscriber "profile_store" { function = "profile_store" }
}
`
	lc.write(functions + `
queue "emails" {
  subject     = "email.send"
  function    = "sender"
  concurrency = 2
  rate        = "20/s"
}`)
	rt := startLive(t, lc, false, nil)
	nc, js := testenv.Connect(t, rt.ClientURL())
	sent := testenv.CountEffects(t, nc, "email.sent")
	profiles := testenv.CountEffects(t, nc, "profile.stored")
	const n = 200
	publishAll(t, js, "email.send", "mail-", n, func(i int) string {
		return `{"to":"user` + strconv.Itoa(i) + `@example.com","template":"welcome"}`
	})
	testenv.Eventually(t, time.Minute, "some emails sent", func() bool { return sent.Distinct() >= 5 })

	lc.write(functions)
	if err := rt.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	// Everything the binding pulled finished before Reload returned: what
	// was sent is what was taken off the queue, and the rest waits there.
	handled := sent.Distinct()
	ctx := context.Background()
	cons, err := js.Consumer(ctx, "SLUICE_Q_emails", triggers.BindingConsumerName("emails"))
	if err != nil {
		t.Fatalf("the removed binding's consumer is gone: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "no event of the removed binding in flight", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0
	})
	left := streamMsgs(t, js, "SLUICE_Q_emails")
	if handled == n || left == 0 {
		t.Fatalf("the queue drained before the binding was removed (sent %d); the test proves nothing", handled)
	}
	if int(left)+sent.Distinct() != n {
		t.Errorf("%d left in the queue + %d sent != %d published", left, sent.Distinct(), n)
	}
	// The other binding still runs.
	publishAll(t, js, "user.registered", "signup-", 10, signup)
	testenv.Eventually(t, time.Minute, "profile_store to keep running", func() bool { return profiles.Distinct() == 10 })
	if got := sent.Distinct(); got != handled {
		t.Errorf("the removed binding kept sending: %d, then %d", handled, got)
	}
	if left2 := streamMsgs(t, js, "SLUICE_Q_emails"); left2 != left {
		t.Errorf("the removed binding's backlog changed: %d, then %d", left, left2)
	}

	// Re-added, it resumes where it left off.
	lc.write(functions + `
queue "emails" {
  subject     = "email.send"
  function    = "sender"
  concurrency = 4
}`)
	if err := rt.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	testenv.Eventually(t, time.Minute, "the backlog sent", func() bool { return sent.Distinct() == n })
	if d := sent.Duplicates(); len(d) > 0 {
		t.Errorf("emails sent more than once: %v", d)
	}
}

func TestReloadChangesRetryPolicy(t *testing.T) {
	lc := newLiveConfig(t, "internal/testguests/fail")
	policy := func(attempts int) string {
		return `
function "fail" {
  module = {{fail}}
}
queue "jobs" {
  subject = "jobs.run"
  function = "fail"
  retry {
    max_attempts = ` + strconv.Itoa(attempts) + `
    initial      = "20ms"
    max          = "50ms"
  }
}`
	}
	lc.write(policy(1))
	rt := startLive(t, lc, false, nil)
	_, js := testenv.Connect(t, rt.ClientURL())
	ctx := context.Background()
	dlq := triggers.DeadLetterStreamName("jobs")
	attemptsOf := func(seq uint64) string {
		s, err := js.Stream(ctx, dlq)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		return m.Header.Get(triggers.HdrAttempts)
	}

	if _, err := js.Publish(ctx, "jobs.run", []byte("a"), jetstream.WithMsgID("a")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the first event dead-lettered", func() bool { return streamMsgs(t, js, dlq) == 1 })
	if got := attemptsOf(1); got != "1" {
		t.Fatalf("attempts under max_attempts = 1: %s", got)
	}

	lc.write(policy(3))
	if err := rt.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if _, err := js.Publish(ctx, "jobs.run", []byte("b"), jetstream.WithMsgID("b")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the second event dead-lettered", func() bool { return streamMsgs(t, js, dlq) == 2 })
	if got := attemptsOf(2); got != "3" {
		t.Fatalf("attempts under max_attempts = 3: %s", got)
	}
}

func TestReloadRefusesNATSChange(t *testing.T) {
	lc := newLiveConfig(t, "internal/testguests/noop")
	body := `
function "noop" {
  module = {{noop}}
}
queue "jobs" {
  subject  = "jobs.run"
  function = "noop"
}`
	lc.write(body)
	rt := startLive(t, lc, false, nil)
	lc.write(`
nats {
  sync = "1s"
}` + body)
	err := rt.Reload()
	if !errors.Is(err, runtime.ErrRestartRequired) {
		t.Fatalf("Reload of a nats change: %v, want ErrRestartRequired", err)
	}
	if rt.CurrentConfig().NATS.SyncInterval != 0 {
		t.Error("the nats change was applied")
	}
}
