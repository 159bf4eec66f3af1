package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
)

// callResult is one tight loop of calls.
type callResult struct {
	mean, p50, p99 time.Duration
}

func timeCalls(iters int, call func()) callResult {
	lat := make([]time.Duration, iters)
	start := time.Now()
	for i := range lat {
		t := time.Now()
		call()
		lat[i] = time.Since(t)
	}
	total := time.Since(start)
	slices.Sort(lat)
	return callResult{mean: total / time.Duration(iters), p50: percentile(lat, 50), p99: percentile(lat, 99)}
}

func benchEvent() functions.Event {
	return functions.Event{
		ID: "SLUICE_Q_q-1", Subject: subject, Binding: "q", Data: make([]byte, payloadSize), Attempt: 1,
	}
}

// warmInvoke calls functions.Set.Invoke of the no-op guest in a loop: one
// warm worker, the whole supervisor path (take, frame, pipe, wasm call,
// frame, release).
func warmInvoke(t testing.TB, set *functions.Set, iters int) callResult {
	ev := benchEvent()
	ctx := context.Background()
	return timeCalls(iters, func() {
		if _, err := set.Invoke(ctx, "noop", ev); err != nil {
			t.Fatal(err)
		}
	})
}

// echoChild is the baseline: a child process (this test binary) that
// answers each frame, over the same kind of pipes and buffered framing as
// a worker.
type echoChild struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	w   *bufio.Writer
	r   *bufio.Reader
}

func startEcho(t testing.TB, mode string) *echoChild {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), echoEnv+"="+mode)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &echoChild{cmd: cmd, in: in, w: bufio.NewWriterSize(in, 64<<10), r: bufio.NewReaderSize(out, 64<<10)}
}

func (c *echoChild) close() { _ = c.in.Close(); _ = c.cmd.Wait() }

func pipeRTT(t testing.TB, c *echoChild, iters int) callResult {
	// About the size of an invoke frame for a 128-byte event.
	frame := make([]byte, 4+payloadSize+48)
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	reply := make([]byte, 4+16)
	return timeCalls(iters, func() {
		if _, err := c.w.Write(frame); err != nil {
			t.Fatal(err)
		}
		if err := c.w.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c.r, reply); err != nil {
			t.Fatal(err)
		}
	})
}

// nopHost answers no host calls (the no-op guest makes none).
type nopHost struct{ sandbox.Host }

// inProcessHandle instantiates m in this process and calls the guest's
// handle export directly (sandbox.Instance.Handle, no worker): the cost of
// the wasm call itself.
func inProcessHandle(t testing.TB, m *sandbox.Module, iters int) callResult {
	ev := benchEvent()
	call := &sandbox.Call{
		Payload: ev.Data, Subject: ev.Subject, ID: ev.ID, Binding: ev.Binding,
		Function: "noop", Attempt: 1, Host: nopHost{},
	}
	var r callResult
	inThread(func() {
		inst, err := m.Instantiate(nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer inst.Close()
		r = timeCalls(iters, func() {
			if out := inst.Handle(call); out.Err != nil || out.Status != sandbox.StatusOK {
				t.Errorf("handle: %v %v", out.Status, out.Err)
			}
		})
	})
	return r
}
