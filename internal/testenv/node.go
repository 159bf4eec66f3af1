package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var sluiceBin struct {
	mu   sync.Mutex
	path string
}

// SluiceBinary builds ./cmd/sluice once per test process, without -race
// (the node processes must be measured as users run them, whatever flags
// the test binary was built with), and returns its path in CacheDir/bin.
//
// The file is named after the sha256 of its content: test binaries of
// several packages (or of several checkouts) build at the same time and
// share CacheDir, and a running node re-executes its own path for every
// function worker, so a path must never be replaced by a different build.
// Each build goes to a temporary name and is renamed into place.
func SluiceBinary(t testing.TB) string {
	t.Helper()
	sluiceBin.mu.Lock()
	defer sluiceBin.mu.Unlock()
	if sluiceBin.path != "" {
		return sluiceBin.path
	}
	dir := filepath.Join(CacheDir(t), "bin")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("sluice binary: %v", err)
	}
	pruneBinaries(dir)
	tmp, err := os.CreateTemp(dir, "sluice-build-*.tmp")
	if err != nil {
		t.Fatalf("sluice binary: %v", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpPath) // gone already once renamed
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmpPath, "./cmd/sluice")
	cmd.Dir = RepoRoot()
	// GOFLAGS could carry -race from the caller's environment.
	cmd.Env = append(os.Environ(), "GOFLAGS="+withoutRace(os.Getenv("GOFLAGS")), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	sum, err := fileSHA256(tmpPath)
	if err != nil {
		t.Fatalf("sluice binary: %v", err)
	}
	path := filepath.Join(dir, "sluice-"+sum[:16])
	if _, err := os.Stat(path); err == nil {
		// The same build is there already (maybe running): keep its inode,
		// and mark it as recently used for pruneBinaries.
		now := time.Now()
		_ = os.Chtimes(path, now, now)
	} else if err := os.Rename(tmpPath, path); err != nil {
		t.Fatalf("sluice binary: %v", err)
	}
	sluiceBin.path = path
	return path
}

// withoutRace is GOFLAGS without its -race flag.
func withoutRace(goflags string) string {
	var keep []string
	for _, f := range strings.Fields(goflags) {
		switch strings.TrimLeft(f, "-") {
		case "race", "race=true", "race=1":
			continue
		}
		keep = append(keep, f)
	}
	return strings.Join(keep, " ")
}

// pruneBinaries removes builds and leftover temporary files not used for
// a day: no test process lives that long, and every code change makes a
// new binary of tens of MiB.
func pruneBinaries(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "sluice-") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Node is one `sluice run` process, started in its own process group so
// that its function workers (its child processes) can be killed with it.
type Node struct {
	Name string
	PID  int

	cmd  *exec.Cmd
	out  *outputTail
	done chan struct{} // closed once the process exited and its output was read
	err  error         // the exit error, set before done is closed

	stopOnce sync.Once
}

// nodeOutputMax bounds the output kept per node: a node logging at a high
// rate must not grow the test's memory.
const nodeOutputMax = 256 << 10

// nodeStopTimeout is how long a stop waits for a graceful exit before
// SIGKILL: as long as sluice run's default --drain-timeout, so that a
// node stopped mid-load can drain; a node that takes longer is hung.
const nodeStopTimeout = 30 * time.Second

// LaunchNode starts `sluice run -c cfgPath args...` with SluiceBinary and
// returns without waiting for it to be ready. args are further flags, such
// as --data, --listen, --metrics-listen 127.0.0.1:0, --log-level warn. The
// node runs in the test's working directory (its package's), so paths in
// args are best absolute; relative paths in the config file resolve
// against the file's directory as usual.
//
// Stdout and stderr are kept (the last 256 KiB, interleaved) for failure
// messages. When the test ends the node is stopped if still running
// (SIGTERM, then SIGKILL to its process group after 30s), and its output
// is logged if the test failed.
func LaunchNode(t testing.TB, name, cfgPath string, args ...string) *Node {
	t.Helper()
	bin := SluiceBinary(t)
	cmd := exec.Command(bin, append([]string{"run", "-c", cfgPath}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := newOutputTail(nodeOutputMax)
	stdout := &lineWriter{t: out}
	cmd.Stdout = stdout
	cmd.Stderr = out
	// Should a stray grandchild hold the output pipes open after the node
	// exited, Wait gives up on them rather than hang.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("node %s: start %s: %v", name, bin, err)
	}
	n := &Node{Name: name, PID: cmd.Process.Pid, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		n.err = cmd.Wait()
		stdout.flush() // Wait returns once the output is copied
		close(n.done)
	}()
	t.Cleanup(func() {
		if n.running() {
			if err := n.stop(nodeStopTimeout); err != nil {
				t.Logf("node %s: stop at cleanup: %v", n.Name, err)
			}
		}
		n.killStragglers(t)
		if t.Failed() {
			t.Logf("node %s (pid %d) output:\n%s", n.Name, n.PID, n.Output())
		}
	})
	return n
}

// StartNode is LaunchNode followed by WaitReady with three minutes, enough
// for a first build of the functions' sources on a busy machine.
func StartNode(t testing.TB, name, cfgPath string, args ...string) *Node {
	t.Helper()
	n := LaunchNode(t, name, cfgPath, args...)
	n.WaitReady(t, 3*time.Minute)
	return n
}

// WaitReady waits until the node printed the line "ready" on stdout, which
// sluice run does once it consumes. It fails the test with the node's
// output if the node exits first or timeout passes.
func (n *Node) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-n.out.ready:
		return
	case <-n.done:
		// The line may have come just before the exit.
		select {
		case <-n.out.ready:
			return
		default:
		}
		t.Fatalf("node %s exited before it was ready (%v):\n%s", n.Name, n.err, n.Output())
	case <-timer.C:
		t.Fatalf("node %s not ready after %s:\n%s", n.Name, timeout, n.Output())
	}
}

// Kill9 kills the node and its function workers with SIGKILL (the whole
// process group: a worker outliving its node would keep running guests),
// and waits for the node to exit.
func (n *Node) Kill9(t testing.TB) {
	t.Helper()
	// The node is not reaped before done is closed, so its pid (the group's
	// id) cannot have been reused by then.
	if n.running() {
		if err := syscall.Kill(-n.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("node %s: kill -9: %v", n.Name, err)
		}
	}
	<-n.done
	n.killStragglers(t)
}

// Stop asks the node to stop gracefully (SIGTERM: it drains its
// invocations in flight) and waits for it, at most 30s before it is
// killed. It returns the exit error: nil for a clean exit.
func (n *Node) Stop(t testing.TB) error {
	t.Helper()
	return n.stop(nodeStopTimeout)
}

func (n *Node) stop(timeout time.Duration) error {
	n.stopOnce.Do(func() {
		if !n.running() {
			return
		}
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-n.done:
		case <-timer.C:
			_ = syscall.Kill(-n.PID, syscall.SIGKILL)
			<-n.done
		}
	})
	<-n.done
	return n.err
}

// killStragglers kills what is left of the node's process group once the
// node is gone: workers that a crash or a bug left behind would otherwise
// outlive the test. The group id stays reserved while any member lives,
// so these are the node's.
func (n *Node) killStragglers(t testing.TB) {
	for _, pid := range procsInGroup(n.PID) {
		t.Logf("node %s: killing pid %d, left in its process group after it exited", n.Name, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (n *Node) running() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Exited reports whether the node's process has exited.
func (n *Node) Exited() bool { return !n.running() }

// Output is the node's stdout and stderr so far (the last 256 KiB).
func (n *Node) Output() string { return n.out.String() }

// Lines returns the stdout lines that start with prefix, such as the
// banner's "sluice listening on nats://".
func (n *Node) Lines(prefix string) []string {
	return n.out.lines(prefix)
}

// RSS is the resident memory of the node process itself, in bytes (0 once
// it exited).
func (n *Node) RSS() int64 {
	if !n.running() {
		return 0
	}
	return RSS(n.PID)
}

// TreeRSS is the resident memory of the node and all its descendants (the
// function worker processes), in bytes. Shared pages are counted once per
// process, so this is an upper bound on what the tree uses.
func (n *Node) TreeRSS() int64 {
	if !n.running() {
		return 0
	}
	var total int64
	for _, pid := range Descendants(n.PID) {
		total += RSS(pid)
	}
	return total + RSS(n.PID)
}

// Descendants lists the live descendants of pid (a node's function
// workers), from /proc.
func Descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	kids := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := ProcStat(p)
		if len(f) <= 4 || f[3] == "Z" {
			continue
		}
		if ppid, err := strconv.Atoi(f[4]); err == nil {
			kids[ppid] = append(kids[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range kids[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// procsInGroup lists the live processes of process group pgid (zombies
// excluded: they hold no resources and go once reaped).
func procsInGroup(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := strconv.Itoa(pgid)
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := ProcStat(p); len(f) > 5 && f[5] == want && f[3] != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// outputTail keeps the last max bytes of a node's output, every stdout
// line (sluice run prints a banner and little else there), and whether
// "ready" was printed.
type outputTail struct {
	mu       sync.Mutex
	max      int
	b        []byte
	stdout   []string
	ready    chan struct{}
	sawReady bool
}

// maxStdoutLines bounds the stdout lines kept for Lines.
const maxStdoutLines = 10000

func newOutputTail(max int) *outputTail {
	return &outputTail{max: max, ready: make(chan struct{})}
}

func (o *outputTail) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.appendLocked(p)
	return len(p), nil
}

func (o *outputTail) appendLocked(p []byte) {
	o.b = append(o.b, p...)
	if len(o.b) > o.max {
		// Copy rather than reslice, so the dropped bytes are freed.
		o.b = append([]byte(nil), o.b[len(o.b)-o.max:]...)
	}
}

// stdoutLine records one complete stdout line (without its newline).
func (o *outputTail) stdoutLine(line []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.appendLocked(line)
	o.appendLocked([]byte{'\n'})
	if len(o.stdout) < maxStdoutLines {
		o.stdout = append(o.stdout, string(line))
	}
	if !o.sawReady && string(line) == "ready" {
		o.sawReady = true
		close(o.ready)
	}
}

func (o *outputTail) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.b)
}

func (o *outputTail) lines(prefix string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, l := range o.stdout {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// lineWriter splits stdout into lines for outputTail. exec copies the
// pipe into it from a single goroutine, so its buffer needs no lock.
type lineWriter struct {
	t       *outputTail
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			break
		}
		line := p[:i]
		if len(w.partial) > 0 {
			line = append(w.partial, line...)
			w.partial = w.partial[:0]
		}
		w.t.stdoutLine(bytes.TrimSuffix(line, []byte{'\r'}))
		p = p[i+1:]
	}
	// A line longer than the whole tail is cut: it could not be kept anyway.
	if len(w.partial)+len(p) <= w.t.max {
		w.partial = append(w.partial, p...)
	}
	return n, nil
}

// flush records a last line that had no newline.
func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.t.stdoutLine(w.partial)
		w.partial = nil
	}
}

// String describes the node for messages.
func (n *Node) String() string { return fmt.Sprintf("node %s (pid %d)", n.Name, n.PID) }
