package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
)

// child is `sluice run` in its own process.
type child struct {
	cmd  *exec.Cmd
	logs *strings.Builder
}

func startChild(t *testing.T, cfgPath, data, listen string, flags ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"run", "-c", cfgPath, "--data", data, "--listen", listen,
		"--metrics-listen", "127.0.0.1:0", "--log-level", "warn"}, flags...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, logs: logs}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if sc.Text() == "ready" && !found {
				found = true
				ready <- true
			}
		}
		if !found {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("sluice run exited before ready:\n%s", logs.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("sluice run not ready:\n%s", logs.String())
	}
	return c
}

func (c *child) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// TestKill9LosesNoEvent kills `sluice run` with events pending and in
// flight, starts it again on the same data, and checks that every event
// was handled or dead-lettered.
func TestKill9LosesNoEvent(t *testing.T) {
	sender := testenv.Guest(t, "examples/emails/sender")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "runtime.hcl")
	cfg := fmt.Sprintf(`
function "sender" {
  module  = %q
  timeout = "2s"
  publish = ["email.sent"]
}
queue "emails" {
  subject     = "email.send"
  function    = "sender"
  concurrency = 4
  retry {
    max_attempts = 10
    initial      = "50ms"
    max          = "500ms"
  }
}
`, sender)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	listen := "127.0.0.1:" + freePort(t)
	first := startChild(t, cfgPath, data, listen)

	nc, js := testenv.Connect(t, "nats://"+listen)
	ctx := context.Background()
	// Effects go to a stream, so none is missed while the runtime is down.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EFFECTS", Subjects: []string{"email.sent"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		if _, err := js.PublishAsync("email.send", []byte(fmt.Sprintf(`{"to":"u%d@example.com"}`, i)), jetstream.WithMsgID(fmt.Sprintf("kill-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	testenv.Eventually(t, time.Minute, "some events handled", func() bool {
		return streamCount(js, "EFFECTS") >= 200
	})
	handledBeforeKill := streamCount(js, "EFFECTS")
	first.kill9(t)
	nc.Close()

	second := startChild(t, cfgPath, data, listen)
	_, js = testenv.Connect(t, "nats://"+listen)
	testenv.Eventually(t, 2*time.Minute, "the queue to drain", func() bool {
		return streamCount(js, "SLUICE_Q_emails") == 0
	})
	handled := effectsByID(t, js)
	dead := streamCount(js, "SLUICE_DLQ_emails")
	missing, duplicates := 0, 0
	for i := range n {
		c := handled[fmt.Sprintf("kill-%d", i)]
		if c == 0 {
			missing++
		}
		if c > 1 {
			duplicates += c - 1
		}
	}
	t.Logf("killed after %d of %d events; %d handled, %d dead-lettered, %d duplicate effects (at-least-once redelivery of events in flight at the kill)",
		handledBeforeKill, n, len(handled), dead, duplicates)
	if uint64(missing) > dead {
		t.Fatalf("%d events neither handled nor dead-lettered", missing-int(dead))
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.cmd.Wait(); err != nil {
		t.Fatalf("graceful stop: %v\n%s", err, second.logs.String())
	}
}

func streamCount(js jetstream.JetStream, name string) uint64 {
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		return 0
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

func effectsByID(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, "EFFECTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	total := streamCount(js, "EFFECTS")
	out := map[string]int{}
	for read := uint64(0); read < total; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			read++
			var v struct{ ID string }
			if err := json.Unmarshal(m.Data(), &v); err != nil {
				t.Fatalf("effect %q: %v", m.Data(), err)
			}
			out[v.ID]++
		}
		if err := batch.Error(); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
	return out
}
