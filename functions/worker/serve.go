// Package worker runs guest code outside the runtime's process. A worker is
// the runtime's own executable started with SLUICE_WORKER=1; it speaks a
// framed protocol on inherited descriptors 3 and 4 with its supervisor
// (Process), never on stdio, which a guest can name; it holds warm
// instances of one function, one per event in flight, each on its own
// thread, and forwards host calls to the supervisor, which checks them
// against the function's capabilities. Events and their frames are
// multiplexed by a request id. A worker that runs past an event's timeout
// is killed, which really stops the guest; the other events in flight
// there are released (ErrReleased) to run again.
package worker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-run/sluice/functions/sandbox"
)

// EnvVar, set to "1", makes RunIfWorker serve as a worker.
const EnvVar = "SLUICE_WORKER"

// Descriptors of the protocol in a worker (Process.Start passes them).
const (
	fdFromSupervisor = 3
	fdToSupervisor   = 4
)

// RunIfWorker serves the worker protocol and exits when the process was
// started as a worker; otherwise it returns at once. Call it first thing in
// main (and in TestMain of tests that start workers).
func RunIfWorker() {
	if os.Getenv(EnvVar) != "1" {
		return
	}
	// Non-blocking, the input is read through the runtime's poller: the
	// reader parks instead of holding a thread in read(2), and the slot
	// it hands an event to runs on the thread that read it.
	_ = syscall.SetNonblock(fdFromSupervisor, true)
	in := os.NewFile(fdFromSupervisor, "supervisor-in")
	out := os.NewFile(fdToSupervisor, "supervisor-out")
	if in == nil || out == nil {
		fmt.Fprintln(os.Stderr, "sluice worker: started without its protocol descriptors")
		os.Exit(3)
	}
	os.Exit(serve(in, out))
}

type server struct {
	r   *bufio.Reader
	buf []byte

	out frameWriter // every slot writes frames

	engine *sandbox.Engine
	module *sandbox.Module
	env    map[string]string
	fresh  bool

	mu      sync.Mutex
	idle    []*slot         // slots waiting for an event, the most recent last
	running map[int64]*slot // by request id
}

// A slot holds one instance of the module on its own goroutine: every
// wasmer object of the instance is created, called and closed there. A
// worker has as many slots as it was sent events at once. Slots are not
// locked to their threads: a cgo call keeps its thread for its duration,
// which is all wasmer's trap handling needs, and handing an event to a
// locked goroutine wakes its thread, which cost 15 µs of a 27 µs warm
// round trip (measured: p50 42 µs locked against 27 µs unlocked).
type slot struct {
	s     *server
	in    chan job
	reply chan hostReply
	inst  *sandbox.Instance
}

type job struct {
	id   int64
	call *sandbox.Call
}

// hostReply is the supervisor's answer to a slot's publish or host call.
type hostReply struct {
	typ  byte
	code int64
	data [][]byte
}

func serve(in io.Reader, out io.Writer) int {
	// The reader is not locked to its thread: a locked goroutine that
	// blocks on the pipe is woken by a thread hand-off that tripled the
	// round trip (36 µs against 10 µs).
	// One P: handing an event from the reader to a slot then never wakes
	// another thread (the slot runs where the reader parked). Guest code
	// runs in cgo calls, which do not hold the P, so instances still run
	// in parallel.
	runtime.GOMAXPROCS(1)
	s := &server{r: bufio.NewReaderSize(in, 64<<10), out: frameWriter{w: out}, running: map[int64]*slot{}}
	for {
		typ, d, err := readFrame(s.r, &s.buf, maxFrame)
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "sluice worker: %v\n", err)
			return 3
		}
		if err := s.handle(typ, d); err != nil {
			fmt.Fprintf(os.Stderr, "sluice worker: %v\n", err)
			return 3
		}
	}
}

func (s *server) handle(typ byte, d *dec) error {
	switch typ {
	case msgCompile:
		wasm, limit, tier, err := decodeCompile(d)
		if err != nil {
			return err
		}
		return s.compile(wasm, limit, tier)
	case msgLoad:
		l, err := decodeLoad(d)
		if err != nil {
			return err
		}
		s.fresh = l.fresh
		return s.load(l.artifacts, l.limit, l.env)
	case msgInvoke:
		id, call, err := decodeInvoke(d)
		if err != nil {
			return err
		}
		return s.dispatch(id, call)
	case msgHostReply, msgCallReply:
		id := d.i64()
		r := hostReply{typ: typ, code: d.i64()}
		if typ == msgCallReply {
			r.data = d.fields()
		}
		if err := d.end(); err != nil {
			return err
		}
		s.mu.Lock()
		sl := s.running[id]
		s.mu.Unlock()
		if sl == nil {
			return fmt.Errorf("reply to request %d, which is not running", id)
		}
		sl.reply <- r
		return nil
	default:
		return fmt.Errorf("unexpected message %d", typ)
	}
}

func decodeCompile(d *dec) (wasm []byte, limit int64, tier sandbox.Tier, err error) {
	wasm, limit, t := d.bytes(), d.i64(), d.i64()
	if err := d.end(); err != nil {
		return nil, 0, 0, err
	}
	switch tier = sandbox.Tier(t); tier {
	case sandbox.TierOptimized:
	case sandbox.TierFast:
		if !sandbox.FastTierAvailable() {
			return nil, 0, 0, errors.New("the fast tier's compiler is not in this build of wasmer")
		}
	default:
		return nil, 0, 0, fmt.Errorf("unknown compiler tier %d", t)
	}
	return wasm, limit, tier, nil
}

type loadRequest struct {
	artifacts Artifacts
	limit     int64
	env       map[string]string
	fresh     bool
}

func decodeLoad(d *dec) (loadRequest, error) {
	var l loadRequest
	l.artifacts.Paths.Module = d.str()
	copy(l.artifacts.Module[:], d.bytes())
	l.artifacts.Paths.Adapter = d.str()
	copy(l.artifacts.Adapter[:], d.bytes())
	l.limit = d.i64()
	l.env = flatten(d.strMap())
	l.fresh = d.bool()
	return l, d.end()
}

func decodeInvoke(d *dec) (int64, *sandbox.Call, error) {
	id := d.i64()
	call := &sandbox.Call{
		Payload: d.bytes(), Subject: d.str(), ID: d.str(), Headers: d.strMap(),
		Binding: d.str(), Function: d.str(), Attempt: int(d.i64()),
		Limits: sandbox.Limits{ResultBytes: int(d.i64()), ReasonBytes: int(d.i64()), LogBytes: int(d.i64()), PublishBytes: int(d.i64())},
	}
	return id, call, d.end()
}

func (s *server) sendError(err error) error {
	return s.out.send(msgError, false, func(e *enc) {
		e.bool(errors.Is(err, sandbox.ErrArtifactDigest))
		e.str(truncate(err.Error(), sandbox.MaxErrText))
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// compile runs no guest code: the first function worker's Load proves
// that the module instantiates and its _initialize returns.
func (s *server) compile(wasm []byte, limit int64, tier sandbox.Tier) error {
	module, adapter, err := sandbox.NewTierEngine("", tier).CompileArtifacts(wasm, limit)
	if err != nil {
		return s.sendError(err)
	}
	if len(module)+len(adapter) > maxCompiledFrame-64 {
		return s.sendError(fmt.Errorf("compiled module of %d bytes is over the limit of %d", len(module), sandbox.MaxArtifactSize))
	}
	return s.out.send(msgCompiled, false, func(e *enc) {
		e.bytes(module)
		e.bytes(adapter)
	})
}

// load checks the artifacts against the digests the supervisor recorded
// before deserializing them, then starts a first slot, whose instance
// proves the module instantiates; this worker has run no guest code yet.
func (s *server) load(a Artifacts, limit int64, env map[string]string) error {
	if s.module != nil {
		return errors.New("a module is already loaded")
	}
	if s.engine == nil {
		s.engine = sandbox.NewEngine("")
	}
	m, err := s.engine.LoadArtifacts(a.Paths, a.Module, a.Adapter, limit)
	if err != nil {
		return s.sendError(err)
	}
	s.module, s.env = m, env
	sl := s.newSlot()
	ready := make(chan error, 1)
	go sl.run(ready)
	if err := <-ready; err != nil {
		return s.sendError(err)
	}
	s.idle = append(s.idle, sl)
	return s.out.send(msgReady, false, func(*enc) {})
}

func (s *server) newSlot() *slot {
	return &slot{s: s, in: make(chan job, 1), reply: make(chan hostReply, 1)}
}

// dispatch hands an event to an idle slot, or to a new one: the
// supervisor sends no more events at once than it wants instances.
func (s *server) dispatch(id int64, call *sandbox.Call) error {
	if s.module == nil {
		return errors.New("an event before a module was loaded")
	}
	s.mu.Lock()
	if s.running[id] != nil {
		s.mu.Unlock()
		return fmt.Errorf("request %d is already running", id)
	}
	var sl *slot
	if n := len(s.idle); n > 0 {
		sl = s.idle[n-1]
		s.idle = s.idle[:n-1]
	} else {
		sl = s.newSlot()
		go sl.run(nil)
	}
	s.running[id] = sl
	s.mu.Unlock()
	sl.in <- job{id: id, call: call}
	return nil
}

// run is a slot's goroutine. It instantiates the module at once when
// ready is given (and reports the result there), else at its first event.
func (sl *slot) run(ready chan<- error) {
	s := sl.s
	if ready != nil {
		inst, err := s.module.Instantiate(s.env)
		ready <- err
		if err != nil {
			return
		}
		sl.inst = inst
	}
	for j := range sl.in {
		sl.invoke(j)
	}
}

func (sl *slot) invoke(j job) {
	s := sl.s
	call := j.call
	call.Host = &hostProxy{sl: sl, id: j.id}
	var out sandbox.Outcome
	if sl.inst == nil {
		inst, err := s.module.Instantiate(s.env)
		if err != nil {
			out.Err = fmt.Errorf("instantiate: %w", err)
		}
		sl.inst = inst
	}
	start := time.Now()
	if sl.inst != nil {
		out = sl.inst.Handle(call)
	}
	elapsed := time.Since(start)
	if out.Err != nil || s.fresh {
		// A trapped instance may be inconsistent; a fresh-instance
		// function gets a new one for every event.
		if sl.inst != nil {
			sl.inst.Close()
			sl.inst = nil
		}
	}
	errText := ""
	if out.Err != nil {
		errText = truncate(strings.ToValidUTF8(out.Err.Error(), "?"), sandbox.MaxErrText)
		if errText == "" {
			errText = "trap"
		}
	}
	// Idle before done: the supervisor may send the next event as soon as
	// it reads done, and it should find this slot, not start another.
	s.mu.Lock()
	delete(s.running, j.id)
	s.idle = append(s.idle, sl)
	s.mu.Unlock()
	err := s.out.send(msgDone, false, func(e *enc) {
		e.i64(j.id)
		e.i64(int64(out.Status))
		e.bytes(out.Result)
		e.str(out.Reason)
		e.i64(int64(out.RetryAfter))
		e.str(errText)
		e.bool(out.MemoryExceeded)
		e.bool(out.LogsTruncated)
		e.i64(int64(elapsed))
	})
	if err != nil {
		// The supervisor is gone.
		os.Exit(3)
	}
}

// hostProxy answers one request's host calls by asking the supervisor.
type hostProxy struct {
	sl *slot
	id int64
}

// roundTrip sends a frame of type typ built by build and waits for the
// supervisor's reply to this request.
func (h *hostProxy) roundTrip(typ byte, build func(e *enc)) (hostReply, error) {
	if err := h.sl.s.out.send(typ, false, build); err != nil {
		return hostReply{}, err
	}
	return <-h.sl.reply, nil
}

func (h *hostProxy) Publish(subject string, data []byte) error {
	r, err := h.roundTrip(msgPublish, func(e *enc) {
		e.i64(h.id)
		e.str(subject)
		e.bytes(data)
	})
	if err != nil {
		return err
	}
	if r.typ != msgHostReply {
		return fmt.Errorf("unexpected message %d awaiting a host reply", r.typ)
	}
	return sandbox.CodeError(r.code, "publish")
}

func (h *hostProxy) Log(level int, line string) {
	_ = h.sl.s.out.send(msgLog, false, func(e *enc) {
		e.i64(h.id)
		e.i64(int64(level))
		e.str(line)
	})
}

func hostCode(err error) int64 { return int64(sandbox.ErrorCode(err)) }

func flatten(m map[string][]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}
