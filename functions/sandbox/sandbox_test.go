package sandbox

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmerio/wasmer-go/wasmer"
)

// echoWAT copies the payload into the result and logs the subject.
const echoWAT = `(module
  (import "sluice" "event_get" (func $get (param i32 i32 i32) (result i32)))
  (import "sluice" "result_set" (func $res (param i32 i32) (result i32)))
  (import "sluice" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (local $n i32)
    (local.set $n (call $get (i32.const 0) (i32.const 1024) (i32.const 4096)))
    (drop (call $res (i32.const 1024) (local.get $n)))
    (local.set $n (call $get (i32.const 1) (i32.const 0) (i32.const 1024)))
    (drop (call $log (i32.const 1) (i32.const 0) (local.get $n)))
    (i32.const 0)))`

func wat(t testing.TB, src string) []byte {
	t.Helper()
	b, err := wasmer.Wat2Wasm(src)
	if err != nil {
		t.Fatalf("wat2wasm: %v", err)
	}
	return b
}

type recordingHost struct {
	mu        sync.Mutex
	logs      []string
	published []string
	deny      bool
	kv        map[string][]byte
	seen      map[string]time.Duration
	calls     int // HTTP, KV and Seen calls that reached the host
}

func (h *recordingHost) Publish(subject string, data []byte) error {
	if h.deny {
		return ErrDenied
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.published = append(h.published, subject+" "+string(data))
	return nil
}

func (h *recordingHost) Log(level int, line string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, line)
}

func (h *recordingHost) HTTP(req HTTPRequest) (HTTPResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if h.deny {
		return HTTPResponse{}, ErrDenied
	}
	return HTTPResponse{Status: 201, Header: map[string][]string{"X-Method": {req.Method}},
		Body: []byte(req.URL + " " + strings.Join(req.Header["A"], ",") + " " + string(req.Body))}, nil
}

func (h *recordingHost) KVGet(key string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	v, ok := h.kv[key]
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

func (h *recordingHost) KVPut(key string, value []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if h.kv == nil {
		h.kv = map[string][]byte{}
	}
	h.kv[key] = value
	return nil
}

func (h *recordingHost) KVDelete(key string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	delete(h.kv, key)
	return nil
}

func (h *recordingHost) Seen(key string, ttl time.Duration) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if h.seen == nil {
		h.seen = map[string]time.Duration{}
	}
	_, dup := h.seen[key]
	h.seen[key] = ttl
	return dup, nil
}

func TestEchoThroughHostCalls(t *testing.T) {
	mod, err := NewEngine(t.TempDir()).Compile(wat(t, echoWAT), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := mod.Instantiate(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	host := &recordingHost{}
	out := inst.Handle(&Call{Payload: []byte("hello"), Subject: "a.b", Attempt: 1, Host: host})
	if out.Err != nil || out.Status != StatusOK {
		t.Fatalf("outcome %+v", out)
	}
	if string(out.Result) != "hello" {
		t.Fatalf("result %q, want hello", out.Result)
	}
	if len(host.logs) != 1 || host.logs[0] != "a.b" {
		t.Fatalf("logs %q", host.logs)
	}
}

func TestCompileCacheHit(t *testing.T) {
	dir := t.TempDir()
	wasm := wat(t, echoWAT)
	first, err := NewEngine(dir).Compile(wasm, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	second, err := NewEngine(dir).Compile(wasm, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if first.CacheHit || !second.CacheHit {
		t.Fatalf("cache hits: first %v second %v, want false true", first.CacheHit, second.CacheHit)
	}
}

func TestRejectsBadModules(t *testing.T) {
	e := NewEngine("")
	cases := []struct {
		name string
		wasm []byte
		want error
		text string
	}{
		{"garbage", []byte("hello world, not wasm"), ErrNotWasm, "not a WebAssembly binary"},
		{"wat", []byte("(module (func))"), ErrWasmText, "WAT"},
		{"no handle", wat(t, `(module (memory (export "memory") 1))`), ErrBadABI, "does not export a function named handle"},
		{"unknown import", wat(t, `(module (import "sluice" "launch_missiles" (func)) (memory (export "memory") 1) (func (export "handle") (result i32) (i32.const 0)))`), ErrBadABI, "sluice.launch_missiles"},
		{"foreign module", wat(t, `(module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "handle") (result i32) (i32.const 0)))`), ErrBadABI, "env.f"},
		{"too much memory at start", wat(t, `(module (memory (export "memory") 100) (func (export "handle") (result i32) (i32.const 0)))`), ErrMemoryLimit, "over the limit"},
		{"truncated", wat(t, `(module (memory (export "memory") 1) (func (export "handle") (result i32) (i32.const 0)))`)[:20], ErrMalformed, "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Compile(tc.wasm, 1<<20)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.text)
			}
		})
	}
}

func TestTrapsAndMemoryCap(t *testing.T) {
	const src = `(module
  (import "sluice" "event_get" (func $get (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (block $grow
      (br_if $grow (i32.eqz (call $get (i32.const 0) (i32.const 0) (i32.const 0))))
      (unreachable))
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (unreachable)))`
	mod, err := NewEngine("").Compile(wat(t, src), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := mod.Instantiate(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	out := inst.Handle(&Call{Payload: []byte("x"), Host: &recordingHost{}})
	if out.Err == nil || out.MemoryExceeded {
		t.Fatalf("unreachable: %+v, want a trap without memory exceeded", out)
	}
	out = inst.Handle(&Call{Host: &recordingHost{}})
	if out.Err == nil || !out.MemoryExceeded {
		t.Fatalf("grow forever: %+v, want a trap with memory exceeded", out)
	}
	if pages := inst.memory.Size(); pages != 256 {
		t.Fatalf("memory grew to %d pages, want the cap of 256", pages)
	}
}

func TestOutOfRangePointersFailTheCallNotTheHost(t *testing.T) {
	const src = `(module
  (import "sluice" "event_get" (func $get (param i32 i32 i32) (result i32)))
  (import "sluice" "publish" (func $pub (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "result_set" (func $res (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (if (i32.ne (call $get (i32.const 0) (i32.const 65530) (i32.const 100)) (i32.const -1)) (then (return (i32.const 10))))
    (if (i32.ne (call $pub (i32.const -8) (i32.const 4) (i32.const 0) (i32.const 1)) (i32.const -1)) (then (return (i32.const 11))))
    (if (i32.ne (call $res (i32.const 0) (i32.const -1)) (i32.const -1)) (then (return (i32.const 12))))
    (i32.const 0)))`
	mod, err := NewEngine("").Compile(wat(t, src), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := mod.Instantiate(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	out := inst.Handle(&Call{Payload: []byte("x"), Host: &recordingHost{}})
	if out.Err != nil || out.Status != StatusOK {
		t.Fatalf("outcome %+v (status 10-12 names the host call that did not return ERR_BAD_POINTER)", out)
	}
}

// capabilitiesWAT exercises http_request, http_response_get, kv_* and seen
// with valid pointers; handle returns the number of the first check that
// failed, 0 when all passed. The result is the response body.
const capabilitiesWAT = `(module
  (import "sluice" "http_request" (func $http (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "sluice" "http_response_get" (func $resp (param i32 i32 i32) (result i32)))
  (import "sluice" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "kv_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "kv_delete" (func $del (param i32 i32) (result i32)))
  (import "sluice" "seen" (func $seen (param i32 i32 i64) (result i32)))
  (import "sluice" "result_set" (func $res (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "POST")
  (data (i32.const 16) "https://x.test/a")
  (data (i32.const 48) "A: 1\nA: 2\n")
  (data (i32.const 64) "body")
  (data (i32.const 80) "key1")
  (data (i32.const 96) "value1")
  (func (export "handle") (result i32)
    (local $n i32)
    ;; no response yet
    (if (i32.ne (call $resp (i32.const 0) (i32.const 0) (i32.const 0)) (i32.const -5)) (then (return (i32.const 1))))
    (if (i32.ne (call $http (i32.const 0) (i32.const 4) (i32.const 16) (i32.const 16) (i32.const 48) (i32.const 10) (i32.const 64) (i32.const 4))
                (i32.const 201)) (then (return (i32.const 2))))
    ;; size query, then read the body at 1024
    (local.set $n (call $resp (i32.const 0) (i32.const 0) (i32.const 0)))
    (if (i32.ne (call $resp (i32.const 0) (i32.const 1024) (local.get $n)) (local.get $n)) (then (return (i32.const 3))))
    (drop (call $res (i32.const 1024) (local.get $n)))
    (if (i32.ne (call $resp (i32.const 1) (i32.const 0) (i32.const 0)) (i32.const 15)) (then (return (i32.const 4)))) ;; "X-Method: POST\n"
    (if (i32.ne (call $resp (i32.const 7) (i32.const 0) (i32.const 0)) (i32.const -5)) (then (return (i32.const 5))))
    ;; kv
    (if (i32.ne (call $get (i32.const 80) (i32.const 4) (i32.const 2048) (i32.const 16)) (i32.const -5)) (then (return (i32.const 6))))
    (if (i32.ne (call $put (i32.const 80) (i32.const 4) (i32.const 96) (i32.const 6)) (i32.const 0)) (then (return (i32.const 7))))
    (if (i32.ne (call $get (i32.const 80) (i32.const 4) (i32.const 2048) (i32.const 2)) (i32.const 6)) (then (return (i32.const 8))))
    (if (i32.ne (i32.load16_u (i32.const 2048)) (i32.const 0x6176)) (then (return (i32.const 9)))) ;; "va"
    (if (i32.ne (call $del (i32.const 80) (i32.const 4)) (i32.const 0)) (then (return (i32.const 10))))
    (if (i32.ne (call $get (i32.const 80) (i32.const 4) (i32.const 2048) (i32.const 16)) (i32.const -5)) (then (return (i32.const 11))))
    (if (i32.ne (call $put (i32.const 80) (i32.const 0) (i32.const 96) (i32.const 6)) (i32.const -6)) (then (return (i32.const 12))))
    ;; seen
    (if (i32.ne (call $seen (i32.const 80) (i32.const 4) (i64.const 1500)) (i32.const 0)) (then (return (i32.const 13))))
    (if (i32.ne (call $seen (i32.const 80) (i32.const 4) (i64.const 1500)) (i32.const 1)) (then (return (i32.const 14))))
    (if (i32.ne (call $seen (i32.const 80) (i32.const 4) (i64.const 0)) (i32.const -6)) (then (return (i32.const 15))))
    (i32.const 0)))`

func TestCapabilityHostCalls(t *testing.T) {
	mod, err := NewEngine("").Compile(wat(t, capabilitiesWAT), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := mod.Instantiate(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	host := &recordingHost{}
	out := inst.Handle(&Call{Host: host})
	if out.Err != nil || out.Status != StatusOK {
		t.Fatalf("outcome %+v (a status names the failed check)", out)
	}
	if want := "https://x.test/a 1,2 body"; string(out.Result) != want {
		t.Fatalf("response body %q, want %q", out.Result, want)
	}
	if host.seen["key1"] != 2*time.Second {
		t.Fatalf("seen ttl %v, want 1500ms rounded up to 2s", host.seen["key1"])
	}
	// The response does not outlive its invocation (check 1 passes again),
	// and a denial is ERR_DENIED (check 2 fails).
	out = inst.Handle(&Call{Host: &recordingHost{deny: true}})
	if out.Err != nil || out.Status != 2 {
		t.Fatalf("second invocation: %+v, want status 2 (the denied request)", out)
	}
}

func TestCapabilityCallsRejectOutOfRangePointers(t *testing.T) {
	const src = `(module
  (import "sluice" "http_request" (func $http (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "sluice" "http_response_get" (func $resp (param i32 i32 i32) (result i32)))
  (import "sluice" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "kv_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "kv_delete" (func $del (param i32 i32) (result i32)))
  (import "sluice" "seen" (func $seen (param i32 i32 i64) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (if (i32.ne (call $http (i32.const -8) (i32.const 4) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)) (i32.const -1)) (then (return (i32.const 10))))
    (if (i32.ne (call $http (i32.const 0) (i32.const 3) (i32.const 65530) (i32.const 100) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)) (i32.const -1)) (then (return (i32.const 11))))
    (if (i32.ne (call $http (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 0)) (i32.const -1)) (then (return (i32.const 12))))
    (if (i32.ne (call $http (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 65536) (i32.const 1)) (i32.const -1)) (then (return (i32.const 13))))
    (if (i32.ne (call $resp (i32.const 0) (i32.const 65535) (i32.const 2)) (i32.const -1)) (then (return (i32.const 14))))
    (if (i32.ne (call $get (i32.const 70000) (i32.const 1) (i32.const 0) (i32.const 1)) (i32.const -1)) (then (return (i32.const 15))))
    (if (i32.ne (call $get (i32.const 0) (i32.const 1) (i32.const 0) (i32.const -1)) (i32.const -1)) (then (return (i32.const 16))))
    (if (i32.ne (call $put (i32.const 0) (i32.const 1) (i32.const -100) (i32.const 200)) (i32.const -1)) (then (return (i32.const 17))))
    (if (i32.ne (call $put (i32.const 0) (i32.const 65537) (i32.const 0) (i32.const 1)) (i32.const -1)) (then (return (i32.const 18))))
    (if (i32.ne (call $del (i32.const -1) (i32.const -1)) (i32.const -1)) (then (return (i32.const 19))))
    (if (i32.ne (call $seen (i32.const 65536) (i32.const 1) (i64.const 1000)) (i32.const -1)) (then (return (i32.const 20))))
    (if (i32.ne (call $seen (i32.const 0x7fffffff) (i32.const 0x7fffffff) (i64.const -1)) (i32.const -1)) (then (return (i32.const 21))))
    (i32.const 0)))`
	mod, err := NewEngine("").Compile(wat(t, src), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := mod.Instantiate(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	host := &recordingHost{}
	out := inst.Handle(&Call{Payload: []byte("x"), Host: host})
	if out.Err != nil || out.Status != StatusOK {
		t.Fatalf("outcome %+v (status 10-21 names the host call that did not return ERR_BAD_POINTER)", out)
	}
	if host.calls != 0 {
		t.Fatalf("%d calls with bad pointers reached the host", host.calls)
	}
}

func TestParseHeaders(t *testing.T) {
	h, ok := ParseHeaders([]byte("A: 1\r\nB:2\n\nA:  3\n"))
	if !ok || strings.Join(h["A"], "|") != "1| 3" || strings.Join(h["B"], "|") != "2" {
		t.Fatalf("ParseHeaders = %q, %v", h, ok)
	}
	for _, bad := range []string{"no colon\n", ": nameless\n"} {
		if _, ok := ParseHeaders([]byte(bad)); ok {
			t.Errorf("ParseHeaders(%q) accepted", bad)
		}
	}
}

// countWAT counts its invocations in its own memory and returns the count.
const countWAT = `(module
  (import "sluice" "result_set" (func $res (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (i32.store8 (i32.const 0) (i32.add (i32.load8_u (i32.const 0)) (i32.const 1)))
    (drop (call $res (i32.const 0) (i32.const 1)))
    (i32.const 0)))`

// TestInstancesShareOneLoadedModule: a loaded artifact is read and checked
// once; every instance is made from the module deserialized then (the
// file is not read again), on any goroutine, and each keeps its own
// memory.
func TestInstancesShareOneLoadedModule(t *testing.T) {
	dir := t.TempDir()
	e := NewEngine(dir)
	module, adapter, err := e.CompileArtifacts(wat(t, countWAT), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	paths := ArtifactPaths(dir, DigestOf([]byte("count")), 1<<20)[TierOptimized]
	modSum, err := StoreArtifact(paths.Module, module)
	if err != nil {
		t.Fatal(err)
	}
	adSum, err := StoreArtifact(paths.Adapter, adapter)
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.LoadArtifacts(paths, modSum, adSum, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	count := func(inst *Instance) byte {
		out := inst.Handle(&Call{Attempt: 1, Host: &recordingHost{}})
		if out.Err != nil || len(out.Result) != 1 {
			t.Errorf("outcome %+v", out)
			return 0
		}
		return out.Result[0]
	}
	first, err := m.Instantiate(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if a, b := count(first), count(first); a != 1 || b != 2 {
		t.Fatalf("counts %d %d, want 1 2", a, b)
	}
	// Instances made after the file is gone use the module loaded first.
	if err := os.Remove(ArtifactFile(paths.Module, modSum)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			inst, err := m.Instantiate(nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer inst.Close()
			if c := count(inst); c != 1 {
				t.Errorf("a new instance counted %d, want 1: its memory is its own", c)
			}
		})
	}
	wg.Wait()
	if c := count(first); c != 3 {
		t.Fatalf("the first instance counted %d, want 3", c)
	}
}
