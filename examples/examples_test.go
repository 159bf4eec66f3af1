// Package examples_test runs every example the way runtime.hcl wires it:
// it boots the runtime on the repo's own config, publishes one event per
// example and checks the effect the example promises.
package examples_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

func TestExamples(t *testing.T) {
	cfg, err := config.Load(filepath.Join(testenv.RepoRoot(), "runtime.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	effects := make(chan *nats.Msg, 64)
	for _, subj := range []string{"sms.outbox", "profile.stored", "email.sent", "flaky.done"} {
		if _, err := nc.ChanSubscribe(subj, effects); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	publish := func(subject, id, data string) {
		t.Helper()
		if _, err := js.Publish(ctx, subject, []byte(data), jetstream.WithMsgID(id)); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}
	// expect waits for the effects listed (subject -> event id).
	expect := func(want map[string]string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for len(want) > 0 {
			select {
			case m := <-effects:
				var v struct{ ID string }
				_ = json.Unmarshal(m.Data, &v)
				if want[m.Subject] == v.ID {
					delete(want, m.Subject)
				}
			case <-timeout:
				t.Fatalf("effects not seen: %v", want)
			}
		}
	}

	t.Run("signup", func(t *testing.T) {
		publish("user.registered", "signup-1", `{"email":"ada@example.com"}`)
		// welcome_email's effect is an email.send event, which the emails
		// queue turns into email.sent: the chain works end to end.
		expect(map[string]string{"sms.outbox": "signup-1", "profile.stored": "signup-1"})
		testenv.Eventually(t, 30*time.Second, "the welcome email to be sent", func() bool {
			return statusOf(t, js, "signup-1", "user_registered/welcome_email").State == triggers.StateSucceeded
		})
	})
	t.Run("emails", func(t *testing.T) {
		publish("email.send", "mail-1", `{"to":"bob@example.com","template":"welcome"}`)
		expect(map[string]string{"email.sent": "mail-1"})
	})
	t.Run("flaky", func(t *testing.T) {
		publish("jobs.flaky", "flaky-1", `{}`)
		expect(map[string]string{"flaky.done": "flaky-1"})
		var st triggers.Status
		testenv.Eventually(t, 30*time.Second, "flaky to succeed", func() bool {
			st = statusOf(t, js, "flaky-1", "flaky")
			return st.State == triggers.StateSucceeded
		})
		if st.Attempts != 3 {
			t.Errorf("flaky succeeded on attempt %d, want 3", st.Attempts)
		}
		publish("payments.charge", "pay-1", `{"amount":1}`)
		testenv.Eventually(t, 30*time.Second, "the payment to be dead-lettered", func() bool {
			return statusOf(t, js, "pay-1", "payments").State == triggers.StateDeadLettered
		})
	})
}

func statusOf(t *testing.T, js jetstream.JetStream, id, binding string) triggers.Status {
	t.Helper()
	st, err := triggers.NewStatusStore(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := st.Get(context.Background(), id, binding)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
