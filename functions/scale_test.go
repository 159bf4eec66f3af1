package functions_test

import (
	"context"
	"errors"
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
		optimized(t, set, "f")
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

// gatePublisher holds every publish but the looping event's until open
// is closed.
type gatePublisher struct {
	open    chan struct{}
	entered atomic.Int32
	looping atomic.Bool // the looping event published, and loops
	mu      sync.Mutex
	sent    []string
}

func (p *gatePublisher) Publish(_ context.Context, subject string, data []byte) error {
	if string(data) == "L" {
		p.looping.Store(true)
		return nil
	}
	p.entered.Add(1)
	<-p.open
	p.mu.Lock()
	p.sent = append(p.sent, string(data))
	p.mu.Unlock()
	return nil
}

// stallWAT publishes its payload to "s", then loops forever on a payload
// starting with "L" and succeeds on any other.
const stallWAT = `(module
  (import "sluice" "event_get" (func $event_get (param i32 i32 i32) (result i32)))
  (import "sluice" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "s")
  (func (export "handle") (result i32) (local $n i32)
    (local.set $n (call $event_get (i32.const 0) (i32.const 16) (i32.const 64)))
    (drop (call $publish (i32.const 0) (i32.const 1) (i32.const 16) (local.get $n)))
    (if (i32.eq (i32.load8_u (i32.const 16)) (i32.const 76)) (then (loop $l (br $l))))
    (i32.const 0)))`

// TestTimeoutReleasesTheOtherEventsOfItsWorker: four events in flight at
// once run in one worker process, each in its own instance; when one of
// them times out the worker is killed, and the other three end with
// ErrReleased (no failure of theirs, no attempt used), then run again and
// succeed.
func TestTimeoutReleasesTheOtherEventsOfItsWorker(t *testing.T) {
	pub := &gatePublisher{open: make(chan struct{})}
	set, err := functions.Load([]config.Function{{Name: "f", Module: testenv.WAT(t, stallWAT), Timeout: 5 * time.Second,
		Memory: 1 << 20, Publish: []string{"s"}}}, functions.Options{CacheDir: t.TempDir(), Publisher: pub, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	// A tier-up swap would send later events to a new worker.
	optimized(t, set, "f")
	invoke := func(id string) error {
		res, err := set.Invoke(context.Background(), "f", functions.Event{ID: id, Attempt: 1, Data: []byte(id)})
		if err == nil && len(res.Output) != 0 {
			return fmt.Errorf("unexpected output %q", res.Output)
		}
		return err
	}
	loopErr := make(chan error, 1)
	go func() { loopErr <- invoke("L") }()
	// Its timeout runs from before the others start, so it is the one
	// that times out.
	testenv.Eventually(t, 10*time.Second, "the looping event in its guest", pub.looping.Load)
	others := []string{"a", "b", "c"}
	errs := make([]error, len(others))
	var wg sync.WaitGroup
	for i, id := range others {
		wg.Go(func() { errs[i] = invoke(id) })
	}
	testenv.Eventually(t, 10*time.Second, "three more events waiting in publish", func() bool { return pub.entered.Load() == 3 })
	if n := set.Workers("f"); n != 1 {
		t.Fatalf("%d worker processes for four events in flight, want one", n)
	}
	if err := <-loopErr; !errors.Is(err, functions.ErrTimeout) {
		t.Fatalf("the looping event: %v, want a timeout", err)
	}
	close(pub.open)
	wg.Wait()
	for i, err := range errs {
		var fe *functions.Error
		if !errors.Is(err, functions.ErrReleased) || errors.As(err, &fe) {
			t.Errorf("event %s in the killed worker: %v, want ErrReleased and no failure", others[i], err)
		}
	}
	// Their publishes were under way when the worker died: like any
	// event run again, a released one may repeat an effect.
	pub.mu.Lock()
	before := len(pub.sent)
	pub.mu.Unlock()
	for _, id := range others {
		if err := invoke(id); err != nil {
			t.Errorf("event %s run again: %v", id, err)
		}
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if got := strings.Join(pub.sent[before:], ","); got != "a,b,c" {
		t.Errorf("effects of the events run again %q, want a,b,c", got)
	}
}
