package worker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-run/sluice/functions/sandbox"
)

// fakeEnv makes this test binary, started as a worker, play the named
// hostile scenario instead of serving: a worker is untrusted, so the
// supervisor must hold whatever one sends.
const fakeEnv = "SLUICE_TEST_FAKE_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(EnvVar) == "1" && os.Getenv(fakeEnv) != "" {
		os.Exit(fakeWorker(os.Getenv(fakeEnv)))
	}
	RunIfWorker()
	os.Exit(m.Run())
}

// fakeWorker answers a load with ready, and the first other frame it
// reads (an invocation, request 0, or a compile or a load in the
// *-during-* scenarios) with the scenario's frames, then waits for its
// input to close.
func fakeWorker(scenario string) int {
	r := bufio.NewReader(os.NewFile(fdFromSupervisor, "in"))
	w := os.NewFile(fdToSupervisor, "out")
	out := &frameWriter{w: w}
	var buf []byte
	var e *enc
	frame := func(typ byte, fill func()) {
		_ = out.send(typ, false, func(fe *enc) {
			e = fe
			fill()
		})
	}
	typ, _, err := readFrame(r, &buf, maxFrame)
	if err != nil {
		return 3
	}
	if typ == msgLoad && scenario != "done-during-load" {
		frame(msgReady, func() {})
		if _, _, err := readFrame(r, &buf, maxFrame); err != nil {
			return 3
		}
	}
	done := func(result []byte, reason string, extra ...byte) {
		frame(msgDone, func() {
			e.i64(0) // request
			e.i64(0)
			e.bytes(result)
			e.str(reason)
			e.i64(0)
			e.str("")
			e.bool(false)
			e.bool(false)
			e.i64(1)
			e.b = append(e.b, extra...)
		})
	}
	switch scenario {
	case "compiled-during-invoke":
		frame(msgCompiled, func() { e.bytes([]byte("native")); e.bytes([]byte("adapter")) })
	case "ready-during-invoke":
		frame(msgReady, func() {})
	case "oversized-result":
		done(make([]byte, 2<<10), "")
	case "oversized-reason":
		done(nil, strings.Repeat("r", 4<<10))
	case "trailing-bytes":
		done([]byte("ok"), "", 0xff)
	case "bad-log-level":
		frame(msgLog, func() { e.i64(0); e.i64(9); e.str("x") })
	case "huge-frame":
		var hdr [5]byte
		binary.BigEndian.PutUint32(hdr[:], 0x7fffffff)
		hdr[4] = msgDone
		_, _ = w.Write(hdr[:])
	case "log-flood":
		for range 1000 {
			frame(msgLog, func() { e.i64(0); e.i64(sandbox.LevelInfo); e.str(strings.Repeat("l", 99)) })
		}
		done([]byte("ok"), "")
	case "done-during-compile", "done-during-load":
		done([]byte("forged"), "")
	case "honest-done":
		done([]byte("ok"), "")
	case "unknown-request":
		frame(msgLog, func() { e.i64(7); e.i64(sandbox.LevelInfo); e.str("not yours") })
	case "second-done":
		done([]byte("ok"), "")
		done([]byte("again"), "")
	}
	_, _ = r.ReadByte() // until the supervisor closes or kills us
	return 0
}

type logHost struct {
	mu    sync.Mutex
	lines []string
}

func (h *logHost) Publish(string, []byte) error { return nil }
func (h *logHost) Log(_ int, line string) {
	h.mu.Lock()
	h.lines = append(h.lines, line)
	h.mu.Unlock()
}
func (h *logHost) HTTP(sandbox.HTTPRequest) (sandbox.HTTPResponse, error) {
	return sandbox.HTTPResponse{}, sandbox.ErrDenied
}
func (h *logHost) KVGet(string) ([]byte, error)             { return nil, sandbox.ErrNotFound }
func (h *logHost) KVPut(string, []byte) error               { return nil }
func (h *logHost) KVDelete(string) error                    { return nil }
func (h *logHost) Seen(string, time.Duration) (bool, error) { return false, nil }

func startFake(t *testing.T, scenario string) *Process {
	t.Helper()
	p, err := Start(fakeEnv + "=" + scenario)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// loadFake starts a fake worker ready for invocations.
func loadFake(t *testing.T, scenario string) *Process {
	t.Helper()
	p := startFake(t, scenario)
	if err := p.Load(Artifacts{}, 1<<20, nil, false, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

func exited(p *Process) bool { return p.cmd.ProcessState != nil }

// TestSupervisorKillsProtocolViolations: during an invocation a worker may
// send only logs, publishes, host calls and one done within the
// invocation's limits; anything else kills it with ErrProtocol.
func TestSupervisorKillsProtocolViolations(t *testing.T) {
	for _, scenario := range []string{
		"compiled-during-invoke", "ready-during-invoke", "oversized-result", "oversized-reason",
		"trailing-bytes", "bad-log-level", "huge-frame", "unknown-request",
	} {
		t.Run(scenario, func(t *testing.T) {
			p := loadFake(t, scenario)
			call := &sandbox.Call{Payload: []byte("x"), Limits: sandbox.Limits{ResultBytes: 1 << 10, ReasonBytes: 1 << 10}}
			_, err := p.Invoke(call, &logHost{}, 30*time.Second)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("Invoke error = %v, want ErrProtocol", err)
			}
			if !exited(p) {
				t.Fatal("the worker still runs after its protocol violation")
			}
		})
	}
}

// TestSecondDoneBreaksTheProtocol: a request's done ends it; another frame
// for it, such as a second done, names a request not in flight and kills
// the worker; the invocation that read it fails with ErrProtocol, as no
// invocation can be blamed for it.
func TestSecondDoneBreaksTheProtocol(t *testing.T) {
	p := loadFake(t, "second-done")
	res, err := p.Invoke(&sandbox.Call{Limits: sandbox.Limits{ResultBytes: 1 << 10}}, &logHost{}, 30*time.Second)
	if err != nil || string(res.Result) != "ok" {
		t.Fatalf("first done: %q, %v", res.Result, err)
	}
	// The second done is read by the next invocation's wait for a frame.
	_, err = p.Invoke(&sandbox.Call{Limits: sandbox.Limits{ResultBytes: 1 << 10}}, &logHost{}, 30*time.Second)
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("after a second done: %v, want ErrProtocol", err)
	}
	p.wait()
	if !exited(p) {
		t.Fatal("the worker still runs after a second done")
	}
}

// TestSupervisorBoundsLogs: logs beyond max_log_size are dropped by the
// supervisor whatever the worker sends, and reported as truncated.
func TestSupervisorBoundsLogs(t *testing.T) {
	p := loadFake(t, "log-flood")
	host := &logHost{}
	const limit = 1000
	res, err := p.Invoke(&sandbox.Call{Limits: sandbox.Limits{LogBytes: limit}}, host, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, l := range host.lines {
		total += len(l) + 1
	}
	if total > limit || !res.LogsTruncated {
		t.Fatalf("logged %d bytes in %d lines (limit %d), truncated %v", total, len(host.lines), limit, res.LogsTruncated)
	}
	if string(res.Result) != "ok" {
		t.Fatalf("result %q", res.Result)
	}
}

// TestOnlyTheStateAllowsCompileAndLoadReplies: a done frame answering a
// compile or a load is a violation, not a result.
func TestOnlyTheStateAllowsCompileAndLoadReplies(t *testing.T) {
	p := startFake(t, "done-during-compile")
	if _, _, err := p.Compile([]byte("\x00asm\x01\x00\x00\x00"), 1<<20, sandbox.TierOptimized, 30*time.Second); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Compile error = %v, want ErrProtocol", err)
	}
	p = startFake(t, "done-during-load")
	if err := p.Load(Artifacts{}, 1<<20, nil, false, 30*time.Second); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Load error = %v, want ErrProtocol", err)
	}
}

// TestWorkerProcess: a worker has an explicit environment without the
// runtime's secrets, /dev/null for stdin and stdout, its protocol on
// descriptors 3 and 4, and its own process group.
func TestWorkerProcess(t *testing.T) {
	t.Setenv("SLUICE_PASSWORD", "hunter2")
	t.Setenv("DB_PASSWORD", "s3cret")
	t.Setenv("GOGC", "150")
	p := startFake(t, "honest-done")
	pid := strconv.Itoa(p.Pid())
	environ, err := os.ReadFile("/proc/" + pid + "/environ")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	env := map[string]bool{}
	for kv := range strings.SplitSeq(strings.TrimRight(string(environ), "\x00"), "\x00") {
		env[kv] = true
	}
	for _, secret := range []string{"SLUICE_PASSWORD=hunter2", "DB_PASSWORD=s3cret"} {
		if env[secret] {
			t.Errorf("the worker inherited %s", secret)
		}
	}
	for _, want := range []string{EnvVar + "=1", "GOGC=150", fakeEnv + "=honest-done"} {
		if !env[want] {
			t.Errorf("the worker's environment lacks %s: %q", want, environ)
		}
	}
	if len(env) != 3+countSet(passEnv)-1 {
		t.Errorf("the worker's environment has more than it needs: %q", environ)
	}
	for fd, want := range map[string]string{"0": "/dev/null", "1": "/dev/null"} {
		if got, _ := os.Readlink("/proc/" + pid + "/fd/" + fd); got != want {
			t.Errorf("worker fd %s is %q, want %s", fd, got, want)
		}
	}
	for _, fd := range []string{"3", "4"} {
		if got, _ := os.Readlink("/proc/" + pid + "/fd/" + fd); !strings.HasPrefix(got, "pipe:") {
			t.Errorf("worker fd %s is %q, want a pipe", fd, got)
		}
	}
	pgid, err := syscall.Getpgid(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if pgid != p.Pid() || pgid == syscall.Getpgrp() {
		t.Errorf("worker process group %d, want its own (%d), not the runtime's (%d)", pgid, p.Pid(), syscall.Getpgrp())
	}
}

// countSet counts the variables of names set in this process.
func countSet(names []string) int {
	n := 0
	for _, k := range names {
		if _, ok := os.LookupEnv(k); ok {
			n++
		}
	}
	return n
}
