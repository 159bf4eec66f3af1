package examples_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// TestEmailsInEveryLanguage runs the emails example written in each SDK's
// language (examples/emails-<lang>), built by the runtime from its source,
// and checks the same promises as the Go one: the email.sent report with
// SENDER from env, the result, and a permanent failure for a request
// without "to".
func TestEmailsInEveryLanguage(t *testing.T) {
	for _, lang := range []guestbuild.Language{guestbuild.C, guestbuild.Rust, guestbuild.AssemblyScript} {
		t.Run(string(lang), func(t *testing.T) {
			testenv.RequireToolchain(t, lang)
			src := filepath.Join(testenv.RepoRoot(), "examples", "emails-"+string(lang))
			hcl := fmt.Sprintf(`
function "sender" {
  source  = %q
  module  = %q
  env     = { SENDER = "hello@example.com" }
  publish = ["email.sent"]
}
queue "emails" {
  subject  = "email.send"
  function = "sender"
  retry {
    max_attempts = 3
    initial      = "100ms"
    max          = "1s"
  }
}
`, src, filepath.Join(t.TempDir(), "sender.wasm"))
			cfg, err := config.Parse(filepath.Join(t.TempDir(), "runtime.hcl"), []byte(hcl))
			if err != nil {
				t.Fatal(err)
			}
			rt := testenv.Start(t, cfg, "")
			nc, js := testenv.Connect(t, rt.ClientURL())
			sent := make(chan *nats.Msg, 4)
			if _, err := nc.ChanSubscribe("email.sent", sent); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := js.Publish(ctx, "email.send", []byte(`{"to":"bob@example.com","template":"welcome","id":"req-1"}`), jetstream.WithMsgID("mail-1")); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-sent:
				var got map[string]string
				if err := json.Unmarshal(m.Data, &got); err != nil {
					t.Fatalf("email.sent is not JSON: %v: %s", err, m.Data)
				}
				want := map[string]string{"id": "mail-1", "to": "bob@example.com", "from": "hello@example.com", "template": "welcome", "request_id": "req-1"}
				for k, v := range want {
					if got[k] != v {
						t.Errorf("email.sent %s = %q, want %q (%s)", k, got[k], v, m.Data)
					}
				}
			case <-time.After(60 * time.Second):
				t.Fatal("no email.sent report")
			}
			var st triggers.Status
			testenv.Eventually(t, 30*time.Second, "the email to succeed", func() bool {
				st = statusOf(t, js, "mail-1", "emails")
				return st.State == triggers.StateSucceeded
			})
			if string(st.Result) != "sent to bob@example.com" {
				t.Errorf("result %q, want %q", st.Result, "sent to bob@example.com")
			}

			if _, err := js.Publish(ctx, "email.send", []byte(`{"template":"welcome"}`), jetstream.WithMsgID("mail-2")); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, "the request without to to be dead-lettered", func() bool {
				st = statusOf(t, js, "mail-2", "emails")
				return st.State == triggers.StateDeadLettered
			})
			if st.Attempts != 1 || st.Error != "invalid email request: missing to" {
				t.Errorf("dead-lettered after %d attempts with %q, want 1 attempt with %q", st.Attempts, st.Error, "invalid email request: missing to")
			}
		})
	}
}

// TestWASIExitCarriesStderr: a C guest that prints why on stderr and calls
// exit fails with an error naming the exit code and that line, in the
// event's status, not only in the log.
func TestWASIExitCarriesStderr(t *testing.T) {
	testenv.RequireToolchain(t, guestbuild.C)
	dir := t.TempDir()
	src := filepath.Join(dir, "quitter")
	code := `#include "sluice.h"
static int quit(const sluice_event *e) {
  fprintf(stderr, "starting\n");
  fprintf(stderr, "config missing: API_KEY\n");
  exit(3);
}
SLUICE_HANDLER(quit)
`
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "quitter.c"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	hcl := `
function "quitter" { source = "quitter" }
queue "quit" {
  subject  = "quit"
  function = "quitter"
  retry { max_attempts = 1 }
}
`
	cfg, err := config.Parse(filepath.Join(dir, "runtime.hcl"), []byte(hcl))
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	_, js := testenv.Connect(t, rt.ClientURL())
	if _, err := js.Publish(context.Background(), "quit", []byte("x"), jetstream.WithMsgID("quit-1")); err != nil {
		t.Fatal(err)
	}
	var st triggers.Status
	testenv.Eventually(t, 30*time.Second, "the event to be dead-lettered", func() bool {
		st = statusOf(t, js, "quit-1", "quit")
		return st.State == triggers.StateDeadLettered
	})
	if want := "guest exited with code 3: config missing: API_KEY"; !strings.Contains(st.Error, want) {
		t.Errorf("error %q, want it to contain %q", st.Error, want)
	}
}
