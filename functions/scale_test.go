package functions_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/internal/testenv"
)

// countingObserver counts what a Set reports about its workers.
type countingObserver struct {
	mu                      sync.Mutex
	started, stopped, colds map[string]int
	compiled                map[string][]bool
}

func newCountingObserver() *countingObserver {
	return &countingObserver{started: map[string]int{}, stopped: map[string]int{}, colds: map[string]int{}, compiled: map[string][]bool{}}
}

func (o *countingObserver) WorkerStarted(f string)    { o.mu.Lock(); o.started[f]++; o.mu.Unlock() }
func (o *countingObserver) WorkerStopped(f string)    { o.mu.Lock(); o.stopped[f]++; o.mu.Unlock() }
func (o *countingObserver) WorkerDied(string, string) {}
func (o *countingObserver) ColdStart(f string, _ time.Duration) {
	o.mu.Lock()
	o.colds[f]++
	o.mu.Unlock()
}
func (o *countingObserver) Compiled(f string, hit bool) {
	o.mu.Lock()
	o.compiled[f] = append(o.compiled[f], hit)
	o.mu.Unlock()
}

// running returns how many workers of f the observer saw started and not
// stopped, and how many cold starts.
func (o *countingObserver) running(f string) (workers, colds int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.started[f] - o.stopped[f], o.colds[f]
}

const okWAT = `(module (memory (export "memory") 1)
  (data (i32.const 0) "ok")
  (import "sluice" "result_set" (func $r (param i32 i32) (result i32)))
  (func (export "handle") (result i32) (drop (call $r (i32.const 0) (i32.const 2))) (i32.const 0)))`

func alive(pid int) bool {
	st := testenv.ProcStat(pid)
	return len(st) > 4 && st[4] == strconv.Itoa(os.Getpid())
}

// TestIdleFunctionScalesToZero: a loaded function has no worker until its
// first event; a worker without events for idle_timeout stops (the Set,
// the observer and /proc agree); the next event starts one again, counted
// as a cold start, and succeeds.
func TestIdleFunctionScalesToZero(t *testing.T) {
	obs := newCountingObserver()
	fc := config.Function{Name: "f", Module: testenv.WAT(t, okWAT), Timeout: 5 * time.Second, Memory: 1 << 20,
		IdleTimeout: 200 * time.Millisecond}
	cache := testenv.CacheDir(t)
	for _, phase := range []string{"cache miss", "cache hit"} {
		before := map[int]bool{}
		for _, pid := range testenv.Children() {
			before[pid] = true
		}
		set, err := functions.Load([]config.Function{fc}, functions.Options{CacheDir: cache, Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		if n := set.Workers("f"); n != 0 {
			t.Fatalf("%s: %d workers right after Load, want none", phase, n)
		}
		if n, _ := obs.running("f"); n != 0 {
			t.Fatalf("%s: the observer counts %d workers after Load, want none", phase, n)
		}
		for round := range 2 {
			_, coldsBefore := obs.running("f")
			res, err := set.Invoke(context.Background(), "f", functions.Event{ID: strconv.Itoa(round), Attempt: 1})
			if err != nil || string(res.Output) != "ok" {
				t.Fatalf("%s, round %d: %q, %v", phase, round, res.Output, err)
			}
			if _, colds := obs.running("f"); colds != coldsBefore+1 {
				t.Fatalf("%s, round %d: %d cold starts, want %d", phase, round, colds, coldsBefore+1)
			}
			var pids []int
			for _, pid := range testenv.Children() {
				if !before[pid] {
					pids = append(pids, pid)
				}
			}
			if n := set.Workers("f"); n != 1 || len(pids) != 1 {
				t.Fatalf("%s, round %d: %d workers, new child processes %v; want one", phase, round, n, pids)
			}
			testenv.Eventually(t, 10*time.Second, "the idle worker to stop", func() bool {
				n, _ := obs.running("f")
				return set.Workers("f") == 0 && n == 0 && !alive(pids[0])
			})
		}
		set.Close()
	}
}

// TestTierUpDuringAStreamOfEvents: a function compiled for the first time
// serves on the fast tier at once; its optimized compile is swapped in
// while events keep coming, and every event runs exactly once (its effect
// published once) with its own result, before, during and after the swap.
func TestTierUpDuringAStreamOfEvents(t *testing.T) {
	if !sandbox.FastTierAvailable() {
		t.Skip("this wasmer has no fast tier")
	}
	pub := &spyPublisher{}
	fc := config.Function{Name: "echo", Module: testenv.Guest(t, "internal/testguests/echo"), Timeout: 10 * time.Second,
		Memory: 64 << 20, Publish: []string{"effects"}}
	set, err := functions.Load([]config.Function{fc}, functions.Options{CacheDir: t.TempDir(), Publisher: pub, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if tier, _ := set.Tier("echo"); tier != sandbox.TierFast {
		t.Fatalf("first tier %v, want %v", tier, sandbox.TierFast)
	}
	var (
		next, afterSwap atomic.Int64
		mu              sync.Mutex
		failures        []string
		sent            = map[string]bool{}
	)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			// Events until 20 have started on the optimized tier.
			for afterSwap.Load() < 20 {
				id := strconv.FormatInt(next.Add(1), 10)
				optimized := false
				if tier, _ := set.Tier("echo"); tier == sandbox.TierOptimized {
					optimized = true
				}
				res, err := set.Invoke(context.Background(), "echo", functions.Event{ID: id, Attempt: 1, Data: []byte(id),
					Headers: map[string][]string{"Reply-Effect": {"effects"}}})
				mu.Lock()
				sent[id] = true
				if err != nil || string(res.Output) != id {
					failures = append(failures, fmt.Sprintf("event %s: %q, %v", id, res.Output, err))
				}
				mu.Unlock()
				if optimized {
					afterSwap.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d events failed across the tier-up, first: %s", len(failures), failures[0])
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	runs := map[string]int{}
	for _, s := range pub.sent {
		runs[strings.TrimPrefix(s, "effects ")]++
	}
	for id := range sent {
		if runs[id] != 1 {
			t.Errorf("event %s ran %d times", id, runs[id])
		}
	}
	if len(runs) != len(sent) {
		t.Errorf("%d effects for %d events", len(runs), len(sent))
	}
	t.Logf("%d events, %d after the swap", len(sent), afterSwap.Load())
}
