// Package worker runs guest code outside the runtime's process. A worker is
// the runtime's own executable started with SLUICE_WORKER=1; it speaks a
// framed protocol on stdin/stdout with its supervisor (Process), holds one
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
	"time"

	"github.com/sluice-run/sluice/functions/sandbox"
)

// EnvVar, set to "1", makes RunIfWorker serve as a worker.
const EnvVar = "SLUICE_WORKER"

// RunIfWorker serves the worker protocol on stdin/stdout and exits when the
// process was started as a worker; otherwise it returns at once. Call it
// first thing in main (and in TestMain of tests that start workers).
func RunIfWorker() {
	if os.Getenv(EnvVar) != "1" {
		return
	}
	os.Exit(serve(os.Stdin, os.Stdout))
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
		typ, d, err := readFrame(s.r, &s.buf)
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
		path, limit, cacheDir := d.str(), d.i64(), d.str()
		if d.err != nil {
			return d.err
		}
		return s.compile(path, limit, cacheDir)
	case msgLoad:
		artifact, limit := d.str(), d.i64()
		env := flatten(d.strMap())
		s.fresh = d.bool()
		if d.err != nil {
			return d.err
		}
		return s.load(artifact, limit, env)
	case msgInvoke:
		return s.invoke(d)
	default:
		return fmt.Errorf("unexpected message %d", typ)
	}
}

func (s *server) sendError(err error) error {
	s.e.reset(msgError)
	s.e.str(err.Error())
	return s.e.send(s.w)
}

func (s *server) compile(path string, limit int64, cacheDir string) error {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return s.sendError(err)
	}
	m, err := sandbox.NewEngine(cacheDir).Compile(wasm, limit)
	if err != nil {
		return s.sendError(err)
	}
	s.e.reset(msgCompiled)
	s.e.str(m.Version)
	s.e.bool(m.CacheHit)
	s.e.str(m.ArtifactPath)
	return s.e.send(s.w)
}

func (s *server) load(artifact string, limit int64, env map[string]string) error {
	if s.engine == nil {
		s.engine = sandbox.NewEngine("")
	}
	m, err := s.engine.LoadArtifact(artifact, limit)
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

func (s *server) invoke(d *dec) error {
	call := &sandbox.Call{
		Payload: d.bytes(), Subject: d.str(), ID: d.str(), Headers: d.strMap(),
		Binding: d.str(), Function: d.str(), Attempt: int(d.i64()),
		Limits: sandbox.Limits{ResultBytes: int(d.i64()), ReasonBytes: int(d.i64()), LogBytes: int(d.i64())},
	}
	if d.err != nil {
		return d.err
	}
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
		errText = out.Err.Error()
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
	// The supervisor enforces the real limit; this one keeps the frame
	// within the protocol's bound.
	if len(data)+len(subject) > maxFrame-1024 {
		return sandbox.ErrTooLarge
	}
	s := h.s
	s.e.reset(msgPublish)
	s.e.str(subject)
	s.e.bytes(data)
	if err := s.e.send(s.w); err != nil {
		return err
	}
	typ, d, err := readFrame(s.r, &s.buf)
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
