package sandbox

import (
	"errors"
	"strings"
	"sync"
	"testing"

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
