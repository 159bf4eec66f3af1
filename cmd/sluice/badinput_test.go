package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/testenv"
)

// TestFmtRefusesBrokenFile: fmt -w on a file with syntax errors exits 1,
// says where the error is and leaves the file untouched; fmt and --check
// refuse it too.
func TestFmtRefusesBrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.hcl")
	src := "function \"f\" {\n  module =   \"f.wasm\"\n  timeout = \n}\nqueue \"q\" {{\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	for _, args := range [][]string{{"fmt", "-w", path}, {"fmt", path}, {"fmt", "--check", path}} {
		code, out, errOut := cli(t, args...)
		if code != 1 || !strings.Contains(errOut, "runtime.hcl:3") || out != "" {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %s", args, code, out, errOut)
		}
	}
	after, err := os.ReadFile(path)
	if err != nil || string(after) != src {
		t.Fatalf("the file changed: %q %v", after, err)
	}
	if info, _ := os.Stat(path); !info.ModTime().Equal(before.ModTime()) {
		t.Errorf("the file was rewritten")
	}
}

// TestPauseForMustBePositive: pause --for 0s or a negative duration is a
// usage error (exit 2) that says what to pass, checked before connecting.
func TestPauseForMustBePositive(t *testing.T) {
	for _, d := range []string{"0s", "-5m"} {
		code, _, errOut := cli(t, "--server=nats://127.0.0.1:1", "pause", "q", "--for", d)
		if code != 2 || !strings.Contains(errOut, "positive duration") || strings.Contains(errOut, "connect") {
			t.Errorf("pause --for %s: exit %d %s", d, code, errOut)
		}
	}
}

// TestPublishWaitReturnsTheLargestResults: results of the largest
// max_result_size, from two subscribers at once (more than one message of
// the status API can hold), reach publish --wait and status whole.
func TestPublishWaitReturnsTheLargestResults(t *testing.T) {
	testenv.Guest(t, "internal/testguests/echo")
	rt := testenv.Start(t, testenv.Config(t, `
function "echo" {
  module          = "internal/testguests/echo/echo.wasm"
  max_result_size = "512KiB"
}
topic "big" {
  subject = "big.result"
  subscriber "a" { function = "echo" }
  subscriber "b" { function = "echo" }
}`), "")
	payload := strings.Repeat("r", config.MaxResultSize)
	code, out, errOut := cli(t, "--server="+rt.ClientURL(), "publish", "big.result", payload, "--wait", "--json", "--timeout=60s")
	if code != 0 {
		t.Fatalf("publish --wait: exit %d\n%.300s\n%s", code, out, errOut)
	}
	p := decode(t, out)
	if len(p.Outcomes) != 2 {
		t.Fatalf("outcomes: %.300s", out)
	}
	for _, o := range p.Outcomes {
		if o.State != "succeeded" || len(o.Result) != len(payload) {
			t.Errorf("%s: %s with a result of %d bytes", o.Binding, o.State, len(o.Result))
		}
	}
	code, out, errOut = cli(t, "--server="+rt.ClientURL(), "status", p.ID, "--json")
	if code != 0 {
		t.Fatalf("status: exit %d %s", code, errOut)
	}
	s := decode(t, out)
	if len(s.Outcomes) != 2 || len(s.Outcomes[0].Result) != len(payload) || len(s.Outcomes[1].Result) != len(payload) {
		t.Errorf("status lost results: %d outcomes", len(s.Outcomes))
	}
}
