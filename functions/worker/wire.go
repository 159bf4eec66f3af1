package worker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
)

// Message types of the framed protocol between a supervisor and a worker.
// Each frame is a uint32 length (of type + body), a type byte and a body of
// fields appended with the enc helpers.
//
// The worker is untrusted (it runs guest code): the supervisor accepts from
// it only the frames its state allows, within the bounds that state sets,
// and kills it on anything else (process.go).
const (
	// supervisor -> worker
	msgCompile   byte = 1 // wasm bytes, memory limit, compiler tier -> msgCompiled | msgError
	msgLoad      byte = 2 // artifact paths and digests, memory limit, env, fresh -> msgReady | msgError
	msgInvoke    byte = 3 // request id, one event -> (msgPublish | msgLog | msgCall)* msgDone, each with the id
	msgHostReply byte = 4 // answer to msgPublish: request id, error code
	msgCallReply byte = 5 // answer to msgCall: request id, code, data fields

	// worker -> supervisor
	msgCompiled byte = 10 // module artifact, adapter artifact
	msgReady    byte = 11
	msgError    byte = 12 // stale artifact (compile again), text
	msgPublish  byte = 13
	msgLog      byte = 14
	msgDone     byte = 15
	msgCall     byte = 16 // a host call: name, argument fields -> msgCallReply
)

// maxFrame bounds one frame from the supervisor (an event or a module to
// compile, with room); frames from a worker have tighter bounds by state.
const maxFrame = 80 << 20

var errFrame = errors.New("worker protocol: malformed frame")

// errFrameSize is a frame longer than its reader allows.
var errFrameSize = errors.New("worker protocol: frame too long")

type enc struct{ b []byte }

func (e *enc) u64(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *enc) i64(v int64) { e.b = binary.AppendVarint(e.b, v) }

func (e *enc) bytes(p []byte) {
	e.u64(uint64(len(p)))
	e.b = append(e.b, p...)
}

func (e *enc) str(s string) {
	e.u64(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *enc) fields(fs [][]byte) {
	e.u64(uint64(len(fs)))
	for _, f := range fs {
		e.bytes(f)
	}
}

func (e *enc) strMap(m map[string][]string) {
	e.u64(uint64(len(m)))
	for k, vs := range m {
		e.str(k)
		e.u64(uint64(len(vs)))
		for _, v := range vs {
			e.str(v)
		}
	}
}

// frameWriter writes frames from many goroutines and combines them: a
// frame sent while another sender's write is under way is queued, and that
// writer writes everything queued in one more write(2) before it returns.
// Several events (or results) ready at once thus cross the pipe together,
// each still its own frame with its own request id and bounds, and a sender
// never waits behind another's write.
type frameWriter struct {
	w io.Writer

	mu      sync.Mutex
	q       enc    // frames queued for the next write
	spare   []byte // the previous write's buffer, reused
	writing bool   // a sender is writing; it takes what is queued
	err     error  // the first failed write: the pipe is broken for good
}

// maxSpare bounds the write buffer kept between writes (a compile frame
// carries a whole module).
const maxSpare = 1 << 20

// send queues one frame, its body appended to e by build, and writes
// every queued frame unless another sender is writing them. With gather,
// the writer first yields once, so that goroutines ready to send join its
// write; a lone sender must not, as yielding wakes an idle thread. A queued frame
// whose write then fails is not reported to its sender: the peer is gone,
// and its reader sees the end.
func (fw *frameWriter) send(typ byte, gather bool, build func(e *enc)) error {
	fw.mu.Lock()
	if fw.err != nil {
		fw.mu.Unlock()
		return fw.err
	}
	start := len(fw.q.b)
	fw.q.b = append(fw.q.b, 0, 0, 0, 0, typ)
	build(&fw.q)
	binary.BigEndian.PutUint32(fw.q.b[start:], uint32(len(fw.q.b)-start-4))
	if fw.writing {
		fw.mu.Unlock()
		return nil
	}
	fw.writing = true
	if gather {
		fw.mu.Unlock()
		runtime.Gosched()
		fw.mu.Lock()
	}
	for len(fw.q.b) > 0 && fw.err == nil {
		buf := fw.q.b
		fw.q.b, fw.spare = fw.spare[:0], nil
		fw.mu.Unlock()
		_, err := fw.w.Write(buf)
		fw.mu.Lock()
		switch {
		case cap(buf) > maxSpare:
		case len(fw.q.b) == 0:
			fw.q.b, fw.spare = buf[:0], fw.q.b
		default:
			fw.spare = buf[:0]
		}
		if err != nil {
			fw.err = err
		}
	}
	fw.writing = false
	err := fw.err
	fw.mu.Unlock()
	return err
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errFrame
	}
}

func (d *dec) u64() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) i64() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.u64()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	// A copy: frames are read into a reused buffer.
	p := make([]byte, n)
	copy(p, d.b)
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string { return string(d.bytes()) }

func (d *dec) bool() bool {
	if len(d.b) < 1 {
		d.fail()
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

func (d *dec) fields() [][]byte {
	n := d.u64()
	if n > math.MaxInt8 {
		d.fail()
		return nil
	}
	fs := make([][]byte, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		fs = append(fs, d.bytes())
	}
	return fs
}

func (d *dec) strMap() map[string][]string {
	n := d.u64()
	if n > math.MaxInt16 {
		d.fail()
		return nil
	}
	m := make(map[string][]string, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.str()
		nv := d.u64()
		if nv > math.MaxInt16 {
			d.fail()
			return nil
		}
		vs := make([]string, 0, nv)
		for j := uint64(0); j < nv && d.err == nil; j++ {
			vs = append(vs, d.str())
		}
		m[k] = vs
	}
	return m
}

// end fails the decoder unless the whole body was read: a frame carries
// exactly its fields.
func (d *dec) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errFrame, len(d.b))
	}
	return d.err
}

// readFrame reads one frame of at most limit bytes into buf (grown as
// needed) and returns its type and a decoder over its body.
func readFrame(r *bufio.Reader, buf *[]byte, limit int) (byte, *dec, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 1 {
		return 0, nil, fmt.Errorf("%w: length %d", errFrame, n)
	}
	if uint64(n) > uint64(limit) {
		return 0, nil, fmt.Errorf("%w: %d bytes, at most %d allowed here", errFrameSize, n, limit)
	}
	if cap(*buf) < int(n) {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return b[0], &dec{b: b[1:]}, nil
}
