package functions_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/internal/testenv"
)

// lockedBuffer is a log sink for the Set's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(substr string) (n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for line := range strings.Lines(l.b.String()) {
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
	logs := &lockedBuffer{}
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
		return logs.lines(`"msg":"function optimized"`) == n
	})
	if slots, got := max(1, goruntime.NumCPU()/2), logs.lines(`"compiled":true`); got == 0 || got > slots {
		t.Fatalf("%d functions of one module: %d optimizing compiles, want 1 to %d\n%s", n, got, slots, logs.b.String())
	}
}
