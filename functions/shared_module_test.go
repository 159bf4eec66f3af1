package functions_test

import (
	"context"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/internal/testenv"
)

// lines counts the lines of l holding substr.
func lines(l *testenv.Buffer, substr string) (n int) {
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// TestFunctionsOfOneModuleCompileOnce: functions of one module (the same
// bytes and memory limit) on an empty cache compile it once per compile
// slot, not once each: a compile that starts after another stored the
// artifacts takes them, for the first tier and the tier-up alike. Every
// function then serves, on the optimized tier.
func TestFunctionsOfOneModuleCompileOnce(t *testing.T) {
	obs := newCountingObserver()
	logs := &testenv.Buffer{}
	module := testenv.WAT(t, okWAT)
	n := goruntime.NumCPU() + 4
	var fcs []config.Function
	for i := range n {
		fcs = append(fcs, config.Function{Name: fmt.Sprintf("f%d", i), Module: module, Timeout: 5 * time.Second, Memory: 1 << 20})
	}
	set, err := functions.Load(fcs, functions.Options{CacheDir: t.TempDir(), Observer: obs,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	compiles := 0
	obs.mu.Lock()
	for _, fc := range fcs {
		for _, hit := range obs.compiled[fc.Name] {
			if !hit {
				compiles++
			}
		}
	}
	obs.mu.Unlock()
	if compiles == 0 || compiles > goruntime.NumCPU() {
		t.Fatalf("%d functions of one module: %d first-tier compiles, want 1 to %d (one per compile slot)", n, compiles, goruntime.NumCPU())
	}
	for _, fc := range fcs {
		res, err := set.Invoke(context.Background(), fc.Name, functions.Event{ID: fc.Name, Attempt: 1})
		if err != nil || string(res.Output) != "ok" {
			t.Fatalf("%s: %q, %v", fc.Name, res.Output, err)
		}
	}
	if !sandbox.FastTierAvailable() {
		return
	}
	for _, fc := range fcs {
		optimized(t, set, fc.Name)
	}
	testenv.Eventually(t, time.Minute, "every tier-up logged", func() bool {
		return lines(logs, `"msg":"function optimized"`) == n
	})
	if slots, got := max(1, goruntime.NumCPU()/2), lines(logs, `"compiled":true`); got == 0 || got > slots {
		t.Fatalf("%d functions of one module: %d optimizing compiles, want 1 to %d\n%s", n, got, slots, logs.String())
	}
}
