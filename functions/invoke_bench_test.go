package functions_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
)

// benchSet loads the no-op Go guest, optimized, with its workers warm.
func benchSet(b *testing.B, concurrency int) *functions.Set {
	b.Helper()
	fc := config.Function{Name: "noop", Module: testenv.Guest(b, "internal/testguests/noop"), Timeout: 5 * time.Second, Memory: 64 << 20}
	set, err := functions.Load([]config.Function{fc}, functions.Options{CacheDir: testenv.CacheDir(b)})
	if err != nil {
		b.Fatalf("load: %v", err)
	}
	b.Cleanup(set.Close)
	optimized(b, set, "noop")
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for range 200 {
				if _, err := set.Invoke(context.Background(), "noop", benchEvent); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return set
}

var benchEvent = functions.Event{ID: "e-1", Subject: "bench.in", Binding: "q", Data: make([]byte, 128), Attempt: 1}

// BenchmarkInvokeWarm is one warm invocation at a time through a worker:
// the supervisor's frame, the pipe, the worker's wasm call and back. It
// reports the median besides the mean.
func BenchmarkInvokeWarm(b *testing.B) {
	set := benchSet(b, 1)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		if _, err := set.Invoke(ctx, "noop", benchEvent); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
}

// BenchmarkInvokeWarmConcurrency4 keeps four invocations in flight in one
// worker, as a binding of concurrency 4 does under a backlog.
func BenchmarkInvokeWarmConcurrency4(b *testing.B) {
	set := benchSet(b, 4)
	ctx := context.Background()
	var left atomic.Int64
	left.Store(int64(b.N))
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if _, err := set.Invoke(ctx, "noop", benchEvent); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
