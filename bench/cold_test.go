package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/wasmerio/wasmer-go/wasmer"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
)

// coldResult is one cold start: Load, then the first invocation of every
// function.
type coldResult struct {
	load, total time.Duration
}

// coldStart loads fns with the compile cache in cacheDir and invokes each
// once.
func coldStart(t testing.TB, fns []config.Function, cacheDir string) coldResult {
	t.Helper()
	ev := benchEvent()
	start := time.Now()
	set, err := functions.Load(fns, functions.Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	load := time.Since(start)
	for _, f := range fns {
		if _, err := set.Invoke(context.Background(), f.Name, ev); err != nil {
			t.Fatal(err)
		}
	}
	return coldResult{load: load, total: time.Since(start)}
}

// deploy is a cold start with an empty compile cache.
func deploy(t testing.TB, fn config.Function) coldResult {
	dir, err := os.MkdirTemp("", "sluice-bench-cache-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	return coldStart(t, []config.Function{fn}, dir)
}

// restart is a cold start of n copies of fn with the compile cache warm.
func restart(t testing.TB, fn config.Function, n int, cacheDir string) coldResult {
	fns := make([]config.Function, n)
	for i := range fns {
		fns[i] = fn
		fns[i].Name = fmt.Sprintf("noop%d", i)
	}
	return coldStart(t, fns, cacheDir)
}

// rawCompile is wasmer's compile of the (memory-capped) module with tier's
// compiler in this process, nothing else: the baseline of a deploy.
func rawCompile(t testing.TB, wasm []byte, memLimit int64, tier sandbox.Tier) time.Duration {
	capped, err := sandbox.CapMemory(wasm, memLimit)
	if err != nil {
		t.Fatal(err)
	}
	var d time.Duration
	inThread(func() {
		cfg := wasmer.NewConfig().UseCraneliftCompiler().UseUniversalEngine()
		if tier == sandbox.TierFast {
			cfg = wasmer.NewConfig().UseSinglepassCompiler().UseUniversalEngine()
		}
		engine := wasmer.NewEngineWithConfig(cfg)
		store := wasmer.NewStore(engine)
		defer store.Close()
		start := time.Now()
		mod, err := wasmer.NewModule(store, capped)
		d = time.Since(start)
		if err != nil {
			t.Error(err)
			return
		}
		mod.Close()
	})
	return d
}

// rawInstantiate is sandbox's Instantiate (deserialize the compiled module,
// instantiate, _initialize) plus the first call, in this process.
func rawInstantiate(t testing.TB, m *sandbox.Module) time.Duration {
	var d time.Duration
	inThread(func() {
		start := time.Now()
		inst, err := m.Instantiate(nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer inst.Close()
		inst.Handle(&sandbox.Call{Payload: make([]byte, payloadSize), Host: nopHost{}})
		d = time.Since(start)
	})
	return d
}
