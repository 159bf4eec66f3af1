package worker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-run/sluice/functions/sandbox"
)

// Errors of a worker that did not answer as it must.
var (
	// ErrTimeout: the worker ran past its deadline and was killed.
	ErrTimeout = errors.New("worker killed at its deadline")
	// ErrCrashed: the worker died on its own.
	ErrCrashed = errors.New("worker crashed")
	// ErrProtocol: the worker sent a frame its state does not allow, or
	// one out of bounds, and was killed.
	ErrProtocol = errors.New("worker protocol violation")
	// ErrArtifact: a compiled artifact is missing or does not match its
	// recorded digest; compile the module again.
	ErrArtifact = errors.New("compiled artifact missing or altered")
	// ErrReleased: the worker was stopped for another invocation (its
	// timeout or its protocol violation) while this one was in flight, or
	// before it started; this invocation is not at fault.
	ErrReleased = errors.New("worker stopped for another invocation")
)

// Host answers a worker's host calls for one invocation.
type Host = sandbox.Host

// Process is a running worker. Compile and Load are for one goroutine;
// once a module is loaded, Invoke may be called from many at once, each
// event running in its own instance in the worker.
//
// The protocol runs on two pipes the worker inherits as descriptors 3 and
// 4. Its stdin and stdout are /dev/null and its stderr is a bounded tail
// kept for crash reports, so nothing a guest reaches through WASI (which
// the sandbox confines to fds 0-2 anyway) touches the protocol.
// Invocations are multiplexed by a request id the supervisor chooses; a
// reader goroutine (started by Load) routes the worker's frames to them.
type Process struct {
	cmd    *exec.Cmd
	toW    *os.File // the supervisor's end of the worker's input
	fromW  *os.File // and of its output
	r      *bufio.Reader
	buf    []byte // the reader's
	stderr *tail

	out frameWriter // to the worker

	frameLimit atomic.Int64 // bound of a frame from the worker during invocations
	invoked    atomic.Int64

	mu      sync.Mutex
	calls   map[int64]*inflight // by request id; nil once the worker ended
	nextID  int64
	reading bool        // an invocation holds the reading role
	waiters []*inflight // invocations waiting for a frame, in order
	ended   bool
	culprit *inflight // the invocation whose frame broke the protocol
	broken  error     // that violation, or one no invocation can be blamed for

	killed    atomic.Bool
	waitOnce  sync.Once
	waitErr   error
	closeOnce sync.Once
}

// inflight is one invocation in flight in a worker.
type inflight struct {
	id       int64
	frames   chan frame    // from the reader
	ended    chan struct{} // closed when the worker ended before its done
	gone     chan struct{} // closed when the invocation stopped listening
	timedOut atomic.Bool
}

type frame struct {
	typ  byte
	body []byte
}

// Start starts a worker: this executable with EnvVar set and an explicit
// environment (workerEnv) to which extraEnv is added; the guests' own
// environment travels in Load.
func Start(extraEnv ...string) (*Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("worker: find executable: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("worker: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = workerEnv(extraEnv)
	cmd.ExtraFiles = []*os.File{inR, outW} // fds 3 and 4 in the worker
	t := &tail{max: 4096}
	cmd.Stderr = t
	cmd.SysProcAttr = sysProcAttr()
	err = startCmd(cmd)
	// The worker has its own copies of its ends now.
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("worker: start: %w", err)
	}
	return &Process{
		cmd: cmd, toW: inW, fromW: outR, stderr: t, calls: map[int64]*inflight{},
		r: bufio.NewReaderSize(outR, 64<<10), out: frameWriter{w: inW},
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
		_ = p.toW.Close()
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
	p.waitOnce.Do(func() {
		p.waitErr = p.cmd.Wait()
		_ = p.toW.Close()
		_ = p.fromW.Close()
	})
}

// deadline kills the worker after d unless stopped.
func (p *Process) deadline(d time.Duration) *time.Timer {
	return time.AfterFunc(d, p.signalKill)
}

// signalKill kills the worker without waiting for it.
func (p *Process) signalKill() {
	p.killed.Store(true)
	_ = p.cmd.Process.Kill()
}

// Invoked counts the invocations this worker was given.
func (p *Process) Invoked() int64 { return p.invoked.Load() }

// died turns a read or write failure into ErrTimeout, ErrProtocol or
// ErrCrashed with the worker's last words.
func (p *Process) died(err error) error {
	if p.killed.Load() {
		p.wait()
		return ErrTimeout
	}
	if errors.Is(err, errFrame) || errors.Is(err, errFrameSize) {
		return p.violation("%v", err)
	}
	p.Kill()
	if crashed := p.crashed(); crashed != ErrCrashed {
		return crashed
	}
	return fmt.Errorf("%w: %w", ErrCrashed, err)
}

// crashed is ErrCrashed with the worker's exit status and last words,
// when it left any.
func (p *Process) crashed() error {
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
	return ErrCrashed
}

// violation kills a worker that broke the protocol.
func (p *Process) violation(format string, args ...any) error {
	p.Kill()
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// workerError is a worker's msgError, its text bounded.
func workerError(d *dec) (error, error) {
	stale, s := d.bool(), d.str()
	if err := d.end(); err != nil {
		return nil, err
	}
	if len(s) > sandbox.MaxErrText {
		s = s[:sandbox.MaxErrText]
	}
	s = strings.ToValidUTF8(s, "?")
	if stale {
		return fmt.Errorf("%w: %s", ErrArtifact, s), nil
	}
	return errors.New(s), nil
}

// Bounds of what a worker may send outside an invocation.
const (
	maxCompiledFrame = 2*sandbox.MaxArtifactSize + 64
	maxReplyFrame    = sandbox.MaxErrText + 64
)

// Compile validates and compiles wasm with tier's compiler in the worker,
// stopping it if it takes longer than timeout, and returns the compiled
// artifacts of the module and of the host-call adapter. The worker runs
// none of the module's code; the caller stores the artifacts with their
// digests.
func (p *Process) Compile(wasm []byte, memLimit int64, tier sandbox.Tier, timeout time.Duration) (module, adapter []byte, err error) {
	t := p.deadline(timeout)
	defer t.Stop()
	err = p.out.send(msgCompile, false, func(e *enc) {
		e.bytes(wasm)
		e.i64(memLimit)
		e.i64(int64(tier))
	})
	if err != nil {
		return nil, nil, p.died(err)
	}
	typ, d, err := readFrame(p.r, &p.buf, maxCompiledFrame)
	if err != nil {
		return nil, nil, p.died(err)
	}
	switch typ {
	case msgCompiled:
		module, adapter, err := decodeCompiled(d)
		if err != nil {
			return nil, nil, p.violation("compiled: %v", err)
		}
		return module, adapter, nil
	case msgError:
		werr, err := workerError(d)
		if err != nil {
			return nil, nil, p.violation("error: %v", err)
		}
		return nil, nil, werr
	}
	return nil, nil, p.violation("message %d while compiling", typ)
}

// Artifacts names a function's compiled artifacts and the digests the
// supervisor recorded for them; a worker loads them only if they match.
type Artifacts struct {
	Paths           sandbox.Artifacts
	Module, Adapter sandbox.Digest
}

// Load loads compiled artifacts and instantiates them (running
// _initialize). fresh makes the worker use a new instance for every
// invocation.
func (p *Process) Load(a Artifacts, memLimit int64, env map[string]string, fresh bool, timeout time.Duration) error {
	t := p.deadline(timeout)
	defer t.Stop()
	m := make(map[string][]string, len(env))
	for k, v := range env {
		m[k] = []string{v}
	}
	err := p.out.send(msgLoad, false, func(e *enc) {
		e.str(a.Paths.Module)
		e.bytes(a.Module[:])
		e.str(a.Paths.Adapter)
		e.bytes(a.Adapter[:])
		e.i64(memLimit)
		e.strMap(m)
		e.bool(fresh)
	})
	if err != nil {
		return p.died(err)
	}
	typ, d, err := readFrame(p.r, &p.buf, maxReplyFrame)
	if err != nil {
		return p.died(err)
	}
	switch typ {
	case msgReady:
		if err := d.end(); err != nil {
			return p.violation("ready: %v", err)
		}
		p.frameLimit.Store(maxReplyFrame)
		return nil
	case msgError:
		werr, err := workerError(d)
		if err != nil {
			return p.violation("error: %v", err)
		}
		return werr
	}
	return p.violation("message %d while loading", typ)
}

// Reading the worker's frames is a role, not a goroutine: an invocation
// waiting for a frame reads the pipe itself when no one else is (so a lone
// invocation gets its frames with no goroutine hand-off), routes the
// frames of others to them, and hands the role to a waiting invocation as
// soon as it has a frame of its own. A frame outside an invocation, for a
// request not in flight, or over the bound, breaks the protocol and kills
// the worker.

// tokenFrame hands the reading role to the invocation that receives it.
const tokenFrame byte = 0

// await returns the next frame for call, or false when the worker ended.
func (p *Process) await(call *inflight) (frame, bool) {
	p.mu.Lock()
	select {
	case f := <-call.frames:
		p.mu.Unlock()
		if f.typ == tokenFrame {
			return p.readFor(call)
		}
		return f, true
	default:
	}
	if p.ended {
		p.mu.Unlock()
		return frame{}, false
	}
	if !p.reading {
		p.reading = true
		p.mu.Unlock()
		return p.readFor(call)
	}
	p.waiters = append(p.waiters, call)
	p.mu.Unlock()
	select {
	case f := <-call.frames:
		if f.typ == tokenFrame {
			return p.readFor(call)
		}
		return f, true
	case <-call.ended:
		return frame{}, false
	}
}

// readFor reads frames in the reading role until one is for call, routing
// the others.
func (p *Process) readFor(call *inflight) (frame, bool) {
	for {
		typ, d, err := readFrame(p.r, &p.buf, int(p.frameLimit.Load()))
		var broken error
		switch {
		case errors.Is(err, errFrame) || errors.Is(err, errFrameSize):
			broken = err
		case err != nil:
			p.end(nil)
			return frame{}, false
		}
		var id int64
		var c *inflight
		if broken == nil {
			id = d.i64()
			switch typ {
			case msgLog, msgPublish, msgCall, msgDone:
			default:
				broken = fmt.Errorf("message %d during an invocation", typ)
			}
		}
		if broken == nil {
			p.mu.Lock()
			if c = p.calls[id]; c != nil && typ == msgDone {
				delete(p.calls, id)
			}
			// Waiting no more: it will have a frame.
			p.waiters = slices.DeleteFunc(p.waiters, func(w *inflight) bool { return w == c })
			p.mu.Unlock()
			if d.err != nil || c == nil {
				broken = fmt.Errorf("message %d for request %d, which is not in flight", typ, id)
			}
		}
		if broken != nil {
			p.end(broken)
			return frame{}, false
		}
		f := frame{typ: typ, body: append([]byte(nil), d.b...)}
		if c == call {
			p.handOff()
			return f, true
		}
		select {
		case c.frames <- f:
		case <-c.gone:
		}
	}
}

// handOff gives the reading role to a waiting invocation, if any.
func (p *Process) handOff() {
	p.mu.Lock()
	if len(p.waiters) == 0 {
		p.reading = false
		p.mu.Unlock()
		return
	}
	next := p.waiters[0]
	p.waiters = p.waiters[1:]
	p.mu.Unlock()
	next.frames <- frame{typ: tokenFrame}
}

// leave ends call's part in the protocol: a reading role handed to it
// after it stopped listening goes on to another.
func (p *Process) leave(call *inflight) {
	close(call.gone)
	p.mu.Lock()
	p.waiters = slices.DeleteFunc(p.waiters, func(w *inflight) bool { return w == call })
	delete(p.calls, call.id)
	p.mu.Unlock()
	for {
		select {
		case f := <-call.frames:
			if f.typ == tokenFrame {
				p.handOff()
			}
		default:
			return
		}
	}
}

// end records that the worker ended (broken: how it broke the protocol)
// and tells every invocation in flight.
func (p *Process) end(broken error) {
	if broken != nil {
		p.breakProtocol(nil, broken)
	}
	p.mu.Lock()
	p.ended = true
	calls := p.calls
	p.calls = nil
	p.waiters = nil
	p.mu.Unlock()
	for _, c := range calls {
		close(c.ended)
	}
}

// breakProtocol records a violation, blaming c when known, and kills the
// worker.
func (p *Process) breakProtocol(c *inflight, err error) {
	p.mu.Lock()
	if p.broken == nil {
		p.culprit, p.broken = c, err
	}
	p.mu.Unlock()
	p.signalKill()
}

// Result is a worker's answer to an invocation.
type Result struct {
	sandbox.Outcome
	// Err is the trap or exit message when the guest did not return.
	ErrText string
	// Elapsed is the time spent in the guest, measured in the worker.
	Elapsed time.Duration
}

// invokeFrameLimit bounds a frame from a worker during an invocation: the
// largest of its result, a publish and a host call.
func invokeFrameLimit(l sandbox.Limits) int {
	return 4<<10 + max(
		l.ResultBytes+l.ReasonBytes+sandbox.MaxErrText,
		l.PublishBytes+sandbox.MaxSubject,
		l.LogBytes,
		sandbox.MaxHTTPMethod+sandbox.MaxHTTPURL+sandbox.MaxHTTPHeaders+sandbox.MaxHTTPBody,
		sandbox.MaxKVKey+sandbox.MaxKVValue,
	)
}

// Invoke runs one event in the worker, answering its host calls with host;
// it may run while other events do, each in its own instance. During an
// invocation a worker may send only logs, publishes, host calls and one
// final done, each within c.Limits (enforced here, whatever the worker
// claims); logs beyond LogBytes are dropped.
//
// When the worker does not answer as it must, the worker is killed and
// every invocation in flight there ends: this one with ErrTimeout (its
// timeout passed), ErrProtocol (its frame, or one no invocation can be
// blamed for, broke the protocol) or ErrCrashed (the worker died on its
// own), the others with ErrReleased when they were not at fault.
func (p *Process) Invoke(c *sandbox.Call, host Host, timeout time.Duration) (Result, error) {
	p.invoked.Add(1)
	lim := c.Limits.WithDefaults()
	for limit := int64(invokeFrameLimit(lim)); ; {
		cur := p.frameLimit.Load()
		if cur >= limit || p.frameLimit.CompareAndSwap(cur, limit) {
			break
		}
	}
	call := &inflight{frames: make(chan frame, 4), ended: make(chan struct{}), gone: make(chan struct{})}
	p.mu.Lock()
	if p.ended || p.calls == nil {
		p.mu.Unlock()
		return Result{}, ErrReleased
	}
	id := p.nextID
	p.nextID++
	call.id = id
	p.calls[id] = call
	// With other events in flight here, their invocations are likely
	// ready to send too (a backlog): let them join this write.
	gather := len(p.calls) > 1
	p.mu.Unlock()
	defer p.leave(call)
	t := time.AfterFunc(timeout, func() {
		// An invocation already ended with its worker was released (or
		// crashed), not timed out.
		p.mu.Lock()
		ended := p.ended
		p.mu.Unlock()
		if !ended && p.killed.CompareAndSwap(false, true) {
			call.timedOut.Store(true)
			_ = p.cmd.Process.Kill()
		}
	})
	defer t.Stop()
	err := p.out.send(msgInvoke, gather, func(e *enc) {
		e.i64(id)
		e.bytes(c.Payload)
		e.str(c.Subject)
		e.str(c.ID)
		e.strMap(c.Headers)
		e.str(c.Binding)
		e.str(c.Function)
		e.i64(int64(c.Attempt))
		e.i64(int64(lim.ResultBytes))
		e.i64(int64(lim.ReasonBytes))
		e.i64(int64(lim.LogBytes))
		e.i64(int64(lim.PublishBytes))
	})
	if err != nil {
		// The worker is gone; reading tells every invocation.
		for {
			if _, ok := p.await(call); !ok {
				return Result{}, p.endedFor(call)
			}
		}
	}
	logged, truncated := 0, false
	for {
		f, ok := p.await(call)
		if !ok {
			return Result{}, p.endedFor(call)
		}
		d := &dec{b: f.body}
		switch f.typ {
		case msgLog:
			level, line, err := decodeLog(d)
			if err != nil {
				return Result{}, p.blame(call, "log: %v", err)
			}
			room := lim.LogBytes - logged - 1
			if room < 0 {
				truncated = true
				continue
			}
			if len(line) > room {
				line, truncated = line[:room], true
			}
			logged += len(line) + 1
			host.Log(level, strings.ToValidUTF8(line, "\uFFFD"))
		case msgPublish:
			subject, data, err := decodePublish(d)
			if err != nil {
				return Result{}, p.blame(call, "publish: %v", err)
			}
			code := hostCode(host.Publish(subject, data))
			_ = p.out.send(msgHostReply, false, func(e *enc) {
				e.i64(id)
				e.i64(code)
			})
		case msgCall:
			name, args, err := decodeCall(d)
			if err != nil {
				return Result{}, p.blame(call, "host call: %v", err)
			}
			code, data := dispatch(host, name, args)
			_ = p.out.send(msgCallReply, false, func(e *enc) {
				e.i64(id)
				e.i64(code)
				e.fields(data)
			})
		case msgDone:
			r, err := decodeDone(d, lim)
			if err != nil {
				return Result{}, p.blame(call, "done: %v", err)
			}
			r.LogsTruncated = r.LogsTruncated || truncated
			return r, nil
		}
	}
}

// blame kills the worker for call's bad frame and returns the error.
func (p *Process) blame(call *inflight, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	p.breakProtocol(call, err)
	p.wait()
	return fmt.Errorf("%w: %v", ErrProtocol, err)
}

// endedFor says why the worker ended under call.
func (p *Process) endedFor(call *inflight) error {
	p.wait()
	p.mu.Lock()
	culprit, broken := p.culprit, p.broken
	p.mu.Unlock()
	switch {
	case call.timedOut.Load():
		return ErrTimeout
	case broken != nil && (culprit == nil || culprit == call):
		return fmt.Errorf("%w: %v", ErrProtocol, broken)
	case p.killed.Load():
		return ErrReleased
	}
	return p.crashed()
}

// Decoders of the frames a worker sends; each reads a whole body or fails.

func decodeCompiled(d *dec) (module, adapter []byte, err error) {
	module, adapter = d.bytes(), d.bytes()
	if err := d.end(); err != nil {
		return nil, nil, err
	}
	if len(module) == 0 || len(adapter) == 0 {
		return nil, nil, errors.New("empty artifact")
	}
	return module, adapter, nil
}

func decodeLog(d *dec) (level int, line string, err error) {
	l, line := d.i64(), d.str()
	if err := d.end(); err != nil {
		return 0, "", err
	}
	if l < sandbox.LevelDebug || l > sandbox.LevelError {
		return 0, "", fmt.Errorf("level %d", l)
	}
	return int(l), line, nil
}

func decodePublish(d *dec) (subject string, data []byte, err error) {
	subject, data = d.str(), d.bytes()
	return subject, data, d.end()
}

func decodeCall(d *dec) (name string, args [][]byte, err error) {
	name, args = d.str(), d.fields()
	return name, args, d.end()
}

// decodeDone reads a msgDone and checks it against the invocation's limits.
func decodeDone(d *dec, lim sandbox.Limits) (Result, error) {
	var r Result
	status := d.i64()
	r.Status = sandbox.Status(status)
	r.Result = d.bytes()
	r.Reason = d.str()
	r.RetryAfter = time.Duration(d.i64())
	r.ErrText = d.str()
	r.MemoryExceeded = d.bool()
	r.LogsTruncated = d.bool()
	r.Elapsed = time.Duration(d.i64())
	switch err := d.end(); {
	case err != nil:
		return Result{}, err
	case status < math.MinInt32 || status > math.MaxInt32:
		return Result{}, fmt.Errorf("status %d", status)
	case len(r.Result) > lim.ResultBytes:
		return Result{}, fmt.Errorf("result of %d bytes, the limit is %d", len(r.Result), lim.ResultBytes)
	case len(r.Reason) > lim.ReasonBytes:
		return Result{}, fmt.Errorf("reason of %d bytes, the limit is %d", len(r.Reason), lim.ReasonBytes)
	case len(r.ErrText) > sandbox.MaxErrText:
		return Result{}, fmt.Errorf("error text of %d bytes", len(r.ErrText))
	case r.RetryAfter < 0 || r.RetryAfter > 24*time.Hour:
		return Result{}, fmt.Errorf("retry after %s", r.RetryAfter)
	}
	r.Reason = strings.ToValidUTF8(r.Reason, "\uFFFD")
	r.ErrText = strings.ToValidUTF8(r.ErrText, "\uFFFD")
	return r, nil
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
