package worker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/sluice-run/sluice/functions/sandbox"
)

// frameOf encodes one frame as the protocol does.
func frameOf(typ byte, fill func(e *enc)) []byte {
	var out bytes.Buffer
	fw := frameWriter{w: &out}
	_ = fw.send(typ, false, fill)
	return out.Bytes()
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader, frame after
// frame as combined writes deliver them, and every decoder, as a hostile
// worker (or a corrupted supervisor) could: none may panic, allocate
// beyond the frame's bound or accept a frame with bytes left over.
func FuzzReadFrame(f *testing.F) {
	lim := sandbox.Limits{ResultBytes: 1 << 10, ReasonBytes: 256, LogBytes: 1 << 10, PublishBytes: 1 << 10}.WithDefaults()
	f.Add(frameOf(msgDone, func(e *enc) {
		e.i64(0)
		e.bytes([]byte("ok"))
		e.str("")
		e.i64(0)
		e.str("")
		e.bool(false)
		e.bool(false)
		e.i64(5)
	}))
	f.Add(frameOf(msgLog, func(e *enc) { e.i64(1); e.str("hello") }))
	f.Add(frameOf(msgPublish, func(e *enc) { e.str("a.b"); e.bytes([]byte("data")) }))
	f.Add(frameOf(msgCall, func(e *enc) { e.str("kv_get"); e.fields([][]byte{[]byte("k")}) }))
	f.Add(frameOf(msgCompiled, func(e *enc) { e.bytes([]byte("m")); e.bytes([]byte("a")) }))
	f.Add(frameOf(msgError, func(e *enc) { e.bool(true); e.str("stale") }))
	f.Add(frameOf(msgReady, func(*enc) {}))
	f.Add(frameOf(msgInvoke, func(e *enc) {
		e.bytes([]byte("payload"))
		e.str("subj")
		e.str("id")
		e.strMap(map[string][]string{"K": {"v", "w"}})
		e.str("binding")
		e.str("fn")
		e.i64(1)
		e.i64(1 << 10)
		e.i64(256)
		e.i64(1 << 10)
		e.i64(1 << 10)
	}))
	f.Add(frameOf(msgLoad, func(e *enc) {
		e.str("/cache/k")
		e.bytes(make([]byte, 32))
		e.str("/cache/adapter")
		e.bytes(make([]byte, 32))
		e.i64(1 << 20)
		e.strMap(map[string][]string{"A": {"1"}})
		e.bool(true)
	}))
	f.Add(frameOf(msgCompile, func(e *enc) { e.bytes([]byte("\x00asm")); e.i64(1 << 20) }))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, msgDone})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 3, msgLog, 0x80, 0x80})

	// Frames written together, as a combined write carries them.
	f.Add(append(frameOf(msgLog, func(e *enc) { e.i64(1); e.i64(1); e.str("a") }),
		frameOf(msgDone, func(e *enc) {
			e.i64(1)
			e.i64(0)
			e.bytes(nil)
			e.str("")
			e.i64(0)
			e.str("")
			e.bool(false)
			e.bool(false)
			e.i64(1)
		})...))

	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		// Every frame in the input, one after the other from one reader.
		r := bufio.NewReader(bytes.NewReader(b))
		for rest := b; ; {
			var buf []byte
			typ, d, err := readFrame(r, &buf, limit)
			if err != nil {
				if len(rest) >= 4 && binary.BigEndian.Uint32(rest) > limit && !errors.Is(err, errFrameSize) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("an over-long frame gave %v", err)
				}
				return
			}
			rest = rest[4+binary.BigEndian.Uint32(rest):]
			if cap(buf) > limit {
				t.Fatalf("read buffer grew to %d bytes past the limit", cap(buf))
			}
			checkDecoders(t, typ, append([]byte(nil), d.b...), lim)
		}
	})
}

// checkDecoders runs every decoder on a frame body: none may panic or
// accept the body with bytes left over, and a done must be within lim.
func checkDecoders(t *testing.T, typ byte, body []byte, lim sandbox.Limits) {
	decoders := []func(d *dec) error{
		func(d *dec) error { _, err := decodeDone(d, lim); return err },
		func(d *dec) error { _, _, err := decodeLog(d); return err },
		func(d *dec) error { _, _, err := decodePublish(d); return err },
		func(d *dec) error { _, _, err := decodeCall(d); return err },
		func(d *dec) error { _, _, err := decodeCompiled(d); return err },
		func(d *dec) error { _, err := workerError(d); return err },
		func(d *dec) error { _, _, _, err := decodeCompile(d); return err },
		func(d *dec) error { _, err := decodeLoad(d); return err },
		func(d *dec) error { _, _, err := decodeInvoke(d); return err },
	}
	for _, decode := range decoders {
		d := &dec{b: append([]byte(nil), body...)}
		if err := decode(d); err == nil && len(d.b) != 0 {
			t.Fatalf("frame %d decoded with %d bytes left over", typ, len(d.b))
		}
	}
	if typ == msgDone {
		if r, err := decodeDone(&dec{b: body}, lim); err == nil && (len(r.Result) > lim.ResultBytes || len(r.Reason) > lim.ReasonBytes) {
			t.Fatalf("done frame beyond its limits accepted: %d result bytes, %d reason bytes", len(r.Result), len(r.Reason))
		}
	}
}

// gateWriter records each write; the first one waits for open.
type gateWriter struct {
	open   chan struct{}
	mu     sync.Mutex
	writes [][]byte
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	first := len(g.writes) == 0
	g.writes = append(g.writes, append([]byte(nil), p...))
	g.mu.Unlock()
	if first {
		<-g.open
	}
	return len(p), nil
}

// TestFramesQueuedDuringAWriteShareTheNextWrite: frames sent while a write
// is under way do not wait for it; the writer sends them all in one more
// write, each still a whole frame with its own request id.
func TestFramesQueuedDuringAWriteShareTheNextWrite(t *testing.T) {
	g := &gateWriter{open: make(chan struct{})}
	fw := &frameWriter{w: g}
	first := make(chan error, 1)
	go func() {
		first <- fw.send(msgInvoke, false, func(e *enc) { e.i64(0) })
	}()
	for {
		g.mu.Lock()
		n := len(g.writes)
		g.mu.Unlock()
		if n == 1 {
			break
		}
		runtime.Gosched()
	}
	const queued = 5
	for id := 1; id <= queued; id++ {
		// Returns at once: the write under way takes the frame.
		if err := fw.send(msgInvoke, false, func(e *enc) { e.i64(int64(id)) }); err != nil {
			t.Fatal(err)
		}
	}
	close(g.open)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if len(g.writes) != 2 {
		t.Fatalf("%d writes, want 2 (the first frame, then the %d queued together)", len(g.writes), queued)
	}
	r := bufio.NewReader(bytes.NewReader(g.writes[1]))
	var buf []byte
	for want := int64(1); want <= queued; want++ {
		typ, d, err := readFrame(r, &buf, 1<<10)
		if err != nil {
			t.Fatalf("frame %d: %v", want, err)
		}
		if id := d.i64(); typ != msgInvoke || id != want || d.end() != nil {
			t.Fatalf("frame %d: type %d, request %d", want, typ, id)
		}
	}
	if _, _, err := readFrame(r, &buf, 1<<10); !errors.Is(err, io.EOF) {
		t.Fatalf("bytes after the queued frames: %v", err)
	}
}

// TestAFailedWriteFailsLaterSends: once the pipe is broken, sends fail
// instead of queueing frames no one will write.
func TestAFailedWriteFailsLaterSends(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	fw := &frameWriter{w: w}
	defer w.Close()
	if err := fw.send(msgReady, false, func(*enc) {}); err == nil {
		t.Fatal("a write to a closed pipe succeeded")
	}
	if err := fw.send(msgReady, false, func(*enc) {}); err == nil {
		t.Fatal("a send after a failed write succeeded")
	}
}
