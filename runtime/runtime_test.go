package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
)

func publishAll(t *testing.T, js jetstream.JetStream, subject, prefix string, n int, payload func(i int) string) {
	t.Helper()
	for i := range n {
		if _, err := js.PublishAsync(subject, []byte(payload(i)), jetstream.WithMsgID(prefix+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("publishes not acknowledged")
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestQueueWithConcurrencyHandlesEachEventOnce(t *testing.T) {
	testenv.Guest(t, "examples/emails/sender")
	cfg := testenv.Config(t, `
function "sender" {
  module  = "examples/emails/sender/sender.wasm"
  publish = ["email.sent"]
  env     = { SENDER = "test@example.com" }
}
queue "emails" {
  subject     = "email.send"
  function    = "sender"
  concurrency = 4
}`)
	rt := testenv.Start(t, cfg, "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	sent := testenv.CountEffects(t, nc, "email.sent")
	const n = 1000
	publishAll(t, js, "email.send", "mail-", n, func(i int) string {
		return `{"to":"user` + strconv.Itoa(i) + `@example.com","template":"welcome"}`
	})
	testenv.Eventually(t, 2*time.Minute, "1000 emails sent", func() bool { return sent.Distinct() == n })
	testenv.Eventually(t, 30*time.Second, "the queue to drain", func() bool { return streamMsgs(t, js, "SLUICE_Q_emails") == 0 })
	if d := sent.Duplicates(); len(d) > 0 {
		t.Fatalf("events handled more than once: %v", d)
	}
}

func TestTopicSubscribersAreIndependent(t *testing.T) {
	testenv.Guest(t, "examples/signup/welcome_sms")
	testenv.Guest(t, "examples/signup/profile_store")
	testenv.Guest(t, "examples/flaky/always_fails")
	cfg := testenv.Config(t, `
function "welcome_sms" {
  module  = "examples/signup/welcome_sms/welcome_sms.wasm"
  publish = ["sms.outbox"]
}
function "profile_store" {
  module  = "examples/signup/profile_store/profile_store.wasm"
  publish = ["profile.stored"]
}
function "always_fails" { module = "examples/flaky/always_fails/always_fails.wasm" }
topic "user_registered" {
  subject = "user.registered"
  subscriber "sms" { function = "welcome_sms" }
  subscriber "profile" { function = "profile_store" }
  subscriber "broken" {
    function = "always_fails"
    retry {
      max_attempts = 2
      initial      = "10ms"
      max          = "20ms"
    }
  }
}`)
	rt := testenv.Start(t, cfg, "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	sms := testenv.CountEffects(t, nc, "sms.outbox")
	profiles := testenv.CountEffects(t, nc, "profile.stored")
	const n = 500
	publishAll(t, js, "user.registered", "user-", n, func(i int) string {
		return `{"email":"u` + strconv.Itoa(i) + `@example.com"}`
	})
	testenv.Eventually(t, 2*time.Minute, "every subscriber to finish", func() bool {
		return sms.Distinct() == n && profiles.Distinct() == n &&
			streamMsgs(t, js, "SLUICE_DLQ_user_registered__broken") == n
	})
	// Settled: nothing pending at any subscriber.
	testenv.Eventually(t, 30*time.Second, "no pending events", func() bool {
		for _, c := range []string{"sluice_user_registered__sms", "sluice_user_registered__profile", "sluice_user_registered__broken"} {
			cons, err := js.Consumer(context.Background(), "SLUICE_T_user_registered", c)
			if err != nil {
				return false
			}
			info, err := cons.Info(context.Background())
			if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
		}
		return true
	})
	if d := append(sms.Duplicates(), profiles.Duplicates()...); len(d) > 0 {
		t.Fatalf("events handled more than once: %v", d)
	}
}

func TestBrokenModuleStopsStartNamingFunctionAndFile(t *testing.T) {
	dir := t.TempDir()
	bogus := filepath.Join(dir, "bogus.wasm")
	if err := os.WriteFile(bogus, []byte("this is not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testenv.Config(t, `
function "bogus" { module = "`+bogus+`" }
queue "q" {
  subject  = "q.in"
  function = "bogus"
}`)
	data := t.TempDir()
	_, err := runtime.Start(context.Background(), runtime.Options{Config: cfg, DataDir: data, Listen: "127.0.0.1:-1", CacheDir: testenv.CacheDir(t)})
	if err == nil {
		t.Fatal("runtime started with a non-wasm module")
	}
	for _, want := range []string{"function bogus", bogus, "not a WebAssembly binary"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Nothing was laid out: the broker never saw the bad config's queue.
	testenv.Guest(t, "internal/testguests/noop")
	good := testenv.Config(t, `function "noop" { module = "internal/testguests/noop/noop.wasm" }`)
	rt := testenv.Start(t, good, data)
	_, js := testenv.Connect(t, rt.ClientURL())
	if _, err := js.Stream(context.Background(), "SLUICE_Q_q"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream of the refused config: %v, want not found", err)
	}
}

func jetstreamMsgID(id string) jetstream.PublishOpt { return jetstream.WithMsgID(id) }
