package guestbuild

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ascServerScript loads the AssemblyScript compiler (argv[2]: its
// dist/asc.js) once and compiles one request per line of stdin, {"dir",
// "args"}, answering {"ok", "output"} on fd 3, so that nothing the compiler
// prints can be taken for an answer; "internal" marks an exception of the
// script itself (a compiler whose API differs), not of a compile. asc adds each --lib file to its table
// of library files for good: the keys added by a compile are removed after
// it, so that one function's library does not leak into the next.
const ascServerScript = `
import { createInterface } from "node:readline";
import { writeSync } from "node:fs";
import { pathToFileURL } from "node:url";
const asc = await import(pathToFileURL(process.argv[2]).href);
const builtin = new Set(Object.keys(asc.libraryFiles));
for await (const line of createInterface({ input: process.stdin })) {
  let ok = false, internal = false, output = "";
  try {
    const req = JSON.parse(line);
    process.chdir(req.dir);
    const stdout = asc.createMemoryStream(), stderr = asc.createMemoryStream();
    const res = await asc.main(req.args, { stdout, stderr });
    ok = !res.error;
    output = stdout.toString() + stderr.toString();
    if (res.error && !output.trim()) output = String(res.error);
  } catch (e) {
    internal = true;
    output = String((e && e.stack) || e);
  }
  for (const k of Object.keys(asc.libraryFiles)) if (!builtin.has(k)) delete asc.libraryFiles[k];
  writeSync(3, JSON.stringify({ ok, internal, output }) + "\n");
}
`

// ascPackage returns the dist/asc.js of the AssemblyScript package whose
// asc command is at path (a link into the package's bin directory), or ""
// when it is not laid out that way or node is not on PATH.
func ascPackage(path string) string {
	if _, err := exec.LookPath("node"); err != nil {
		return ""
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return ""
	}
	js := filepath.Join(filepath.Dir(filepath.Dir(real)), "dist", "asc.js")
	if _, err := os.Stat(js); err != nil {
		return ""
	}
	return js
}

// ascServer is a node process with the AssemblyScript compiler loaded,
// compiling one module at a time. A compile that outlives its context
// kills the process: the next build starts another.
type ascServer struct {
	mu     sync.Mutex // one compile at a time
	cmd    *exec.Cmd
	in     io.WriteCloser
	answer *bufio.Reader
	stderr *tailBuffer
	exited chan struct{} // closed once the process has exited and been reaped
}

type ascAnswer struct {
	OK       bool   `json:"ok"`
	Internal bool   `json:"internal"`
	Output   string `json:"output"`
}

var (
	// errASCProcess: the compiler process died during a compile (then a
	// new asc process does that build).
	errASCProcess = errors.New("the AssemblyScript compiler process died")
	// errASCInternal: the compiler could not be driven in process (then
	// asc processes do this and later builds of that compiler).
	errASCInternal = errors.New("the AssemblyScript compiler could not be run in process")
)

// startASCServer runs script (ascServerScript, in a .mjs file) with node
// for the compiler ascJS.
func startASCServer(script, ascJS string) (*ascServer, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("node", script, ascJS)
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = sysProcAttr()
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start node: %w", err)
	}
	w.Close()
	s := &ascServer{cmd: cmd, in: in, answer: bufio.NewReader(r), stderr: stderr, exited: make(chan struct{})}
	go func() {
		defer close(s.exited)
		cmd.Wait()
		r.Close()
	}()
	return s, nil
}

func (s *ascServer) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// compile runs asc with args in dir and returns its output; an error when
// it reported one or the process died.
func (s *ascServer) compile(ctx context.Context, dir string, args []string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, err := json.Marshal(struct {
		Dir  string   `json:"dir"`
		Args []string `json:"args"`
	}{dir, args})
	if err != nil {
		return nil, err
	}
	type result struct {
		a   ascAnswer
		err error
	}
	done := make(chan result, 1)
	// The reader goroutine ends with the answer, or when the process dies
	// (which closes the pipe); compile waits for it either way.
	go func() {
		var res result
		if _, err := s.in.Write(append(req, '\n')); err != nil {
			res.err = err
			done <- res
			return
		}
		line, err := s.answer.ReadBytes('\n')
		if err != nil {
			res.err = err
		} else if err := json.Unmarshal(line, &res.a); err != nil {
			res.err = fmt.Errorf("unreadable answer %q: %w", line, err)
		}
		done <- res
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		s.kill()
		<-done
		return nil, ctx.Err()
	}
	if res.err != nil {
		s.kill()
		return []byte(s.stderr.String()), fmt.Errorf("%w: %w", errASCProcess, res.err)
	}
	if res.a.Internal {
		return []byte(res.a.Output), errASCInternal
	}
	if !res.a.OK {
		return []byte(res.a.Output), errors.New("compile failed")
	}
	return []byte(res.a.Output), nil
}

func (s *ascServer) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// close ends the process: at once when it is idle (stdin closed, it exits),
// killed when it is still compiling after a second.
func (s *ascServer) close() error {
	s.in.Close()
	select {
	case <-s.exited:
	case <-time.After(time.Second):
		s.kill()
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
