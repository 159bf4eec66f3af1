package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-run/sluice/internal/testenv"
)

const conventionsConfig = `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
function "fail" { module = "internal/testguests/fail/fail.wasm" }
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}
queue "bad" {
  subject  = "bad.send"
  function = "fail"
  retry { max_attempts = 1 }
}
`

// TestCLIConventions: mutating commands report what changed, in JSON with
// --json; publish --wait keeps progress off stdout; dlq purge --all asks
// first, and refuses without a terminal unless --yes; completion offers
// the running runtime's binding and function names; help names flags
// plainly.
func TestCLIConventions(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	testenv.Guest(t, "internal/testguests/fail")
	rt := testenv.Start(t, testenv.Config(t, conventionsConfig), "")
	server := "--server=" + rt.ClientURL()

	t.Run("pause and resume --json", func(t *testing.T) {
		code, out, errOut := cli(t, server, "pause", "ok", "--for", "1h", "--json")
		var p struct {
			Binding string
			Paused  bool
			Until   *time.Time
		}
		if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.Binding != "ok" || !p.Paused || p.Until == nil || time.Until(*p.Until) < 50*time.Minute {
			t.Fatalf("pause --json: exit %d %s %s", code, out, errOut)
		}
		code, out, _ = cli(t, server, "resume", "ok", "--json")
		p = struct {
			Binding string
			Paused  bool
			Until   *time.Time
		}{}
		if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.Binding != "ok" || p.Paused {
			t.Fatalf("resume --json: exit %d %s", code, out)
		}
		if code, out, _ := cli(t, server, "pause", "ok"); code != 0 || !strings.Contains(out, "paused ok until `sluice resume ok`") {
			t.Errorf("pause says %q", out)
		}
		if code, _, _ := cli(t, server, "resume", "ok"); code != 0 {
			t.Errorf("resume: exit %d", code)
		}
	})

	t.Run("publish --wait progress goes to stderr", func(t *testing.T) {
		code, out, errOut := cli(t, server, "publish", "ok.send", "{}", "--wait")
		if code != 0 || strings.Contains(out, "processing") || !strings.Contains(errOut, "processing…") || !strings.Contains(out, "succeeded") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})

	t.Run("dlq purge --all asks, and refuses without a terminal", func(t *testing.T) {
		for range 2 {
			if code, _, errOut := cli(t, server, "publish", "bad.send", "{}", "--wait"); code != 1 {
				t.Fatalf("publish to a failing binding: exit %d %s", code, errOut)
			}
		}
		code, _, errOut := cli(t, server, "dlq", "purge", "bad", "--all")
		if code != 2 || !strings.Contains(errOut, "not a terminal") || !strings.Contains(errOut, "--yes") {
			t.Fatalf("purge --all without a terminal: exit %d %s", code, errOut)
		}
		if _, out, _ := cli(t, server, "dlq", "ls", "bad", "--json"); strings.Count(out, `"seq"`) != 2 {
			t.Fatalf("dead letters were deleted without confirmation:\n%s", out)
		}
		code, out, errOut := cli(t, server, "dlq", "purge", "bad", "--all", "--yes", "--json")
		var purged struct {
			Binding string
			Purged  []string
		}
		if code != 0 || json.Unmarshal([]byte(out), &purged) != nil || purged.Binding != "bad" || len(purged.Purged) != 2 {
			t.Fatalf("purge --all --yes --json: exit %d %s %s", code, out, errOut)
		}
	})

	t.Run("completion offers running names", func(t *testing.T) {
		_, out, _ := cli(t, server, "__complete", "pause", "")
		if lines := strings.Split(out, "\n"); !slices.Contains(lines, "ok") || !slices.Contains(lines, "bad") {
			t.Errorf("binding completion:\n%s", out)
		}
		_, out, _ = cli(t, server, "__complete", "rollback", "")
		if lines := strings.Split(out, "\n"); !slices.Contains(lines, "noop") || !slices.Contains(lines, "fail") {
			t.Errorf("function completion:\n%s", out)
		}
	})

	t.Run("pause --help names its flag", func(t *testing.T) {
		_, out, _ := cli(t, "pause", "--help")
		if !strings.Contains(out, "--for duration") {
			t.Errorf("pause --help:\n%s", out)
		}
	})
}

// TestValidateJSON: validate --json reports the counts of a valid file,
// and every diagnostic of an invalid one with its position (exit 1).
func TestValidateJSON(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.hcl")
	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(good, []byte(`function "f" { module = "f.wasm" }
queue "q" {
  subject  = "q.in"
  function = "f"
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`queue "q" {
  subject  = "q.in"
  function = "nope"
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	type result struct {
		OK                  bool
		Functions, Bindings int
		Diagnostics         []struct {
			Severity, Summary, File string
			Line, Column            int
		}
	}
	code, out, _ := cli(t, "validate", "-c", good, "--json")
	var r result
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || !r.OK || r.Functions != 1 || r.Bindings != 1 || len(r.Diagnostics) != 0 {
		t.Fatalf("valid: exit %d %s", code, out)
	}
	code, out, errOut := cli(t, "validate", "-c", bad, "--json")
	r = result{}
	if code != 1 || errOut != "" || json.Unmarshal([]byte(out), &r) != nil || r.OK || len(r.Diagnostics) == 0 {
		t.Fatalf("invalid: exit %d %s %s", code, out, errOut)
	}
	if d := r.Diagnostics[0]; d.Severity != "error" || d.File != bad || d.Line != 3 || d.Column == 0 {
		t.Errorf("diagnostic %+v, want an error at %s:3", d, bad)
	}
}
