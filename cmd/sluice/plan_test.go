package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
)

const planRunning = `
function "noop" { module = "MODULE" }
queue "emails" {
  subject  = "emails.send"
  function = "noop"
  retry { max_attempts = 5 }
}
topic "signup" {
  subject = "user.registered"
  subscriber "crm_sync" { function = "noop" }
  subscriber "welcome"  { function = "noop" }
}
`

const planNextFile = `
function "noop" { module = "MODULE" }
queue "emails" {
  subject  = "emails.send"
  function = "noop"
  retry { max_attempts = 8 }
}
topic "signup" {
  subject = "user.registered"
  subscriber "welcome" { function = "noop" }
}
`

// TestPlanShowsPendingEventsOfARemovedSubscriber: a subscriber with a
// backlog (its consumer paused) is removed and another binding's retry
// policy changes; the plan names both, with the exact backlog, and applies
// nothing.
func TestPlanShowsPendingEventsOfARemovedSubscriber(t *testing.T) {
	module := testenv.Guest(t, "internal/testguests/noop")
	rt := testenv.Start(t, testenv.Config(t, strings.ReplaceAll(planRunning, "MODULE", module)), "")
	server := "--server=" + rt.ClientURL()
	_, js := testenv.Connect(t, rt.ClientURL())
	ctx := context.Background()

	if _, err := js.PauseConsumer(ctx, "SLUICE_T_signup", "sluice_signup__crm_sync", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	const events = 1204
	for i := 0; i < events; i++ {
		if _, err := js.Publish(ctx, "user.registered", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the paused subscriber's backlog and the other's progress", func() bool {
		crm, err1 := js.Consumer(ctx, "SLUICE_T_signup", "sluice_signup__crm_sync")
		welcome, err2 := js.Consumer(ctx, "SLUICE_T_signup", "sluice_signup__welcome")
		if err1 != nil || err2 != nil {
			return false
		}
		c, w := crm.CachedInfo(), welcome.CachedInfo()
		return c.NumPending == events && c.NumAckPending == 0 && w.NumPending == 0 && w.NumAckPending == 0
	})
	kv, err := js.KeyValue(ctx, runtime.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(ctx, runtime.ConfigKey)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	same := filepath.Join(dir, "same.hcl")
	next := filepath.Join(dir, "next.hcl")
	if err := os.WriteFile(same, []byte(strings.ReplaceAll(planRunning, "MODULE", module)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(next, []byte(strings.ReplaceAll(planNextFile, "MODULE", module)), 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := cli(t, server, "plan", "-c", same)
	if code != 0 || strings.TrimSpace(out) != "no changes" {
		t.Fatalf("plan of the running file: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = cli(t, server, "plan", "-c", next)
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"topic signup: subscriber crm_sync removed: 1,204 pending events will no longer be delivered to it\n",
		"queue emails: retry max_attempts 5 -> 8\n",
		"2 changes; nothing was applied\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = cli(t, server, "plan", "-c", next, "--json")
	if code != 0 {
		t.Fatalf("plan --json: exit %d\n%s%s", code, out, errOut)
	}
	var plan struct {
		Changes []struct {
			Kind, Name, Op, Field, From, To string
			Pending                         *uint64
		}
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(plan.Changes) != 2 {
		t.Fatalf("changes: %s", out)
	}
	for _, c := range plan.Changes {
		switch {
		case c.Name == "signup/crm_sync" && c.Op == "remove":
			if c.Pending == nil || *c.Pending != events {
				t.Errorf("removed subscriber's pending: %v", c.Pending)
			}
		case c.Name == "emails" && c.Field == "retry max_attempts" && c.From == "5" && c.To == "8":
		default:
			t.Errorf("unexpected change %+v", c)
		}
	}

	// A file with errors: diagnostics, exit 1.
	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte(`queue "q" { subject = "a" }`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := cli(t, server, "plan", "-c", bad); code != 1 || !strings.Contains(errOut, "bad.hcl:1") {
		t.Fatalf("plan of a bad file: exit %d, %s", code, errOut)
	}

	// --detailed-exitcode: 0 no changes, 2 changes, 1 an error (a
	// connection's too).
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{server, "plan", "-c", same, "--detailed-exitcode"}, 0},
		{[]string{server, "plan", "-c", next, "--detailed-exitcode"}, 2},
		{[]string{server, "plan", "-c", bad, "--detailed-exitcode"}, 1},
		{[]string{"--server=nats://127.0.0.1:1", "plan", "-c", same, "--detailed-exitcode"}, 1},
	} {
		if code, _, errOut := cli(t, c.args...); code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, errOut)
		}
	}

	// Nothing was applied.
	crm, err := js.Consumer(ctx, "SLUICE_T_signup", "sluice_signup__crm_sync")
	if err != nil {
		t.Fatalf("the removed subscriber's consumer is gone: %v", err)
	}
	if info := crm.CachedInfo(); info.NumPending != events || info.Config.Metadata["sluice.max_attempts"] != "5" {
		t.Errorf("crm_sync changed: pending %d", info.NumPending)
	}
	emails, err := js.Consumer(ctx, "SLUICE_Q_emails", "sluice_emails")
	if err != nil {
		t.Fatal(err)
	}
	if got := emails.CachedInfo().Config.Metadata["sluice.max_attempts"]; got != "5" {
		t.Errorf("emails max_attempts is now %s", got)
	}
	after, err := kv.Get(ctx, runtime.ConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision() != before.Revision() {
		t.Errorf("the recorded config changed: revision %d -> %d", before.Revision(), after.Revision())
	}
}
