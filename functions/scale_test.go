package functions_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
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
