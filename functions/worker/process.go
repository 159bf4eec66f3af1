package worker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-run/sluice/functions/sandbox"
)

// Errors of a worker that did not answer.
var (
	// ErrTimeout: the worker ran past its deadline and was killed.
	ErrTimeout = errors.New("worker killed at its deadline")
	// ErrCrashed: the worker died on its own.
	ErrCrashed = errors.New("worker crashed")
)

// Host answers a worker's host calls for one invocation.
type Host = sandbox.Host

// Process is a running worker, owned by one goroutine at a time.
type Process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	r      *bufio.Reader
	w      *bufio.Writer
	e      enc
	buf    []byte
	stderr *tail

	killed    atomic.Bool
	waitOnce  sync.Once
	waitErr   error
	Invoked   int // invocations served, for recycling
	closeOnce sync.Once
}

// Start starts a worker: this executable with EnvVar set. extraEnv is added
// to the worker's environment (not the guest's).
func Start(extraEnv ...string) (*Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("worker: find executable: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), EnvVar+"=1")
	cmd.Env = append(cmd.Env, extraEnv...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	t := &tail{max: 4096}
	cmd.Stderr = t
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("worker: start: %w", err)
	}
	return &Process{
		cmd: cmd, stdin: stdin, stderr: t,
		r: bufio.NewReaderSize(stdout, 64<<10), w: bufio.NewWriterSize(stdin, 64<<10),
	}, nil
}

// Pid is the worker's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill stops the worker at once.
func (p *Process) Kill() {
	p.killed.Store(true)
	_ = p.cmd.Process.Kill()
	p.wait()
}

// Close asks the worker to exit (by closing its input) and waits for it,
// killing it if it does not exit within a second.
func (p *Process) Close() {
	p.closeOnce.Do(func() {
		_ = p.stdin.Close()
		done := make(chan struct{})
		go func() { p.wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			p.Kill()
			<-done
		}
	})
}

func (p *Process) wait() {
	p.waitOnce.Do(func() { p.waitErr = p.cmd.Wait() })
}

// deadline kills the worker after d unless stopped.
func (p *Process) deadline(d time.Duration) *time.Timer {
	return time.AfterFunc(d, func() {
		p.killed.Store(true)
		_ = p.cmd.Process.Kill()
	})
}

// died turns a read or write failure into ErrTimeout or ErrCrashed with
// the worker's last words.
func (p *Process) died(err error) error {
	if p.killed.Load() {
		p.wait()
		return ErrTimeout
	}
	p.Kill()
	detail := strings.TrimSpace(p.stderr.String())
	status := ""
	if p.waitErr != nil {
		status = p.waitErr.Error()
	}
	switch {
	case detail != "":
		return fmt.Errorf("%w (%s): %s", ErrCrashed, status, lastLines(detail, 3))
	case status != "":
		return fmt.Errorf("%w (%s)", ErrCrashed, status)
	}
	return fmt.Errorf("%w: %w", ErrCrashed, err)
}

// Compiled is what a compile worker reports.
type Compiled struct {
	Version      string
	CacheHit     bool
	ArtifactPath string
}

// Compile validates and compiles the module at wasmPath into cacheDir,
// stopping the worker if it takes longer than timeout.
func (p *Process) Compile(wasmPath string, memLimit int64, cacheDir string, timeout time.Duration) (Compiled, error) {
	t := p.deadline(timeout)
	defer t.Stop()
	p.e.reset(msgCompile)
	p.e.str(wasmPath)
	p.e.i64(memLimit)
	p.e.str(cacheDir)
	if err := p.e.send(p.w); err != nil {
		return Compiled{}, p.died(err)
	}
	typ, d, err := readFrame(p.r, &p.buf)
	if err != nil {
		if errors.Is(p.died(err), ErrTimeout) {
			return Compiled{}, fmt.Errorf("compile took longer than %s and was stopped", timeout)
		}
		return Compiled{}, p.died(err)
	}
	switch typ {
	case msgCompiled:
		c := Compiled{Version: d.str(), CacheHit: d.bool(), ArtifactPath: d.str()}
		return c, d.err
	case msgError:
		return Compiled{}, errors.New(d.str())
	}
	return Compiled{}, fmt.Errorf("worker: unexpected message %d", typ)
}

// Load loads a compiled artifact and instantiates it (running _initialize).
// fresh makes the worker use a new instance for every invocation.
func (p *Process) Load(artifact string, memLimit int64, env map[string]string, fresh bool, timeout time.Duration) error {
	t := p.deadline(timeout)
	defer t.Stop()
	p.e.reset(msgLoad)
	p.e.str(artifact)
	p.e.i64(memLimit)
	m := make(map[string][]string, len(env))
	for k, v := range env {
		m[k] = []string{v}
	}
	p.e.strMap(m)
	p.e.bool(fresh)
	if err := p.e.send(p.w); err != nil {
		return p.died(err)
	}
	typ, d, err := readFrame(p.r, &p.buf)
	if err != nil {
		return p.died(err)
	}
	switch typ {
	case msgReady:
		return nil
	case msgError:
		return errors.New(d.str())
	}
	return fmt.Errorf("worker: unexpected message %d", typ)
}

// Invocation is one event for Invoke.
type Invocation struct {
	Call    *sandbox.Call // Host is ignored; pass host to Invoke
	Timeout time.Duration
}

// Result is a worker's answer to an invocation.
type Result struct {
	sandbox.Outcome
	// Err is the trap or exit message when the guest did not return.
	ErrText string
	// Elapsed is the time spent in the guest, measured in the worker.
	Elapsed time.Duration
}

// Invoke runs one event in the worker, answering its host calls with host.
// It returns ErrTimeout (the worker was killed) or ErrCrashed when the
// worker did not answer; the Process is then dead.
func (p *Process) Invoke(c *sandbox.Call, host Host, timeout time.Duration) (Result, error) {
	t := p.deadline(timeout)
	defer t.Stop()
	p.Invoked++
	p.e.reset(msgInvoke)
	p.e.bytes(c.Payload)
	p.e.str(c.Subject)
	p.e.str(c.ID)
	p.e.strMap(c.Headers)
	p.e.str(c.Binding)
	p.e.str(c.Function)
	p.e.i64(int64(c.Attempt))
	p.e.i64(int64(c.Limits.ResultBytes))
	p.e.i64(int64(c.Limits.ReasonBytes))
	p.e.i64(int64(c.Limits.LogBytes))
	if err := p.e.send(p.w); err != nil {
		return Result{}, p.died(err)
	}
	for {
		typ, d, err := readFrame(p.r, &p.buf)
		if err != nil {
			return Result{}, p.died(err)
		}
		switch typ {
		case msgLog:
			level, line := int(d.i64()), d.str()
			if d.err == nil && level >= sandbox.LevelDebug && level <= sandbox.LevelError {
				host.Log(level, line)
			}
		case msgPublish:
			subject, data := d.str(), d.bytes()
			code := int64(sandbox.ErrorCode(sandbox.ErrInvalid))
			if d.err == nil {
				code = hostCode(host.Publish(subject, data))
			}
			p.e.reset(msgHostReply)
			p.e.i64(code)
			if err := p.e.send(p.w); err != nil {
				return Result{}, p.died(err)
			}
		case msgCall:
			name, args := d.str(), d.fields()
			code, data := int64(sandbox.ErrorCode(sandbox.ErrInvalid)), [][]byte(nil)
			if d.err == nil {
				code, data = dispatch(host, name, args)
			}
			p.e.reset(msgCallReply)
			p.e.i64(code)
			p.e.fields(data)
			if err := p.e.send(p.w); err != nil {
				return Result{}, p.died(err)
			}
		case msgDone:
			var r Result
			r.Status = sandbox.Status(d.i64())
			r.Result = d.bytes()
			r.Reason = d.str()
			r.RetryAfter = time.Duration(d.i64())
			r.ErrText = d.str()
			r.MemoryExceeded = d.bool()
			r.LogsTruncated = d.bool()
			r.Elapsed = time.Duration(d.i64())
			if d.err != nil {
				p.Kill()
				return Result{}, fmt.Errorf("%w: %w", ErrCrashed, d.err)
			}
			return r, nil
		default:
			p.Kill()
			return Result{}, fmt.Errorf("%w: unexpected message %d", ErrCrashed, typ)
		}
	}
}

// RSS returns the worker's resident memory in bytes (Linux; 0 elsewhere).
func (p *Process) RSS() int64 { return RSSOf(p.Pid()) }

// RSSOf returns a process's resident memory in bytes (Linux; 0 elsewhere).
func RSSOf(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.b, []byte("?")))
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
