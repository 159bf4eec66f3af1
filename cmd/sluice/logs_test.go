package main

import (
	"bufio"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/wasmerio/wasmer-go/wasmer"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/internal/testenv"
)

// follower is a `sluice logs` running until the test stops it.
type follower struct {
	out, errOut testenv.Buffer
	cancel      context.CancelFunc
	code        chan int
}

// followLogs starts `sluice logs args…` and returns once it is
// subscribed.
func followLogs(t *testing.T, args ...string) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, code: make(chan int, 1)}
	go func() {
		f.code <- execute(ctx, append([]string{"logs"}, args...), strings.NewReader(""), &f.out, &f.errOut)
	}()
	t.Cleanup(func() { f.stop(t) })
	testenv.Eventually(t, 10*time.Second, "sluice logs to subscribe", func() bool {
		return strings.Contains(f.errOut.String(), "streaming the log lines")
	})
	return f
}

// stop interrupts the command, as Ctrl-C does, and returns its exit code.
func (f *follower) stop(t *testing.T) int {
	t.Helper()
	f.cancel()
	select {
	case c := <-f.code:
		f.code <- c
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("sluice logs did not stop when interrupted")
		return -1
	}
}

// logWAT logs a line holding a terminal escape sequence, then returns
// status (1: fail, and log again at the next attempt).
func logWAT(status int) string {
	return `(module
  (import "sluice" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "charging \1b[31mcard")
  (func (export "handle") (result i32)
    (drop (call $log (i32.const 1) (i32.const 0) (i32.const 18)))
    (i32.const ` + strconv.Itoa(status) + `)))`
}

// TestLogsFollowShowsEventAndAttempt: `sluice logs emails` streams the
// emails sender's log lines tagged with node, function, binding, event id
// and attempt, and nothing of other functions; `--event --json` shows one
// event's line at every attempt; a guest's control characters are printed
// escaped; Ctrl-C ends the stream with exit 0; --follow=false says that
// logs are not stored; completion offers function and binding names.
func TestLogsFollowShowsEventAndAttempt(t *testing.T) {
	testenv.Guest(t, "examples/emails/sender")
	noisy := testenv.WAT(t, logWAT(1))
	cfg := testenv.Config(t, `
function "sender" {
  module  = "examples/emails/sender/sender.wasm"
  env     = { SENDER = "hello@example.com" }
  publish = ["email.sent"]
}
function "noisy" {
  module = "`+noisy+`"
}
queue "emails" {
  subject  = "email.send"
  function = "sender"
}
queue "charges" {
  subject  = "charges.new"
  function = "noisy"
  retry {
    max_attempts = 2
    initial      = "10ms"
    max          = "20ms"
  }
}`)
	rt := testenv.Start(t, cfg, "")
	server := "--server=" + rt.ClientURL()

	emails := followLogs(t, server, "emails")
	charges := followLogs(t, server, "charges")
	oneEvent := followLogs(t, server, "--event", "charge-1", "--json")

	_, js := testenv.Connect(t, rt.ClientURL())
	ctx := context.Background()
	if _, err := js.Publish(ctx, "email.send", []byte(`{"to":"a@example.com","template":"welcome"}`), jetstream.WithMsgID("mail-1")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"charge-1", "charge-2"} {
		if _, err := js.Publish(ctx, "charges.new", []byte(`{}`), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}

	testenv.Eventually(t, 30*time.Second, "the sender's line with its event id and attempt", func() bool {
		return strings.Contains(emails.out.String(), ` sender emails mail-1#1 INFO sending "welcome" email from hello@example.com to a@example.com`)
	})
	testenv.Eventually(t, 30*time.Second, "both attempts of charge-1 in JSON", func() bool {
		return strings.Count(oneEvent.out.String(), "\n") >= 2
	})
	testenv.Eventually(t, 30*time.Second, "both charges at both attempts, escaped", func() bool {
		out := charges.out.String()
		for _, ev := range []string{"charge-1#1", "charge-1#2", "charge-2#1", "charge-2#2"} {
			if !strings.Contains(out, " noisy charges "+ev+` INFO "charging \x1b[31mcard"`) {
				return false
			}
		}
		return true
	})

	if out := emails.out.String(); strings.Contains(out, "noisy") || strings.Contains(out, "charge-") {
		t.Errorf("sluice logs emails showed another binding's lines:\n%s", out)
	}
	if out := charges.out.String(); strings.Contains(out, "\x1b") {
		t.Errorf("a guest's escape sequence reached the terminal raw:\n%q", out)
	}
	sc := bufio.NewScanner(strings.NewReader(oneEvent.out.String()))
	attempts := map[int]bool{}
	for sc.Scan() {
		var r client.LogRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		if r.Event != "charge-1" || r.Function != "noisy" || r.Binding != "charges" || r.Level != "info" ||
			r.Line != "charging \x1b[31mcard" || r.Node == "" || r.Time.IsZero() {
			t.Errorf("--event charge-1 --json printed %+v", r)
		}
		attempts[r.Attempt] = true
	}
	if !attempts[1] || !attempts[2] {
		t.Errorf("attempts seen for charge-1: %v, want 1 and 2", attempts)
	}

	for _, f := range []*follower{emails, charges, oneEvent} {
		if code := f.stop(t); code != 0 {
			t.Errorf("sluice logs interrupted: exit %d, stderr %s", code, f.errOut.String())
		}
	}
	_, out, _ := cli(t, server, "__complete", "logs", "")
	if lines := strings.Split(out, "\n"); !slices.Contains(lines, "emails") || !slices.Contains(lines, "sender") {
		t.Errorf("logs completes functions and bindings:\n%s", out)
	}
	if code, _, errOut := cli(t, server, "logs", "emails", "--follow=false"); code != 2 || !strings.Contains(errOut, "logs are streamed, not stored") {
		t.Errorf("logs --follow=false: exit %d, stderr %s", code, errOut)
	}
}

// TestLogsFromEveryNodeOfACluster: `sluice logs` connected to one node of
// a two-node cluster shows the lines of invocations that ran on either
// node.
func TestLogsFromEveryNodeOfACluster(t *testing.T) {
	wasm, err := wasmer.Wat2Wasm(logWAT(0))
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.StartCluster(t, testenv.ClusterSpec{
		Nodes: 2,
		Body: `
function "noisy" {
  module = "noisy.wasm"
}
queue "charges" {
  subject  = "charges.new"
  function = "noisy"
}`,
		NATS:  "  replicas = 1",
		Files: map[string][]byte{"noisy.wasm": wasm},
		Args:  []string{"--log-level", "warn"},
	})
	f := followLogs(t, "--server="+c.URLs[0], "charges", "--json")
	_, js := testenv.Connect(t, strings.Join(c.URLs, ","))
	ctx := context.Background()
	published := 0
	nodes := map[string]bool{}
	// Which node takes an event is the queue's choice: publish until
	// both have run one.
	testenv.Eventually(t, time.Minute, "log lines from both nodes", func() bool {
		id := "c-" + strconv.Itoa(published)
		if _, err := js.Publish(ctx, "charges.new", []byte(`{}`), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
		published++
		sc := bufio.NewScanner(strings.NewReader(f.out.String()))
		for sc.Scan() {
			var r client.LogRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("--json line %q: %v", sc.Text(), err)
			}
			if r.Function != "noisy" || r.Binding != "charges" || r.Attempt != 1 || !strings.HasPrefix(r.Event, "c-") {
				t.Errorf("line %+v", r)
			}
			nodes[r.Node] = true
		}
		return nodes["n1"] && nodes["n2"]
	})
	t.Logf("lines from both nodes after %d events", published)
}

// TestLogsNeedAnAdmin: the publish role's `sluice logs` is refused by the
// server and says why; an admin's follows.
func TestLogsNeedAnAdmin(t *testing.T) {
	t.Setenv("SLUICE_TEST_APP_PASSWORD", "app-secret")
	testenv.Guest(t, "internal/testguests/noop")
	testenv.Guest(t, "internal/testguests/fail")
	rt := testenv.Start(t, testenv.Config(t, authConfig), "")
	server := "--server=" + rt.ClientURL()
	code, out, errOut := cli(t, server, "--user=app", "--password=app-secret", "logs")
	if code != 2 || !strings.Contains(errOut, `Subscription to "sluice.logs.>"`) || !strings.Contains(errOut, `role "admin"`) || out != "" {
		t.Fatalf("publish role's sluice logs: exit %d\n%s%s", code, out, errOut)
	}
	f := followLogs(t, server, "--user=admin", "--password=admin-secret")
	if code := f.stop(t); code != 0 {
		t.Errorf("admin's sluice logs: exit %d, %s", code, f.errOut.String())
	}
}
