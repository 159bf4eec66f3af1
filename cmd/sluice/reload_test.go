package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/testenv"
)

// TestSIGHUPReloadsConfig adds a queue to the file of a `sluice run` that
// does not watch it, and sends SIGHUP: the queue starts without a restart.
func TestSIGHUPReloadsConfig(t *testing.T) {
	sender := testenv.Guest(t, "examples/emails/sender")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "runtime.hcl")
	base := fmt.Sprintf(`
function "sender" {
  module  = %q
  publish = ["email.sent"]
}
queue "emails" {
  subject  = "email.send"
  function = "sender"
}
`, sender)
	if err := os.WriteFile(cfgPath, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + freePort(t)
	c := startChild(t, cfgPath, filepath.Join(dir, "data"), listen, "--no-watch")
	nc, js := testenv.Connect(t, "nats://"+listen)
	sent := make(chan string, 100)
	sub, err := nc.Subscribe("email.sent", func(m *nats.Msg) {
		var v struct{ ID string }
		_ = json.Unmarshal(m.Data, &v)
		sent <- v.ID
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := os.WriteFile(cfgPath, []byte(base+`
queue "urgent" {
  subject  = "email.urgent"
  function = "sender"
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	testenv.Eventually(t, time.Minute, "the new queue's stream", func() bool {
		_, err := js.Stream(ctx, "SLUICE_Q_urgent")
		return err == nil
	})
	if _, err := js.Publish(ctx, "email.urgent", []byte(`{"to":"ada@example.com"}`), jetstream.WithMsgID("urgent-1")); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-sent:
		if id != "urgent-1" {
			t.Fatalf("sent %q, want urgent-1", id)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the new queue did not run its function:\n%s", c.logs.String())
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("sluice run: %v\n%s", err, c.logs.String())
	}
}

// TestAdminReloadReportsDiagnostics: `sluice reload` applies a valid file
// and reports an invalid one, with file:line:col, leaving the config as is.
func TestAdminReloadReportsDiagnostics(t *testing.T) {
	noop := testenv.Guest(t, "internal/testguests/noop")
	path := filepath.Join(t.TempDir(), "runtime.hcl")
	good := `function "noop" { module = "` + noop + `" }
queue "q" {
  subject  = "q.in"
  function = "noop"
}
`
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	server := "--server=" + rt.ClientURL()
	bad := strings.Replace(good, `function = "noop"`, `function = "nope"`, 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, server, "reload")
	if code != 1 || !strings.Contains(errOut, path+":4:") || !strings.Contains(errOut, "running config stays") {
		t.Fatalf("invalid reload: exit %d\n%s", code, errOut)
	}
	// The diagnostics keep their line breaks: the source line and the
	// caret under it are lines of their own.
	if !strings.Contains(errOut, "\n     4:   function = \"nope\"\n") {
		t.Errorf("reload diagnostics lost their line breaks:\n%s", errOut)
	}
	code, out, _ := cli(t, server, "reload", "--json")
	var answers struct {
		Nodes []struct {
			Node     string
			Reloaded bool
			Error    string
		}
	}
	if code != 1 || json.Unmarshal([]byte(out), &answers) != nil || len(answers.Nodes) != 1 || answers.Nodes[0].Reloaded || !strings.Contains(answers.Nodes[0].Error, path+":4:") {
		t.Errorf("invalid reload --json: exit %d\n%s", code, out)
	}
	withQueue := good + `queue "r" {
  subject  = "r.in"
  function = "noop"
}
`
	if err := os.WriteFile(path, []byte(withQueue), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := cli(t, server, "reload"); code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("valid reload: exit %d %s %s", code, out, errOut)
	}
	code, out, _ = cli(t, server, "bindings", "--json")
	if code != 0 || !strings.Contains(out, `"binding": "r"`) {
		t.Fatalf("the added queue is not bound:\n%s", out)
	}
}
