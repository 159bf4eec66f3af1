// Package worker runs guest code outside the runtime's process. A worker is
// the runtime's own executable started with SLUICE_WORKER=1; it speaks a
// framed protocol on inherited descriptors 3 and 4 with its supervisor
// (Process), never on stdio, which a guest can name; it holds one
// warm instance of one function, and forwards host calls to the supervisor,
// which checks them against the function's capabilities. A worker that runs
// past its timeout is killed, which really stops the guest; one that
// crashes fails only the invocation it was running.
package worker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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
	in := os.NewFile(fdFromSupervisor, "supervisor-in")
	out := os.NewFile(fdToSupervisor, "supervisor-out")
	if in == nil || out == nil {
		fmt.Fprintln(os.Stderr, "sluice worker: started without its protocol descriptors")
		os.Exit(3)
	}
	os.Exit(serve(in, out))
}

type server struct {
	r      *bufio.Reader
	w      *bufio.Writer
	e      enc
	buf    []byte
	engine *sandbox.Engine
	module *sandbox.Module
	inst   *sandbox.Instance
	env    map[string]string
	fresh  bool
}

func serve(in io.Reader, out io.Writer) int {
	// Every wasmer object stays on this one goroutine. It is not locked to
	// its thread: a locked goroutine that blocks on the pipe is woken by a
	// thread hand-off that tripled the round trip (36 µs against 10 µs).
	s := &server{r: bufio.NewReaderSize(in, 64<<10), w: bufio.NewWriterSize(out, 64<<10)}
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
		call, err := decodeInvoke(d)
		if err != nil {
			return err
		}
		return s.invoke(call)
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

func decodeInvoke(d *dec) (*sandbox.Call, error) {
	call := &sandbox.Call{
		Payload: d.bytes(), Subject: d.str(), ID: d.str(), Headers: d.strMap(),
		Binding: d.str(), Function: d.str(), Attempt: int(d.i64()),
		Limits: sandbox.Limits{ResultBytes: int(d.i64()), ReasonBytes: int(d.i64()), LogBytes: int(d.i64()), PublishBytes: int(d.i64())},
	}
	return call, d.end()
}

func (s *server) sendError(err error) error {
	s.e.reset(msgError)
	s.e.bool(errors.Is(err, sandbox.ErrArtifactDigest))
	s.e.str(truncate(err.Error(), sandbox.MaxErrText))
	return s.e.send(s.w)
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
	s.e.reset(msgCompiled)
	s.e.bytes(module)
	s.e.bytes(adapter)
	return s.e.send(s.w)
}

// load checks the artifacts against the digests the supervisor recorded
// before deserializing them; this worker has run no guest code yet.
func (s *server) load(a Artifacts, limit int64, env map[string]string) error {
	if s.engine == nil {
		s.engine = sandbox.NewEngine("")
	}
	m, err := s.engine.LoadArtifacts(a.Paths, a.Module, a.Adapter, limit)
	if err != nil {
		return s.sendError(err)
	}
	s.module, s.env = m, env
	if s.inst, err = m.Instantiate(env); err != nil {
		return s.sendError(err)
	}
	s.e.reset(msgReady)
	return s.e.send(s.w)
}

func (s *server) invoke(call *sandbox.Call) error {
	call.Host = &hostProxy{s: s}
	var out sandbox.Outcome
	if s.inst == nil && s.module != nil {
		inst, err := s.module.Instantiate(s.env)
		if err != nil {
			out.Err = fmt.Errorf("instantiate: %w", err)
		}
		s.inst = inst
	}
	start := time.Now()
	switch {
	case s.inst == nil && out.Err == nil:
		out.Err = errors.New("no module loaded")
	case s.inst != nil:
		out = s.inst.Handle(call)
	}
	elapsed := time.Since(start)
	if out.Err != nil || s.fresh {
		// A trapped instance may be inconsistent; a fresh-instance
		// function gets a new one for every event.
		if s.inst != nil {
			s.inst.Close()
			s.inst = nil
		}
	}
	s.e.reset(msgDone)
	s.e.i64(int64(out.Status))
	s.e.bytes(out.Result)
	s.e.str(out.Reason)
	s.e.i64(int64(out.RetryAfter))
	errText := ""
	if out.Err != nil {
		errText = truncate(strings.ToValidUTF8(out.Err.Error(), "?"), sandbox.MaxErrText)
		if errText == "" {
			errText = "trap"
		}
	}
	s.e.str(errText)
	s.e.bool(out.MemoryExceeded)
	s.e.bool(out.LogsTruncated)
	s.e.i64(int64(elapsed))
	return s.e.send(s.w)
}

// hostProxy answers the guest's host calls by asking the supervisor.
type hostProxy struct{ s *server }

func (h *hostProxy) Publish(subject string, data []byte) error {
	s := h.s
	s.e.reset(msgPublish)
	s.e.str(subject)
	s.e.bytes(data)
	if err := s.e.send(s.w); err != nil {
		return err
	}
	typ, d, err := readFrame(s.r, &s.buf, maxFrame)
	if err != nil {
		return err
	}
	if typ != msgHostReply {
		return fmt.Errorf("unexpected message %d awaiting a host reply", typ)
	}
	code := d.i64()
	if d.err != nil {
		return d.err
	}
	return sandbox.CodeError(code, "publish")
}

func (h *hostProxy) Log(level int, line string) {
	s := h.s
	s.e.reset(msgLog)
	s.e.i64(int64(level))
	s.e.str(line)
	_ = s.e.send(s.w)
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
