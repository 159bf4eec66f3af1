package functions_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wasmerio/wasmer-go/wasmer"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
)

// hostCallsPerEvent is how many event_get calls the guest of
// TestWarmWorkerMemoryIsBounded makes per invocation.
const hostCallsPerEvent = 500

// TestWarmWorkerMemoryIsBounded checks that host calls do not leak in a
// warm worker. Called the plain wasmer-go way, every host function call
// left 16 bytes per argument and 32 per result in C memory (event_get: 144
// bytes), never freed: this guest would have grown its worker by about
// 70 KiB per invocation, 70 MiB over the run below.
func TestWarmWorkerMemoryIsBounded(t *testing.T) {
	if testenv.RSS(os.Getpid()) == 0 {
		t.Skip("needs /proc")
	}
	calls := strings.Repeat("    (drop (call $get (i32.const 0) (i32.const 0) (i32.const 64)))\n", hostCallsPerEvent)
	wasm, err := wasmer.Wat2Wasm(`(module
  (import "sluice" "event_get" (func $get (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
` + calls + `    (i32.const 0)))`)
	if err != nil {
		t.Fatal(err)
	}
	module := filepath.Join(t.TempDir(), "hostcalls.wasm")
	if err := os.WriteFile(module, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	before := testenv.Children()
	set := load(t, nil, config.Function{Name: "hostcalls", Module: module})
	ctx := context.Background()
	ev := functions.Event{ID: "e1", Subject: "in", Binding: "b", Data: []byte("payload"), Attempt: 1}
	invoke := func(n int) {
		t.Helper()
		for range n {
			if _, err := set.Invoke(ctx, "hostcalls", ev); err != nil {
				t.Fatalf("invoke: %v", err)
			}
		}
	}
	invoke(200) // warm: the worker's heaps reach their working size
	var pid int
	for _, p := range testenv.Children() {
		if !slices.Contains(before, p) {
			if pid != 0 {
				t.Fatalf("more than one new child process: %d and %d", pid, p)
			}
			pid = p
		}
	}
	if pid == 0 {
		t.Fatal("no worker process found")
	}
	const n = 1000
	start := testenv.RSS(pid)
	invoke(n)
	grown := testenv.RSS(pid) - start
	t.Logf("worker RSS %d MiB, grew by %d KiB over %d invocations of %d host calls",
		start>>20, grown>>10, n, hostCallsPerEvent)
	// The leak would be ~70 MiB; without it growth is noise (GC cycles of
	// the worker's Go heap), a few MiB at most.
	if grown > 24<<20 {
		t.Errorf("warm worker grew by %d MiB over %d invocations: host calls leak", grown>>20, n)
	}
}
