package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wasmerio/wasmer-go/wasmer"
)

// ABI v1 error codes returned to the guest.
const (
	codeOK         = 0
	codeBadPointer = -1
	codeDenied     = -2
	codeTooLarge   = -3
	codeFailed     = -4
	codeNotFound   = -5
	codeInvalid    = -6
)

// Errors a Host returns to make a host call fail with the matching ABI code.
var (
	ErrDenied   = errors.New("denied")
	ErrInvalid  = errors.New("invalid argument")
	ErrTooLarge = errors.New("too large")
	ErrNotFound = errors.New("not found")
)

// ErrorCode is the ABI code for a Host's error: 0 for nil, ERR_DENIED,
// ERR_INVALID, ERR_TOO_LARGE or ERR_NOT_FOUND for the matching sentinel, and
// ERR_FAILED for any other error.
func ErrorCode(err error) int32 {
	switch {
	case err == nil:
		return codeOK
	case errors.Is(err, ErrDenied):
		return codeDenied
	case errors.Is(err, ErrInvalid):
		return codeInvalid
	case errors.Is(err, ErrTooLarge):
		return codeTooLarge
	case errors.Is(err, ErrNotFound):
		return codeNotFound
	default:
		return codeFailed
	}
}

// CodeError is the inverse of ErrorCode: nil for 0 (and any other
// non-negative code), a sentinel for the codes that have one, and an error
// naming what failed otherwise.
func CodeError(code int64, what string) error {
	switch {
	case code >= 0:
		return nil
	case code == codeDenied:
		return ErrDenied
	case code == codeInvalid:
		return ErrInvalid
	case code == codeTooLarge:
		return ErrTooLarge
	case code == codeNotFound:
		return ErrNotFound
	default:
		return errors.New(what + " failed")
	}
}

// Limits bound what one invocation may hand back to the host.
type Limits struct {
	ResultBytes int // default 64 KiB
	ReasonBytes int // default 1 KiB
	// LogBytes bounds what one invocation logs: each line counts its
	// bytes and one for its end; lines beyond are dropped. Default 64 KiB.
	LogBytes int
	// PublishBytes bounds one publish's data. Default 1 MiB.
	PublishBytes int
}

// MaxSubject bounds a subject passed to Host.Publish; the host applies
// the broker's own, tighter rules.
const MaxSubject = 64 << 10

// MaxErrText bounds the text of a trap or exit.
const MaxErrText = 4 << 10

// WithDefaults returns l with every unset bound at its default.
func (l Limits) WithDefaults() Limits {
	if l.ResultBytes <= 0 {
		l.ResultBytes = 64 << 10
	}
	if l.ReasonBytes <= 0 {
		l.ReasonBytes = 1 << 10
	}
	if l.LogBytes <= 0 {
		l.LogBytes = 64 << 10
	}
	if l.PublishBytes <= 0 {
		l.PublishBytes = 1 << 20
	}
	return l
}

// Log levels of the ABI's log call.
const (
	LevelDebug = 0
	LevelInfo  = 1
	LevelWarn  = 2
	LevelError = 3
)

// Host answers the host calls of one invocation.
type Host interface {
	// Publish sends data to subject on the guest's behalf. Return ErrDenied,
	// ErrInvalid or ErrTooLarge to refuse; any other error is reported to the
	// guest as a failure it may retry.
	Publish(subject string, data []byte) error
	// Log records one line the guest logged (level is a Level* constant).
	Log(level int, line string)
	// HTTP performs an outbound HTTP request. Return ErrDenied, ErrInvalid
	// or ErrTooLarge to refuse; any other error is ERR_FAILED.
	HTTP(req HTTPRequest) (HTTPResponse, error)
	// KVGet reads key from the function's key-value store (ErrNotFound
	// when it is absent).
	KVGet(key string) ([]byte, error)
	// KVPut writes key in the function's key-value store.
	KVPut(key string, value []byte) error
	// KVDelete removes key from the function's key-value store; an absent
	// key is not an error.
	KVDelete(key string) error
	// Seen records key for ttl and reports whether it was already recorded
	// (and not yet expired).
	Seen(key string, ttl time.Duration) (bool, error)
}

// Call is one event as the guest sees it.
type Call struct {
	Payload  []byte
	Subject  string
	ID       string
	Headers  map[string][]string
	Binding  string
	Function string
	Attempt  int
	Limits   Limits
	Host     Host
}

// Status is what handle returned.
type Status int32

const (
	StatusOK        Status = 0
	StatusFailed    Status = 1
	StatusPermanent Status = 2
)

// Outcome is the result of one call into the guest.
type Outcome struct {
	// Status is handle's return value; meaningless when Err is set.
	Status     Status
	Result     []byte
	Reason     string
	RetryAfter time.Duration
	// Err is set when the guest trapped or exited instead of returning.
	Err error
	// MemoryExceeded tells that the trap came with memory at its cap.
	MemoryExceeded bool
	// LogsTruncated tells that the guest logged more than Limits.LogBytes.
	LogsTruncated bool
}

// Instance is one instantiated module. It belongs to the goroutine that
// created it: Handle and Close must be called from that goroutine.
type Instance struct {
	store   *wasmer.Store
	module  *wasmer.Module
	inst    *wasmer.Instance
	memory  *wasmer.Memory
	handle  wasmer.NativeFunction
	maxPage uint32

	// The host-call adapter (adapter.go) and its argument memory.
	adapterMod *wasmer.Module
	adapter    *wasmer.Instance
	regs       *wasmer.Memory

	call    *Call
	out     *Outcome
	logged  int
	lineBuf [3]bytes.Buffer // partial stdout/stderr lines, by fd
	// lastStderr is the invocation's last non-empty stderr line: a guest
	// that exits (proc_exit) usually said why there, and the exit's error
	// carries it to the outcome instead of only to the log.
	lastStderr string
	oomHints   bool
	httpResp   *HTTPResponse // the invocation's last HTTP response
}

// Instantiate creates an instance and runs its _initialize export, if any.
// env is the guest's whole WASI environment. Host calls made by
// _initialize are inert.
func (m *Module) Instantiate(env map[string]string) (*Instance, error) {
	mod, err := m.module()
	if err != nil {
		return nil, fmt.Errorf("load compiled module: %w", err)
	}
	adapter, err := m.adapterArtifact()
	if err != nil {
		return nil, err
	}
	store := wasmer.NewStore(m.engine)
	in := &Instance{store: store, module: mod, maxPage: uint32(m.MemoryLimit / pageSize)}
	if err := in.instantiate(env, adapter); err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// module returns the deserialized module every instance is made from,
// deserializing it the first time. A loaded artifact's bytes are then
// returned to the system: wasmer keeps what it needs (a compiled module
// keeps them, to store them in the cache).
func (m *Module) module() (*wasmer.Module, error) {
	m.modMu.Lock()
	defer m.modMu.Unlock()
	if m.shared != nil {
		return m.shared, nil
	}
	mod, err := wasmer.DeserializeModule(wasmer.NewStore(m.engine), m.serialized)
	if err != nil {
		return nil, err
	}
	m.shared = mod
	if m.free != nil {
		m.free()
		m.serialized, m.free = nil, nil
	}
	return mod, nil
}

func (in *Instance) instantiate(env map[string]string, adapter []byte) error {
	imports := wasmer.NewImportObject()
	if wasmer.GetWasiVersion(in.module) != wasmer.WASI_VERSION_INVALID {
		builder := wasmer.NewWasiStateBuilder("sluice-guest")
		for _, k := range slices.Sorted(maps.Keys(env)) {
			builder.Environment(k, env[k])
		}
		wasiEnv, err := builder.Finalize()
		if err != nil {
			return fmt.Errorf("wasi: %w", err)
		}
		if imports, err = wasiEnv.GenerateImportObject(in.store, in.module); err != nil {
			return fmt.Errorf("wasi imports: %w", err)
		}
	}
	fns, err := in.instantiateAdapter(adapter, in.hostHandlers())
	if err != nil {
		return err
	}
	host := make(map[string]wasmer.IntoExtern, len(hostImports))
	for name := range hostImports {
		host[name] = fns[name]
	}
	imports.Register(hostModule, host)
	// Every WASI call that takes a descriptor is the sandbox's own
	// (wasi.go). Guest output goes through our fd_write so that it is
	// bounded and tagged per invocation; wasmer's capture buffers without
	// limit. wasmer 2.0's poll_oneoff panics on clock subscriptions (any Go
	// guest's time.Sleep, and Go's runtime under memory pressure), and the
	// panic aborts the process: ours replaces it.
	wasi := make(map[string]wasmer.IntoExtern, len(wasiSandboxed)+1)
	for name := range wasiSandboxed {
		wasi[name] = fns[name]
	}
	// wasmer's proc_exit unwinds in a way that can crash the host process
	// (wasmer-go #291); an ordinary host-function trap does not.
	wasi["proc_exit"] = wasmer.NewFunction(in.store,
		wasmer.NewFunctionType(wasmer.NewValueTypes(wasmer.I32), wasmer.NewValueTypes()),
		func(args []wasmer.Value) ([]wasmer.Value, error) {
			if line := in.stderrTail(); line != "" {
				return nil, fmt.Errorf("guest exited with code %d: %s", args[0].I32(), line)
			}
			return nil, fmt.Errorf("guest exited with code %d", args[0].I32())
		})
	imports.Register(wasiModule, wasi)
	inst, err := wasmer.NewInstance(in.module, imports)
	if err != nil {
		return fmt.Errorf("instantiate: %w", err)
	}
	in.inst = inst
	if in.memory, err = inst.Exports.GetMemory("memory"); err != nil {
		return fmt.Errorf("%w: %w", ErrBadABI, err)
	}
	handle, err := inst.Exports.GetFunction("handle")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadABI, err)
	}
	in.handle = handle
	if init, err := inst.Exports.GetFunction("_initialize"); err == nil {
		in.call = &Call{Limits: Limits{}.WithDefaults()}
		in.out = &Outcome{}
		_, err := init()
		runtime.KeepAlive(inst)
		runtime.KeepAlive(in.adapter)
		in.call, in.out = nil, nil
		if err != nil {
			return fmt.Errorf("_initialize: %w", err)
		}
	}
	return nil
}

// Handle runs the guest's handle export for one event.
func (in *Instance) Handle(c *Call) Outcome {
	c.Limits = c.Limits.WithDefaults()
	var out Outcome
	in.call, in.out, in.logged, in.oomHints, in.httpResp, in.lastStderr = c, &out, 0, false, nil, ""
	ret, err := in.handle()
	runtime.KeepAlive(in.inst)
	runtime.KeepAlive(in.adapter)
	in.flushLines()
	in.call, in.out, in.httpResp = nil, nil, nil
	if err != nil {
		out.Err = err
		out.MemoryExceeded = in.oomHints || in.nearMemoryCap()
		return out
	}
	code, _ := ret.(int32)
	out.Status = Status(code)
	return out
}

// nearMemoryCap reports whether memory is within a few MiB of its cap: Go
// guests grow their heap in 4 MiB steps, so a failed grow leaves memory
// that close to the cap. Small caps get a proportionally small margin.
func (in *Instance) nearMemoryCap() bool {
	slackPages := min(uint32((8<<20)/pageSize), in.maxPage/4)
	return uint32(in.memory.Size())+slackPages >= in.maxPage
}

// Close frees the instance. It is safe to call more than once.
func (in *Instance) Close() {
	if in.inst != nil {
		in.inst.Close()
		in.inst = nil
	}
	if in.adapter != nil {
		in.adapter.Close()
		in.adapter = nil
	}
	// in.module is the Module's, shared with its other instances.
	in.module = nil
	if in.adapterMod != nil {
		in.adapterMod.Close()
		in.adapterMod = nil
	}
	if in.store != nil {
		in.store.Close()
		in.store = nil
	}
}

// hostHandlers returns the implementation of every adapted host function
// (adapter.go), by import name.
func (in *Instance) hostHandlers() map[string]func([]wasmer.Value) int32 {
	handlers := in.wasiHandlers()
	maps.Copy(handlers, map[string]func([]wasmer.Value) int32{
		"event_get":     in.eventGet,
		"event_attempt": in.eventAttempt,
		"result_set":    in.resultSet,
		"reason_set":    in.reasonSet,
		"retry_after":   in.retryAfter,
		"log":           in.log,
		"publish":       in.publish,

		"http_request":      in.httpRequest,
		"http_response_get": in.httpResponseGet,
		"kv_get":            in.kvGet,
		"kv_put":            in.kvPut,
		"kv_delete":         in.kvDelete,
		"seen":              in.seen,
	})
	return handlers
}

// guest returns the guest bytes at [ptr, ptr+n), or false when the range is
// outside memory. The slice aliases guest memory: use it before the next
// call into the guest.
func (in *Instance) guest(ptr, n int32) ([]byte, bool) {
	data := in.memory.Data()
	start, length := uint64(uint32(ptr)), uint64(uint32(n))
	if start+length > uint64(len(data)) {
		return nil, false
	}
	return data[start : start+length], true
}

func (in *Instance) eventGet(args []wasmer.Value) int32 {
	if in.call == nil {
		return codeFailed
	}
	var field []byte
	switch args[0].I32() {
	case 0:
		field = in.call.Payload
	case 1:
		field = []byte(in.call.Subject)
	case 2:
		field = []byte(in.call.ID)
	case 3:
		field = encodeHeaders(in.call.Headers)
	case 4:
		field = []byte(in.call.Binding)
	case 5:
		field = []byte(in.call.Function)
	default:
		return codeNotFound
	}
	buf, ok := in.guest(args[1].I32(), args[2].I32())
	if !ok {
		return codeBadPointer
	}
	copy(buf, field)
	return int32(len(field))
}

// EncodeHeaders writes h as lines "Name: value\n", names sorted, values in
// order; CR and LF in values become spaces.
func EncodeHeaders(h map[string][]string) []byte { return encodeHeaders(h) }

func encodeHeaders(h map[string][]string) []byte {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		for _, v := range h[k] {
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(strings.NewReplacer("\n", " ", "\r", " ").Replace(v))
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func (in *Instance) eventAttempt(_ []wasmer.Value) int32 {
	if in.call == nil {
		return 0
	}
	return int32(in.call.Attempt)
}

func (in *Instance) resultSet(args []wasmer.Value) int32 {
	if in.call == nil {
		return codeFailed
	}
	b, ok := in.guest(args[0].I32(), args[1].I32())
	if !ok {
		return codeBadPointer
	}
	if len(b) > in.call.Limits.ResultBytes {
		return codeTooLarge
	}
	in.out.Result = append(in.out.Result[:0], b...)
	return codeOK
}

func (in *Instance) reasonSet(args []wasmer.Value) int32 {
	if in.call == nil {
		return codeFailed
	}
	b, ok := in.guest(args[0].I32(), args[1].I32())
	if !ok {
		return codeBadPointer
	}
	limit := in.call.Limits.ReasonBytes
	if len(b) > limit {
		b = b[:limit]
	}
	// Replacing invalid bytes can lengthen the text: cut it again, at a
	// character boundary, so that it stays within the limit.
	r := strings.ToValidUTF8(string(b), "\uFFFD")
	if len(r) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(r[cut]) {
			cut--
		}
		r = r[:cut]
	}
	in.out.Reason = r
	return codeOK
}

func (in *Instance) retryAfter(args []wasmer.Value) int32 {
	if in.call == nil {
		return codeFailed
	}
	ms := args[0].I64()
	if ms < 0 {
		return codeInvalid
	}
	in.out.RetryAfter = time.Duration(min(ms, int64(24*time.Hour/time.Millisecond))) * time.Millisecond
	return codeOK
}

func (in *Instance) log(args []wasmer.Value) int32 {
	if in.call == nil {
		return codeOK
	}
	level := int(args[0].I32())
	if level < LevelDebug || level > LevelError {
		return codeInvalid
	}
	b, ok := in.guest(args[1].I32(), args[2].I32())
	if !ok {
		return codeBadPointer
	}
	in.emit(level, b)
	return codeOK
}

// emit logs one line within the per-invocation budget.
func (in *Instance) emit(level int, b []byte) {
	if in.call.Host == nil {
		return
	}
	// A line costs its end too, so that empty lines cannot flood.
	room := in.call.Limits.LogBytes - in.logged - 1
	if room < 0 {
		in.out.LogsTruncated = true
		return
	}
	if len(b) > room {
		b = b[:room]
		in.out.LogsTruncated = true
	}
	in.logged += len(b) + 1
	in.call.Host.Log(level, strings.ToValidUTF8(string(b), "\uFFFD"))
}

func (in *Instance) publish(args []wasmer.Value) int32 {
	if in.call == nil || in.call.Host == nil {
		return codeFailed
	}
	subj, ok := in.guest(args[0].I32(), args[1].I32())
	if !ok {
		return codeBadPointer
	}
	data, ok := in.guest(args[2].I32(), args[3].I32())
	if !ok {
		return codeBadPointer
	}
	if len(subj) > MaxSubject {
		return codeInvalid
	}
	if len(data) > in.call.Limits.PublishBytes {
		return codeTooLarge
	}
	return ErrorCode(in.call.Host.Publish(string(subj), bytes.Clone(data)))
}

// maxIovecs bounds the vectors of one fd_write (POSIX's IOV_MAX).
const maxIovecs = 1024

// fdWrite implements WASI fd_write for stdout and stderr, which become log
// lines; no other descriptor exists in the sandbox.
func (in *Instance) fdWrite(args []wasmer.Value) int32 {
	fd := args[0].I32()
	if fd != 1 && fd != 2 {
		return errnoBadf
	}
	if n := args[2].I32(); n < 0 || n > maxIovecs {
		return errnoInval
	}
	iovs, ok := in.guest(args[1].I32(), args[2].I32()*8)
	if !ok {
		return errnoFault
	}
	iovs = bytes.Clone(iovs)
	var total uint32
	for i := 0; i+8 <= len(iovs); i += 8 {
		ptr := int32(binary.LittleEndian.Uint32(iovs[i:]))
		n := int32(binary.LittleEndian.Uint32(iovs[i+4:]))
		b, ok := in.guest(ptr, n)
		if !ok {
			return errnoFault
		}
		in.writeStream(int(fd), b)
		total += uint32(len(b))
	}
	nw, ok := in.guest(args[3].I32(), 4)
	if !ok {
		return errnoFault
	}
	binary.LittleEndian.PutUint32(nw, total)
	return errnoSuccess
}

func (in *Instance) writeStream(fd int, b []byte) {
	if in.call == nil {
		return
	}
	if fd == 2 && bytes.Contains(b, []byte("out of memory")) {
		in.oomHints = true
	}
	level := LevelInfo
	if fd == 2 {
		level = LevelWarn
	}
	buf := &in.lineBuf[fd]
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			room := in.call.Limits.LogBytes - buf.Len()
			if len(b) > room {
				in.out.LogsTruncated = true
			}
			buf.Write(b[:max(0, min(len(b), room))])
			return
		}
		buf.Write(b[:i])
		if fd == 2 && len(bytes.TrimSpace(buf.Bytes())) > 0 {
			in.lastStderr = string(buf.Bytes()[:min(buf.Len(), maxStderrTail)])
		}
		in.emit(level, buf.Bytes())
		buf.Reset()
		b = b[i+1:]
	}
}

// maxStderrTail bounds the stderr line an exit error carries.
const maxStderrTail = 256

// stderrTail returns the stderr line an exit explains itself with: the
// pending partial line if it has text, else the last complete one.
func (in *Instance) stderrTail() string {
	line := in.lastStderr
	if p := bytes.TrimSpace(in.lineBuf[2].Bytes()); len(p) > 0 {
		line = string(p[:min(len(p), maxStderrTail)])
	}
	return strings.ToValidUTF8(strings.TrimSpace(line), "\uFFFD")
}

func (in *Instance) flushLines() {
	for fd := 1; fd <= 2; fd++ {
		if in.lineBuf[fd].Len() > 0 {
			level := LevelInfo
			if fd == 2 {
				level = LevelWarn
			}
			in.emit(level, in.lineBuf[fd].Bytes())
			in.lineBuf[fd].Reset()
		}
	}
}

// pollOneoff implements WASI poll_oneoff for clocks (by sleeping; a guest
// that sleeps past its timeout is stopped with its worker) and for the
// standard descriptors (always ready: stdin is empty, stdout and stderr
// never block).
func (in *Instance) pollOneoff(args []wasmer.Value) int32 {
	const subSize, eventSize = 48, 32
	n := args[2].I32()
	if n <= 0 || n > 1024 {
		return errnoInval
	}
	subs, ok := in.guest(args[0].I32(), n*subSize)
	if !ok {
		return errnoFault
	}
	subs = bytes.Clone(subs)
	type ready struct {
		userdata uint64
		errno    uint16
		typ      uint8
	}
	var events []ready
	sleep := time.Duration(-1)
	for i := int32(0); i < n; i++ {
		sub := subs[i*subSize : (i+1)*subSize]
		userdata, tag := binary.LittleEndian.Uint64(sub), sub[8]
		switch tag {
		case 0: // clock
			timeout := time.Duration(min(binary.LittleEndian.Uint64(sub[24:]), uint64(time.Hour)))
			if binary.LittleEndian.Uint16(sub[40:])&1 != 0 && binary.LittleEndian.Uint32(sub[16:]) == 0 {
				// An absolute realtime deadline.
				timeout = max(0, time.Until(time.Unix(0, int64(binary.LittleEndian.Uint64(sub[24:])))))
			}
			if sleep < 0 || timeout < sleep {
				sleep = timeout
			}
		case 1, 2: // fd_read, fd_write
			fd := binary.LittleEndian.Uint32(sub[16:])
			var errno uint16
			if fd > 2 {
				errno = errnoBadf
			}
			events = append(events, ready{userdata, errno, tag})
		default:
			return errnoInval
		}
	}
	if len(events) == 0 && sleep >= 0 {
		time.Sleep(sleep)
		for i := int32(0); i < n; i++ {
			sub := subs[i*subSize : (i+1)*subSize]
			if sub[8] == 0 {
				events = append(events, ready{userdata: binary.LittleEndian.Uint64(sub), typ: 0})
			}
		}
	}
	out, ok := in.guest(args[1].I32(), int32(len(events))*eventSize)
	if !ok {
		return errnoFault
	}
	clear(out)
	for i, e := range events {
		ev := out[i*eventSize:]
		binary.LittleEndian.PutUint64(ev, e.userdata)
		binary.LittleEndian.PutUint16(ev[8:], e.errno)
		ev[10] = e.typ
	}
	nev, ok := in.guest(args[3].I32(), 4)
	if !ok {
		return errnoFault
	}
	binary.LittleEndian.PutUint32(nev, uint32(len(events)))
	return errnoSuccess
}
