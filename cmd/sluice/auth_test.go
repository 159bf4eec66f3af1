package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
)

const authConfig = `
nats {
  user "admin" {
    password = "admin-secret"
    role     = "admin"
  }
  user "app" {
    password_env = "SLUICE_TEST_APP_PASSWORD"
    role         = "publish"
  }
}
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

// TestExposedListenWithoutUsersIsRefused: a non-loopback address needs
// credentials.
func TestExposedListenWithoutUsersIsRefused(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	cfg := testenv.Config(t, `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}
`)
	opts := testenv.RuntimeOptions(t, cfg, "")
	opts.Listen = "0.0.0.0:-1"
	rt, err := runtime.Start(context.Background(), opts)
	if err == nil {
		rt.Shutdown()
		t.Fatal("started on 0.0.0.0 without users")
	}
	for _, want := range []string{"refusing to listen on 0.0.0.0:-1 without authentication", `user "admin"`, "127.0.0.1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// TestRolesOfUsers: without credentials the CLI cannot connect; the
// publish role publishes, waits for outcomes and reads status (through the
// runtime's status API) but may not list bindings or nodes, purge, pause,
// deploy or reload; the admin may.
func TestRolesOfUsers(t *testing.T) {
	t.Setenv("SLUICE_TEST_APP_PASSWORD", "app-secret")
	testenv.Guest(t, "internal/testguests/noop")
	testenv.Guest(t, "internal/testguests/fail")
	rt := testenv.Start(t, testenv.Config(t, authConfig), "")
	server := "--server=" + rt.ClientURL()
	app := []string{server, "--user=app", "--password=app-secret"}
	admin := []string{server, "--user=admin", "--password=admin-secret"}
	run := func(args []string, more ...string) (int, string, string) {
		return cli(t, append(append([]string{}, args...), more...)...)
	}

	code, _, errOut := cli(t, server, "bindings")
	if code != 2 || !strings.Contains(errOut, "needs credentials") || !strings.Contains(errOut, "--user") {
		t.Fatalf("without credentials: exit %d, %s", code, errOut)
	}
	if code, _, errOut := run(app[:2], "--password=wrong", "bindings"); code != 2 || !strings.Contains(errOut, "authorization failed") {
		t.Fatalf("wrong password: exit %d, %s", code, errOut)
	}

	// The publish role publishes, waits for the outcome and reads status.
	code, out, errOut := run(app, "publish", "ok.send", `{}`, "--wait", "--json")
	if code != 0 {
		t.Fatalf("app publish --wait: exit %d\n%s%s", code, out, errOut)
	}
	p := decode(t, out)
	if len(p.Outcomes) != 1 || p.Outcomes[0].State != "succeeded" {
		t.Fatalf("outcomes: %s", out)
	}
	if code, out, errOut := run(app, "status", p.ID); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("app status: exit %d\n%s%s", code, out, errOut)
	}
	// Listing bindings and nodes reads JetStream and key-value state the
	// publish role has no right to: it is an admin's view.
	for _, args := range [][]string{{"bindings"}, {"nodes"}} {
		if code, out, errOut := run(app, args...); code != 2 || !strings.Contains(errOut, "permission denied") {
			t.Errorf("app %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	if code, _, errOut := run(app, "publish", "bad.send", `{}`); code != 0 {
		t.Fatalf("app publish: exit %d, %s", code, errOut)
	}

	nc, err := nats.Connect(rt.ClientURL(), nats.UserInfo("admin", "admin-secret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	testenv.Eventually(t, 30*time.Second, "a dead letter", func() bool {
		s, err := js.Stream(context.Background(), "SLUICE_DLQ_bad")
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == 1
	})

	for _, args := range [][]string{{"dlq", "purge", "bad", "--all", "--yes"}, {"pause", "ok"}} {
		code, out, errOut := run(app, args...)
		if code != 2 || !strings.Contains(errOut, "permission denied") || !strings.Contains(errOut, `role "admin"`) {
			t.Errorf("app %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	if code, out, errOut := run(admin, "dlq", "purge", "bad", "--all", "--yes"); code != 0 || !strings.Contains(out, "purged 1") {
		t.Errorf("admin purge: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(admin, "pause", "ok"); code != 0 {
		t.Errorf("admin pause: exit %d\n%s%s", code, out, errOut)
	}

	// Deploys are admin operations too.
	failModule := filepath.Join(testenv.RepoRoot(), "internal/testguests/fail/fail.wasm")
	if code, out, errOut := run(app, "deploy", "noop", failModule); code == 0 || !strings.Contains(errOut, "permission denied") {
		t.Errorf("app deploy: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(app, "reload"); code == 0 {
		t.Errorf("app reload: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(admin, "deploy", "noop", failModule); code != 0 || !strings.Contains(out, "deployed noop") {
		t.Errorf("admin deploy: exit %d\n%s%s", code, out, errOut)
	}
}
