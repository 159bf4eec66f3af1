package metrics_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/runtime/metrics"
)

// TestObserverCounts: each Metrics has its own registry (two can coexist)
// and counts what it hears.
func TestObserverCounts(t *testing.T) {
	m, other := metrics.New(), metrics.New()
	m.Invoked("q", "f", "succeeded", 1, 3*time.Millisecond)
	m.Invoked("q", "f", "failed", 1, time.Millisecond)
	m.Invoked("q", "f", "failed", 2, time.Millisecond)
	m.Retried("q", "f")
	m.DeadLettered("q", "f")
	m.WorkerStarted("f")
	m.WorkerStarted("f")
	m.WorkerStopped("f")
	m.WorkerDied("f", functions.WorkerTimeout)
	m.ColdStart("f", 20*time.Millisecond)
	m.Compiled("f", true)
	m.Compiled("g", false)
	want := map[string]float64{
		"sluice_invocations_total":           3,
		"sluice_invocation_duration_seconds": 3,
		"sluice_retries_total":               1,
		"sluice_dead_letters_total":          1,
		"sluice_worker_starts_total":         2,
		"sluice_worker_crashes_total":        1,
		"sluice_workers":                     1,
		"sluice_cold_starts_total":           1,
		"sluice_cold_start_duration_seconds": 1,
		"sluice_compile_cache_hits_total":    1,
		"sluice_compile_cache_misses_total":  1,
	}
	if got := totals(t, m); !maps.Equal(got, want) {
		t.Errorf("totals %v, want %v", got, want)
	}
	if got := totals(t, other); len(got) != 0 {
		t.Errorf("the other Metrics counted %v", got)
	}
}

// totals sums each sluice_ family: counters' values, histograms' counts,
// and the sluice_workers gauge.
func totals(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			switch {
			case s.Counter != nil:
				out[f.GetName()] += s.Counter.GetValue()
			case s.Gauge != nil && f.GetName() == "sluice_workers":
				out[f.GetName()] += s.Gauge.GetValue()
			case s.Histogram != nil:
				out[f.GetName()] += float64(s.Histogram.GetSampleCount())
			}
		}
		if !strings.HasPrefix(f.GetName(), "sluice_") {
			delete(out, f.GetName())
		}
	}
	return out
}

func BenchmarkInvoked(b *testing.B) {
	m := metrics.New()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Invoked("orders", "process", "succeeded", 1, time.Millisecond)
		}
	})
}
