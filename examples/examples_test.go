// Package examples_test runs every example the way runtime.hcl wires it:
// it boots the runtime on the repo's own config, publishes one event per
// example and checks the effect the example promises, both with the
// embedded NATS server and as a client of a separate nats-server.
package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// TestExamples runs the examples on runtime.hcl as it is: sluice embeds
// its NATS server.
func TestExamples(t *testing.T) {
	cfg, err := config.Load(filepath.Join(testenv.RepoRoot(), "runtime.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	checkExamples(t, rt.ClientURL())
}

// TestExamplesAgainstExternalNATS runs the same examples with sluice as a
// client of a nats-server started as a process of its own: runtime.hcl
// with only its nats block replaced by a url, so the examples must work
// unchanged on a NATS deployment that sluice does not run.
func TestExamplesAgainstExternalNATS(t *testing.T) {
	url := testenv.StartNATSServer(t)
	root := testenv.RepoRoot()
	src, err := os.ReadFile(filepath.Join(root, "runtime.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	src, err = replaceNATSBlock(src, fmt.Sprintf("nats { url = %q }", url))
	if err != nil {
		t.Fatal(err)
	}
	// Parsed as a file of its own in the repo root: relative module and
	// source paths resolve as they do for runtime.hcl, and the config's
	// Path does not name runtime.hcl, whose embedded-server nats block a
	// reload would read back.
	cfg, err := config.Parse(filepath.Join(root, "runtime-external-nats.hcl"), src)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.URL != url {
		t.Fatalf("nats.url = %q, want %q", cfg.NATS.URL, url)
	}
	rt := testenv.Start(t, cfg, "")
	if got := rt.ClientURL(); got != url {
		t.Fatalf("runtime's client URL = %q, want the external server's %q", got, url)
	}

	// The runtime really is the external server's client: the streams and
	// durable consumers it lays out at start are there, seen through a
	// connection of the test's own to that server.
	_, js := testenv.Connect(t, url)
	ctx := context.Background()
	for _, b := range cfg.Bindings() {
		stream, err := js.Stream(ctx, triggers.StreamName(b))
		if err != nil {
			t.Fatalf("binding %s: stream %s on the external server: %v", b.Name, triggers.StreamName(b), err)
		}
		if _, err := stream.Consumer(ctx, triggers.ConsumerName(b)); err != nil {
			t.Fatalf("binding %s: consumer %s on the external server: %v", b.Name, triggers.ConsumerName(b), err)
		}
	}

	checkExamples(t, url)
}

// replaceNATSBlock returns src with its one top-level nats block, from the
// block type to the closing brace, replaced by block; every other byte is
// kept as it is.
func replaceNATSBlock(src []byte, block string) ([]byte, error) {
	file, diags := hclsyntax.ParseConfig(src, "runtime.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("parse runtime.hcl: %w", diags)
	}
	var found []*hclsyntax.Block
	for _, b := range file.Body.(*hclsyntax.Body).Blocks {
		if b.Type == "nats" {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("runtime.hcl has %d nats blocks, want 1", len(found))
	}
	r := found[0].Range()
	return bytes.Join([][]byte{src[:r.Start.Byte], []byte(block), src[r.End.Byte:]}, nil), nil
}

// checkExamples publishes one event per example to the broker at url and
// waits for the effects each example promises.
func checkExamples(t *testing.T, url string) {
	t.Helper()
	nc, js := testenv.Connect(t, url)
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
