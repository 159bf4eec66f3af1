package examples_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/testenv"
	sluiceruntime "github.com/sluice-run/sluice/runtime"
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

// TestAssemblyScriptWASIShimSetup: the standard @assemblyscript/wasi-shim
// setup (asconfig.json extending the shim's) works when sluice builds it:
// console.log reaches the log, and an abort fails the event with the
// shim's message in the error. Built by hand with the shim's own flags, the
// module exports _start, and the runtime refuses it with a message that
// names the flag to change.
func TestAssemblyScriptWASIShimSetup(t *testing.T) {
	testenv.RequireToolchain(t, guestbuild.AssemblyScript)
	out, err := exec.Command("npm", "root", "-g").Output()
	if err != nil {
		t.Fatalf("npm root -g: %v", err)
	}
	shim := filepath.Join(strings.TrimSpace(string(out)), "@assemblyscript", "wasi-shim", "asconfig.json")
	if _, err := os.Stat(shim); err != nil {
		if os.Getenv(testenv.RequireToolchainEnv) != "" {
			t.Fatalf("wasi-shim: %v (npm install -g @assemblyscript/wasi-shim)", err)
		}
		t.Skipf("wasi-shim: %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "shimmed")
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The standard setup: the shim in the function's node_modules (here a
	// link to the global install), and asconfig.json extending it by a
	// relative path (asc 0.28 ignores an absolute lib path).
	if err := os.MkdirAll(filepath.Join(src, "node_modules", "@assemblyscript"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(shim), filepath.Join(src, "node_modules", "@assemblyscript", "wasi-shim")); err != nil {
		t.Fatal(err)
	}
	write("asconfig.json", `{"extends": "./node_modules/@assemblyscript/wasi-shim/asconfig.json"}`)
	write("assembly/index.ts", `import { Event, Outcome, ok, run } from "sluice";
function h(e: Event): Outcome {
  console.log("shim says hi");
  if (e.dataString() == "boom") throw new Error("boom from the guest");
  return ok("shimmed " + e.dataString());
}
export function handle(): i32 { return run(h); }
`)
	hcl := `
function "shimmed" { source = "shimmed" }
queue "shim" {
  subject  = "shim"
  function = "shimmed"
  retry { max_attempts = 1 }
}
`
	cfg, err := config.Parse(filepath.Join(dir, "runtime.hcl"), []byte(hcl))
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	_, js := testenv.Connect(t, rt.ClientURL())
	ctx := context.Background()
	for id, data := range map[string]string{"shim-1": "x", "shim-2": "boom"} {
		if _, err := js.Publish(ctx, "shim", []byte(data), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	var st triggers.Status
	testenv.Eventually(t, 30*time.Second, "the event to succeed", func() bool {
		st = statusOf(t, js, "shim-1", "shim")
		return st.State == triggers.StateSucceeded
	})
	if string(st.Result) != "shimmed x" {
		t.Errorf("result %q, want %q", st.Result, "shimmed x")
	}
	testenv.Eventually(t, 30*time.Second, "the aborting event to be dead-lettered", func() bool {
		st = statusOf(t, js, "shim-2", "shim")
		return st.State == triggers.StateDeadLettered
	})
	if !strings.Contains(st.Error, "guest exited with code 255") || !strings.Contains(st.Error, "boom from the guest") {
		t.Errorf("error %q, want the exit and the guest's abort message", st.Error)
	}

	// By hand, with the shim's flags only: a command module.
	wasm := filepath.Join(dir, "by-hand.wasm")
	asc, err := exec.LookPath("asc")
	if err != nil {
		t.Fatal(err)
	}
	write("assembly/index.ts", `export function handle(): i32 { console.log("hi"); return 0; }
`)
	cmd := exec.Command(asc, "assembly/index.ts", "-o", wasm)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("asc: %v\n%s", err, out)
	}
	cfg, err = config.Parse(filepath.Join(dir, "by-hand.hcl"), []byte(`
function "byhand" { module = "by-hand.wasm" }
queue "byhand" {
  subject  = "byhand"
  function = "byhand"
}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sluiceruntime.Start(ctx, testenv.RuntimeOptions(t, cfg, ""))
	if err == nil {
		t.Fatal("the runtime started with a command module")
	}
	for _, want := range []string{"by-hand.wasm", "_start", "--exportStart _initialize"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestWatchSourcesSwapsRebuiltFunctions: with WatchSources running, saving
// a change to a C function's source makes later events run the new
// version, and a syntax error is reported with the compiler's message
// while the runtime keeps running the last good version.
func TestWatchSourcesSwapsRebuiltFunctions(t *testing.T) {
	testenv.RequireToolchain(t, guestbuild.C)
	dir := t.TempDir()
	src := filepath.Join(dir, "greeter", "greeter.c")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	version := func(v string) string {
		return `#include "sluice.h"
static int h(const sluice_event *e) { return sluice_ok_str("` + v + `"); }
SLUICE_HANDLER(h)
`
	}
	var mtime time.Time
	save := func(code string) {
		t.Helper()
		// Each save is at least a second later than the last (the build
		// compares modification times) and never in the future, which
		// would make the module built at start stale.
		mtime = mtime.Add(time.Second)
		if now := time.Now(); now.After(mtime) {
			mtime = now
		}
		if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(src, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	save(version("v1"))
	cfg, err := config.Parse(filepath.Join(dir, "runtime.hcl"), []byte(`
function "greeter" { source = "greeter" }
queue "greet" {
  subject  = "greet"
  function = "greeter"
}
`))
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	reports := make(chan error, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rt.WatchSources(ctx, 100*time.Millisecond, func(_ string, err error) { reports <- err })
	}()
	t.Cleanup(func() { cancel(); <-done })

	_, js := testenv.Connect(t, rt.ClientURL())
	n := 0
	resultOf := func() string {
		t.Helper()
		n++
		id := fmt.Sprintf("greet-%d", n)
		if _, err := js.Publish(context.Background(), "greet", nil, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
		var st triggers.Status
		testenv.Eventually(t, 30*time.Second, "event "+id+" to succeed", func() bool {
			st = statusOf(t, js, id, "greet")
			return st.State == triggers.StateSucceeded
		})
		return string(st.Result)
	}
	wait := func() error {
		t.Helper()
		select {
		case err := <-reports:
			return err
		case <-time.After(60 * time.Second):
			t.Fatal("no rebuild reported")
		}
		return nil
	}
	if got := resultOf(); got != "v1" {
		t.Fatalf("result %q, want v1", got)
	}
	save(version("v2"))
	if err := wait(); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if got := resultOf(); got != "v2" {
		t.Fatalf("after the change: result %q, want v2", got)
	}
	save("static int h( {")
	err = wait()
	if err == nil || !strings.Contains(err.Error(), "greeter.c:1:") {
		t.Fatalf("syntax error reported as %v, want the compiler's message naming greeter.c:1", err)
	}
	if got := resultOf(); got != "v2" {
		t.Fatalf("after a syntax error: result %q, want v2 still", got)
	}
}
