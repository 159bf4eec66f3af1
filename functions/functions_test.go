package functions_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/internal/testenv"
)

type spyPublisher struct {
	mu   sync.Mutex
	sent []string
}

func (p *spyPublisher) Publish(_ context.Context, subject string, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent = append(p.sent, subject+" "+string(data))
	return nil
}

func load(t *testing.T, pub functions.Publisher, fns ...config.Function) *functions.Set {
	t.Helper()
	for i := range fns {
		if fns[i].Timeout == 0 {
			fns[i].Timeout = 5 * time.Second
		}
		if fns[i].Memory == 0 {
			fns[i].Memory = 64 << 20
		}
	}
	set, err := functions.Load(fns, functions.Options{CacheDir: testenv.CacheDir(t), Publisher: pub, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(set.Close)
	for _, fc := range fns {
		optimized(t, set, fc.Name)
	}
	return set
}

// optimized waits for a function's background Cranelift compile (after a
// compile cache miss), so that the test's only child processes are the
// function's workers.
func optimized(t testing.TB, set *functions.Set, name string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, name+" optimized", func() bool {
		tier, _ := set.Tier(name)
		return tier == sandbox.TierOptimized
	})
}

func kindOf(err error) functions.Kind {
	var fe *functions.Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return ""
}

func TestGoGuestOutcomes(t *testing.T) {
	pub := &spyPublisher{}
	set := load(t, pub,
		config.Function{Name: "echo", Module: testenv.Guest(t, "internal/testguests/echo")},
		config.Function{Name: "fail", Module: testenv.Guest(t, "internal/testguests/fail")},
		config.Function{Name: "permanent", Module: testenv.Guest(t, "internal/testguests/permanent")},
		config.Function{Name: "panic", Module: testenv.Guest(t, "internal/testguests/panic")},
		config.Function{Name: "publisher", Module: testenv.Guest(t, "internal/testguests/publisher"), Publish: []string{"allowed.>"}},
	)
	ctx := context.Background()
	ev := functions.Event{ID: "e1", Subject: "in", Binding: "b", Data: []byte("hello"), Attempt: 1}

	res, err := set.Invoke(ctx, "echo", ev)
	if err != nil || string(res.Output) != "hello" || len(res.Version) != 64 {
		t.Fatalf("echo: %+v, %v", res, err)
	}
	for name, want := range map[string]functions.Kind{"fail": functions.KindFailed, "permanent": functions.KindPermanent, "panic": functions.KindFailed} {
		_, err := set.Invoke(ctx, name, ev)
		if kindOf(err) != want {
			t.Errorf("%s: %v, want kind %s", name, err, want)
		}
	}
	if _, err := set.Invoke(ctx, "panic", ev); err == nil || !strings.Contains(err.Error(), "panic") {
		t.Errorf("panic reason: %v", err)
	}

	allowed := ev
	allowed.Headers = map[string][]string{"Target": {"allowed.x"}}
	if _, err := set.Invoke(ctx, "publisher", allowed); err != nil {
		t.Fatalf("allowed publish: %v", err)
	}
	denied := ev
	denied.Headers = map[string][]string{"Target": {"secret.x"}}
	if _, err := set.Invoke(ctx, "publisher", denied); kindOf(err) != functions.KindFailed || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("denied publish: %v, want a failure naming the denial", err)
	}
	if len(pub.sent) != 1 || pub.sent[0] != "allowed.x hello" {
		t.Fatalf("published %q, want only the allowed one", pub.sent)
	}
	// Warm instances survive failures that are not traps.
	if res, err := set.Invoke(ctx, "echo", ev); err != nil || string(res.Output) != "hello" {
		t.Fatalf("echo again: %v", err)
	}
}

func TestTrapMemoryAndTimeoutAreClassified(t *testing.T) {
	set := load(t, nil,
		config.Function{Name: "trap", Module: testenv.WAT(t, `(module (memory (export "memory") 1)
			(func (export "handle") (result i32) (i32.div_u (i32.const 1) (i32.const 0))))`)},
		config.Function{Name: "oob", Module: testenv.WAT(t, `(module (memory (export "memory") 1)
			(func (export "handle") (result i32) (i32.load (i32.const 1000000))))`)},
		config.Function{Name: "grow", Memory: 16 << 20, Module: testenv.WAT(t, `(module (memory (export "memory") 1)
			(func (export "handle") (result i32)
			  (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
			  (unreachable)))`)},
		config.Function{Name: "loop", Timeout: 300 * time.Millisecond, Module: testenv.WAT(t, loopWAT)},
	)
	ctx := context.Background()
	ev := functions.Event{ID: "e", Attempt: 1}
	if _, err := set.Invoke(ctx, "trap", ev); !errors.Is(err, functions.ErrTrap) {
		t.Errorf("divide by zero: %v, want a trap", err)
	}
	if _, err := set.Invoke(ctx, "oob", ev); !errors.Is(err, functions.ErrTrap) {
		t.Errorf("out of bounds: %v, want a trap", err)
	}
	_, err := set.Invoke(ctx, "grow", ev)
	if !errors.Is(err, functions.ErrMemoryLimit) || !strings.Contains(err.Error(), "16MiB") {
		t.Errorf("growing memory: %v, want a memory error naming the 16MiB limit", err)
	}
	_, err = set.Invoke(ctx, "loop", ev)
	if !errors.Is(err, functions.ErrTimeout) || !strings.Contains(err.Error(), "300ms") {
		t.Errorf("endless loop: %v, want a timeout naming 300ms", err)
	}
	if busy := testenv.BusyChildren(t); len(busy) > 0 {
		t.Errorf("worker processes still burning CPU after the timeout: %v", busy)
	}
	// A trapped instance is replaced: the function keeps working.
	for range 20 {
		if _, err := set.Invoke(ctx, "trap", ev); !errors.Is(err, functions.ErrTrap) {
			t.Fatalf("trap again: %v", err)
		}
	}
}

func TestLoadReportsEveryBadModule(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("GIF89a not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := functions.Load([]config.Function{
		{Name: "garbage", Module: garbage, Memory: 1 << 20},
		{Name: "missing", Module: filepath.Join(dir, "missing.wasm"), Memory: 1 << 20},
	}, functions.Options{})
	if err == nil {
		t.Fatal("loaded bad modules")
	}
	for _, want := range []string{"function garbage", garbage, "not a WebAssembly binary", "function missing", "missing.wasm"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

const loopWAT = `(module (memory (export "memory") 1)
	(func (export "handle") (result i32) (loop $forever (br $forever)) (i32.const 0)))`

func TestKilledWorkerFailsOnlyItsInvocation(t *testing.T) {
	set := load(t, nil,
		config.Function{Name: "loop", Timeout: time.Minute, Module: testenv.WAT(t, loopWAT)},
		config.Function{Name: "echo", Module: testenv.Guest(t, "internal/testguests/echo")},
	)
	before := map[int]bool{}
	for _, pid := range testenv.Children() {
		before[pid] = true
	}
	done := make(chan error, 1)
	go func() {
		_, err := set.Invoke(context.Background(), "loop", functions.Event{ID: "e", Attempt: 1})
		done <- err
	}()
	// The looping worker is the child that burns CPU.
	var victim int
	testenv.Eventually(t, 10*time.Second, "a worker burning CPU", func() bool {
		for _, pid := range testenv.Children() {
			if testenv.CPUTicks(pid) > 20 {
				victim = pid
				return true
			}
		}
		return false
	})
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if !errors.Is(err, functions.ErrTrap) || !strings.Contains(err.Error(), "worker crashed") {
		t.Fatalf("killed worker: %v, want a trap saying the worker crashed", err)
	}
	res, err := set.Invoke(context.Background(), "echo", functions.Event{ID: "e2", Data: []byte("still here"), Attempt: 1})
	if err != nil || string(res.Output) != "still here" {
		t.Fatalf("other function after the kill: %q, %v", res.Output, err)
	}
}

func TestTenThousandTrapsCrashNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	set, err := functions.Load([]config.Function{
		{Name: "trap", Timeout: 5 * time.Second, Memory: 1 << 20, Module: testenv.WAT(t, `(module (memory (export "memory") 1)
			(func (export "handle") (result i32) (unreachable)))`)},
	}, functions.Options{CacheDir: testenv.CacheDir(t), WorkerEnv: []string{"GOGC=1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	crashes := 0
	for i := range 10_000 {
		_, err := set.Invoke(context.Background(), "trap", functions.Event{ID: strconv.Itoa(i), Attempt: 1})
		if !errors.Is(err, functions.ErrTrap) {
			t.Fatalf("invocation %d: %v, want a trap", i, err)
		}
		if strings.Contains(err.Error(), "worker crashed") {
			crashes++
		}
	}
	if crashes > 0 {
		t.Fatalf("%d of 10000 trapping invocations crashed their worker", crashes)
	}
}

func TestGoGuestHittingItsMemoryLimit(t *testing.T) {
	set := load(t, nil, config.Function{Name: "hog", Memory: 16 << 20, Module: testenv.Guest(t, "internal/testguests/hog")})
	ctx := context.Background()
	_, err := set.Invoke(ctx, "hog", functions.Event{ID: "h1", Data: []byte("hog"), Attempt: 1})
	if !errors.Is(err, functions.ErrMemoryLimit) || !strings.Contains(err.Error(), "16MiB") {
		t.Fatalf("hog: %v, want a memory error naming the 16MiB limit", err)
	}
	for _, pid := range testenv.Children() {
		if rss := testenv.RSS(pid); rss > 200<<20 {
			t.Errorf("worker %d has %d MiB resident", pid, rss>>20)
		}
	}
	res, err := set.Invoke(ctx, "hog", functions.Event{ID: "h2", Data: []byte("small"), Attempt: 1})
	if err != nil || string(res.Output) != "ok" {
		t.Fatalf("next event: %q, %v", res.Output, err)
	}
}

// chattyWAT writes 64 KiB to stdout 100 times (6.4 MB) and succeeds.
const chattyWAT = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "handle") (result i32) (local $i i32)
    (memory.fill (i32.const 1024) (i32.const 65) (i32.const 65536))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $again
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 100))))
    (i32.const 0)))`

type captured struct {
	mu        sync.Mutex
	guest     int
	truncated bool
}

func (c *captured) Enabled(context.Context, slog.Level) bool { return true }
func (c *captured) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	guest := false
	r.Attrs(func(a slog.Attr) bool {
		guest = guest || a.Key == "source" && a.Value.String() == "guest"
		return !guest
	})
	switch {
	case strings.Contains(r.Message, "truncated"):
		c.truncated = true
	case guest:
		c.guest += len(r.Message)
	}
	return nil
}
func (c *captured) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *captured) WithGroup(string) slog.Handler      { return c }

func TestGuestLogsAreCapped(t *testing.T) {
	logs := &captured{}
	set, err := functions.Load([]config.Function{{
		Name: "chatty", Module: testenv.WAT(t, chattyWAT), Timeout: 10 * time.Second,
		Memory: 1 << 20, MaxResultSize: 1 << 10, MaxLogSize: 100 << 10,
	}}, functions.Options{CacheDir: testenv.CacheDir(t), Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	optimized(t, set, "chatty")
	res, err := set.Invoke(context.Background(), "chatty", functions.Event{ID: "c", Attempt: 1})
	if err != nil || !res.LogsTruncated {
		t.Fatalf("chatty: %+v, %v; want success with logs truncated", res, err)
	}
	for _, pid := range testenv.Children() {
		if rss := testenv.RSS(pid); rss > 200<<20 {
			t.Errorf("worker %d has %d MiB resident after logging 6.4 MB", pid, rss>>20)
		}
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if logs.guest > 100<<10 || logs.guest < 64<<10 || !logs.truncated {
		t.Fatalf("logged %d bytes of guest output (cap 100 KiB), truncation reported: %v", logs.guest, logs.truncated)
	}
}

func TestUpdateSwapsVersionsAndKeepsTheLiveOneOnError(t *testing.T) {
	echo := testenv.Guest(t, "internal/testguests/echo")
	fail := testenv.Guest(t, "internal/testguests/fail")
	set := load(t, nil, config.Function{Name: "f", Module: echo})
	ctx := context.Background()
	ev := functions.Event{ID: "u", Data: []byte("v1"), Attempt: 1}
	v1, _, _ := set.Version("f")
	if _, err := set.Invoke(ctx, "f", ev); err != nil {
		t.Fatal(err)
	}
	if err := set.Update(config.Function{Name: "f", Module: fail, Timeout: 5 * time.Second, Memory: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	_, err := set.Invoke(ctx, "f", ev)
	var fe *functions.Error
	if !errors.As(err, &fe) || fe.Kind != functions.KindFailed || fe.Version == v1 {
		t.Fatalf("after the swap: %v, want the new version's failure", err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := set.Update(config.Function{Name: "f", Module: garbage, Timeout: 5 * time.Second, Memory: 64 << 20}); err == nil {
		t.Fatal("a garbage module was swapped in")
	}
	if v, _, _ := set.Version("f"); v != fe.Version {
		t.Fatalf("live version changed to %s after a refused update", v)
	}
	set.Remove("f")
	if _, err := set.Invoke(ctx, "f", ev); !errors.Is(err, functions.ErrUnknownFunction) {
		t.Fatalf("after remove: %v", err)
	}
}
