package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// startGroupLeader runs `sluice run` as the leader of its own process
// group, as a shell runs a foreground job, and waits until it is ready.
func startGroupLeader(t *testing.T, cfgPath, data, listen string) (*exec.Cmd, *testenv.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "-c", cfgPath, "--data", data, "--listen", listen,
		"--metrics-listen", "127.0.0.1:0", "--log-level", "warn")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
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
	return cmd, logs
}

// proc identifies a process across pid reuse: its pid and start time.
type proc struct {
	pid   int
	start string
}

func procsOf(pids []int) []proc {
	var out []proc
	for _, pid := range pids {
		if f := testenv.ProcStat(pid); len(f) > 22 {
			out = append(out, proc{pid, f[22]})
		}
	}
	return out
}

// alive reports whether p still runs (a zombie has stopped running).
func (p proc) alive() bool {
	f := testenv.ProcStat(p.pid)
	return len(f) > 22 && f[22] == p.start && f[3] != "Z"
}

const spinWAT = `(module (memory (export "memory") 1)
  (func (export "handle") (result i32) (loop $forever (br $forever)) (i32.const 0)))`

// TestKill9LeavesNoWorker: `kill -9` of `sluice run` while guests spin
// leaves no worker process running: the kernel kills each one as its
// parent dies (parent-death signal, armed from a thread that never exits).
// The workers never saw the runtime's secrets in their environment.
func TestKill9LeavesNoWorker(t *testing.T) {
	t.Setenv("SLUICE_PASSWORD", "hunter2")
	t.Setenv("SMTP_PASSWORD", "s3cret")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "runtime.hcl")
	cfg := fmt.Sprintf(`
function "spin" {
  module  = %q
  timeout = "5m"
  memory  = "1MiB"
}
queue "spin" {
  subject     = "spin"
  function    = "spin"
  concurrency = 3
}
`, testenv.WAT(t, spinWAT))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + freePort(t)
	cmd, logs := startGroupLeader(t, cfgPath, filepath.Join(dir, "data"), listen)
	_, js := testenv.Connect(t, "nats://"+listen)
	for i := range 3 {
		if _, err := js.Publish(context.Background(), "spin", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// One worker process runs the three events, an instance each.
	var workers []proc
	testenv.Eventually(t, time.Minute, "the worker spinning", func() bool {
		spinning := 0
		for _, pid := range testenv.Descendants(cmd.Process.Pid) {
			if testenv.CPUTicks(pid) > 20 {
				spinning++
			}
		}
		workers = procsOf(testenv.Descendants(cmd.Process.Pid))
		return spinning >= 1
	})
	for _, w := range workers {
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w.pid))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(environ, []byte("hunter2")) || bytes.Contains(environ, []byte("s3cret")) {
			t.Errorf("worker %d inherited the runtime's secrets: %q", w.pid, environ)
		}
	}
	killed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := killed.Add(5 * time.Second)
	for {
		var left []int
		for _, w := range workers {
			if w.alive() {
				left = append(left, w.pid)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("workers %v still alive 5 s after kill -9 of their runtime\n%s", left, logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a wait for an event
	}
	t.Logf("all %d workers gone %s after kill -9 of the runtime", len(workers), time.Since(killed).Round(time.Millisecond))
}

// sleepWAT sleeps 1.5 s (a WASI clock subscription), then returns the
// attempt number as its result.
const sleepWAT = `(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "event_attempt" (func $attempt (result i32)))
  (import "sluice" "result_set" (func $result (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (i64.store (i32.const 24) (i64.const 1500000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (i32.store8 (i32.const 200) (i32.add (i32.const 48) (call $attempt)))
    (drop (call $result (i32.const 200) (i32.const 1)))
    (i32.const 0)))`

// TestCtrlCDrainsInFlightInvocations: SIGINT to the runtime's whole
// process group, as a terminal's Ctrl-C sends it, reaches only the
// runtime (workers have their own groups), which drains: the invocations
// in flight finish and succeed on their first attempt, none fails as a
// trap and none is left to retry.
func TestCtrlCDrainsInFlightInvocations(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "runtime.hcl")
	cfg := fmt.Sprintf(`
function "sleepy" {
  module  = %q
  timeout = "30s"
  memory  = "1MiB"
}
queue "sleepy" {
  subject     = "sleepy"
  function    = "sleepy"
  concurrency = 4
  on_success  = "sleepy.done"
  retry {
    max_attempts = 5
    initial      = "100ms"
    max          = "200ms"
  }
}
`, testenv.WAT(t, sleepWAT))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	listen := "127.0.0.1:" + freePort(t)
	cmd, logs := startGroupLeader(t, cfgPath, data, listen)
	nc, js := testenv.Connect(t, "nats://"+listen)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DONE", Subjects: []string{"sleepy.done"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const n = 4
	for i := range n {
		if _, err := js.Publish(ctx, "sleepy", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// All four delivered and unacknowledged, and the function's worker up
	// (one process runs the four, an instance each).
	testenv.Eventually(t, time.Minute, "four invocations in flight", func() bool {
		cons, err := js.Consumer(ctx, "SLUICE_Q_sleepy", triggers.BindingConsumerName("sleepy"))
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == n && len(testenv.Descendants(cmd.Process.Pid)) >= 1
	})
	nc.Close()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice run after Ctrl-C: %v\n%s", err, logs.String())
	}
	if strings.Contains(logs.String(), "trap") {
		t.Errorf("an invocation failed as a trap at Ctrl-C:\n%s", logs.String())
	}

	// Read what the drain left, on the same data.
	cmd, logs = startGroupLeader(t, cfgPath, data, listen)
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	_, js = testenv.Connect(t, "nats://"+listen)
	if left := streamCount(js, "SLUICE_Q_sleepy"); left != 0 {
		t.Fatalf("%d events left in the queue after the drain; want all %d settled", left, n)
	}
	if done := streamCount(js, "DONE"); done != n {
		t.Fatalf("%d successes recorded, want %d\n%s", done, n, logs.String())
	}
	cons, err := js.OrderedConsumer(ctx, "DONE", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if string(m.Data()) != "1" {
			t.Errorf("an event succeeded on attempt %s, want 1: the drain did not let it finish", m.Data())
		}
	}
}

// TestRefusedDeployLeavesNoModuleFile: a module the runtime refuses is
// never written to its module directory (validation runs from memory).
func TestRefusedDeployLeavesNoModuleFile(t *testing.T) {
	data := t.TempDir()
	cfg := testenv.Config(t, `
function "f" { module = "internal/testguests/echo/echo.wasm" }
queue "q" {
  subject  = "q.in"
  function = "f"
}`)
	testenv.Guest(t, "internal/testguests/echo")
	rt := testenv.Start(t, cfg, data)
	server := "--server=" + rt.ClientURL()
	bad := testenv.WAT(t, `(module (memory (export "memory") 1))`)
	badVersion := moduleVersion(t, bad)
	if code, _, errOut := cli(t, server, "deploy", "f", bad); code == 0 || !strings.Contains(errOut, "handle") {
		t.Fatalf("deploy of a module without handle: exit %d %s", code, errOut)
	}
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), badVersion) {
			t.Errorf("the refused module was written to %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeviceAsModuleIsAClearError: `module = "/dev/zero"` stops `sluice
// run` with an error naming the file, and `sluice deploy` of it is
// refused, without reading the device.
func TestDeviceAsModuleIsAClearError(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "runtime.hcl")
	if err := os.WriteFile(cfgPath, []byte(`
function "zero" {
  module = "/dev/zero"
}
queue "zero" {
  subject  = "zero"
  function = "zero"
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, "run", "-c", cfgPath, "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:"+freePort(t), "--metrics-listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errOut, "/dev/zero") || !strings.Contains(errOut, "not a regular file") {
		t.Fatalf("run with /dev/zero as a module: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = cli(t, "deploy", "zero", "/dev/zero")
	if code == 0 || !strings.Contains(errOut, "not a regular file") {
		t.Fatalf("deploy of /dev/zero: exit %d, stderr %q", code, errOut)
	}
}
