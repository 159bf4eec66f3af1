package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions/worker"
	"github.com/sluice-run/sluice/internal/testenv"
)

// childEnv makes the test binary act as the sluice command, so tests can run
// the real CLI as a child process without a separate build.
const childEnv = "SLUICE_TEST_RUN_AS_CLI"

func TestMain(m *testing.M) {
	worker.RunIfWorker()
	if os.Getenv(childEnv) == "1" {
		os.Exit(cliMain())
	}
	os.Exit(m.Run())
}

// cli runs the sluice command in-process and returns its exit code and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

type publishJSON struct {
	ID       string `json:"id"`
	Subject  string `json:"subject"`
	Stream   string `json:"stream"`
	Seq      uint64 `json:"seq"`
	Outcomes []struct {
		Binding   string `json:"binding"`
		Function  string `json:"function"`
		State     string `json:"state"`
		Attempts  int    `json:"attempts"`
		Error     string `json:"error"`
		ErrorKind string `json:"error_kind"`
		Result    string `json:"result"`
	} `json:"outcomes"`
}

func decode(t *testing.T, out string) publishJSON {
	t.Helper()
	var p publishJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("output is not the publish JSON: %v\n%s", err, out)
	}
	return p
}

// TestExamplesThroughTheCLI runs the repo's own runtime.hcl and drives it
// the way the README tells a new user to.
func TestExamplesThroughTheCLI(t *testing.T) {
	cfg, err := config.Load(filepath.Join(testenv.RepoRoot(), "runtime.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	server := "--server=" + rt.ClientURL()

	t.Run("signup fan-out succeeds at every subscriber", func(t *testing.T) {
		code, out, errOut := cli(t, server, "publish", "user.registered", `{"email":"a@example.com"}`, "--wait", "--json")
		if code != 0 {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
		p := decode(t, out)
		if p.Subject != "user.registered" || p.Stream != "SLUICE_T_user_registered" || p.Seq == 0 || p.ID == "" {
			t.Errorf("publish fields: %+v", p)
		}
		want := map[string]bool{"user_registered/welcome_email": true, "user_registered/welcome_sms": true, "user_registered/profile_store": true}
		if len(p.Outcomes) != len(want) {
			t.Fatalf("outcomes %+v, want one per subscriber", p.Outcomes)
		}
		for _, o := range p.Outcomes {
			if !want[o.Binding] || o.State != "succeeded" || o.Attempts != 1 {
				t.Errorf("outcome %+v, want succeeded on the first attempt", o)
			}
		}
		code, out, _ = cli(t, server, "status", p.ID, "--json")
		if code != 0 {
			t.Fatalf("status exit %d", code)
		}
		if s := decode(t, out); len(s.Outcomes) != 3 || s.ID != p.ID {
			t.Errorf("status %+v", s)
		}
	})

	t.Run("flaky succeeds after retries", func(t *testing.T) {
		code, out, errOut := cli(t, server, "publish", "jobs.flaky", "{}", "--wait", "--json")
		if code != 0 {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
		p := decode(t, out)
		if len(p.Outcomes) != 1 || p.Outcomes[0].State != "succeeded" || p.Outcomes[0].Attempts != 3 {
			t.Fatalf("outcomes %+v, want succeeded on attempt 3", p.Outcomes)
		}
	})

	t.Run("always failing is dead-lettered after max_attempts", func(t *testing.T) {
		code, out, _ := cli(t, server, "publish", "payments.charge", `{"amount":5}`, "--wait", "--json")
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		p := decode(t, out)
		o := p.Outcomes[0]
		if o.State != "dead_lettered" || o.Attempts != 4 || !strings.Contains(o.Error, "rejected the card") || o.ErrorKind != "failed" {
			t.Fatalf("outcome %+v, want dead_lettered after 4 attempts with the reason", o)
		}
		code, _, _ = cli(t, server, "status", p.ID)
		if code != 1 {
			t.Errorf("status of a dead-lettered event: exit %d, want 1", code)
		}
	})

	t.Run("permanent failure skips retries", func(t *testing.T) {
		code, out, _ := cli(t, server, "publish", "payments.charge", `{"permanent":true}`, "--wait", "--json")
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		o := decode(t, out).Outcomes[0]
		if o.State != "dead_lettered" || o.Attempts != 1 || o.ErrorKind != "permanent" {
			t.Fatalf("outcome %+v, want dead_lettered at once", o)
		}
	})

	t.Run("human output shows progress and the table", func(t *testing.T) {
		code, out, errOut := cli(t, server, "publish", "email.send", `{"to":"b@example.com"}`, "--wait")
		if code != 0 || !strings.Contains(errOut, "processing…") || !strings.Contains(out, "succeeded") {
			t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})

	t.Run("a subject nothing is bound to is refused", func(t *testing.T) {
		code, _, errOut := cli(t, server, "publish", "nobody.listens", "x")
		if code != 1 || !strings.Contains(errOut, "no queue or topic is bound") {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
	})

	t.Run("the same id is published once", func(t *testing.T) {
		_, out1, _ := cli(t, server, "publish", "email.send", `{"to":"c@example.com"}`, "--id", "order-42", "--json")
		_, out2, _ := cli(t, server, "publish", "email.send", `{"to":"c@example.com"}`, "--id", "order-42", "--json")
		if a, b := decode(t, out1), decode(t, out2); a.Seq != b.Seq {
			t.Fatalf("seq %d then %d: a duplicate id was stored twice", a.Seq, b.Seq)
		}
	})
}

func TestUsageAndConnectionErrorsExit2(t *testing.T) {
	if code, _, _ := cli(t, "publish"); code != 2 {
		t.Errorf("publish without subject: exit %d, want 2", code)
	}
	if code, _, errOut := cli(t, "--server=nats://127.0.0.1:1", "publish", "a.b", "x"); code != 2 || !strings.Contains(errOut, "connect") {
		t.Errorf("no server: exit %d, stderr %s", code, errOut)
	}
}

func TestValidateReportsEveryMistake(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.hcl")
	src := `function "f" {
  module  = "f.wasm"
  timeout = "5 parsecs"
}
queue "q" {
  subject  = "q.in"
  function = "nope"
  colour   = "blue"
}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, "validate", "-c", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{path + ":3:13", path + ":7:14", path + ":8:3"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("diagnostics do not point at %s:\n%s", want, errOut)
		}
	}
	if n := strings.Count(errOut, "Error: "); n != 3 {
		t.Errorf("%d diagnostics, want 3:\n%s", n, errOut)
	}
}

func TestInvokeRunsAFunctionOnce(t *testing.T) {
	cfg := filepath.Join(testenv.RepoRoot(), "runtime.hcl")
	cache := "--cache=" + testenv.CacheDir(t)
	code, out, errOut := cli(t, "invoke", "sender", `{"to":"x@example.com"}`, "-c", cfg, cache)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"publish (not sent): email.sent", "outcome: succeeded", "result: sent to x@example.com"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = cli(t, "invoke", "always_fails", "{}", "-c", cfg, cache, "--json")
	if code != 1 || !strings.Contains(out, `"outcome": "failed"`) || !strings.Contains(out, "rejected the card") {
		t.Fatalf("always_fails: exit %d\n%s", code, out)
	}
	if code, _, errOut := cli(t, "invoke", "nope", "-c", cfg); code != 2 || !strings.Contains(errOut, "no function") {
		t.Fatalf("unknown function: exit %d %s", code, errOut)
	}
}

func TestFmtIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtime.hcl")
	src := "function \"f\" {\nmodule=\"f.wasm\"\n  timeout    =   \"5s\"\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := cli(t, "fmt", "--check", path); code != 1 {
		t.Fatalf("--check on an unformatted file: exit %d, want 1", code)
	}
	if code, _, errOut := cli(t, "fmt", "-w", path); code != 0 {
		t.Fatalf("fmt -w: exit %d %s", code, errOut)
	}
	once, _ := os.ReadFile(path)
	if code, _, _ := cli(t, "fmt", "-w", path); code != 0 {
		t.Fatal("second fmt -w failed")
	}
	twice, _ := os.ReadFile(path)
	if string(once) != string(twice) || string(once) == src {
		t.Fatalf("fmt is not idempotent or changed nothing:\n%q\n%q", once, twice)
	}
	if code, _, _ := cli(t, "fmt", "--check", path); code != 0 {
		t.Fatalf("--check after fmt -w: exit %d", code)
	}
}
