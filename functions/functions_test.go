package functions_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmerio/wasmer-go/wasmer"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
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

func watModule(t *testing.T, src string) string {
	t.Helper()
	b, err := wasmer.Wat2Wasm(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
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
	return set
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
		config.Function{Name: "trap", Module: watModule(t, `(module (memory (export "memory") 1)
			(func (export "handle") (result i32) (i32.div_u (i32.const 1) (i32.const 0))))`)},
		config.Function{Name: "oob", Module: watModule(t, `(module (memory (export "memory") 1)
			(func (export "handle") (result i32) (i32.load (i32.const 1000000))))`)},
		config.Function{Name: "grow", Memory: 16 << 20, Module: watModule(t, `(module (memory (export "memory") 1)
			(func (export "handle") (result i32)
			  (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
			  (unreachable)))`)},
		// Spins for a few seconds (not forever: in-process calls cannot be
		// interrupted, so the instance is abandoned until it returns).
		config.Function{Name: "slow", Timeout: 200 * time.Millisecond, Module: watModule(t, `(module (memory (export "memory") 1)
			(func (export "handle") (result i32) (local $i i64)
			  (loop $spin
			    (local.set $i (i64.add (local.get $i) (i64.const 1)))
			    (br_if $spin (i64.lt_u (local.get $i) (i64.const 3000000000))))
			  (i32.const 0)))`)},
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
	_, err = set.Invoke(ctx, "slow", ev)
	if !errors.Is(err, functions.ErrTimeout) || !strings.Contains(err.Error(), "200ms") {
		t.Errorf("slow: %v, want a timeout naming 200ms", err)
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
