package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// Storage settings: durable is sluice's default (fsync before every
// acknowledgement), fast is the server's default sync (every 2 minutes).
type storage struct {
	name       string
	syncAlways bool
}

var storages = []storage{{"durable", true}, {"fast", false}}

// Variants of the consume path, all on the same stream and durable consumer
// (made by triggers.Ensure), the same payload and connections.
const (
	// raw: a plain JetStream pull consumer (Messages iterator, the same
	// prefetch as sluice, `concurrency` goroutines), a native no-op Go
	// handler, Ack. The baseline (a).
	variantRaw = "raw JetStream + native no-op"
	// wasm: sluice's runner (status writes, settle) invoking the no-op wasm
	// guest through a warm worker. (b)
	variantWasm = "sluice + wasm no-op"
	// native: sluice's runner with a native no-op Invoker, to split (b)'s
	// cost between the runner and the wasm invocation.
	variantNative = "sluice + native no-op Invoker"
	// watermill: the peer, a Watermill router with native no-op handlers
	// on the same consumer (startWatermill), with its defaults.
	variantWatermill = "Watermill router + native no-op"
	// watermill-ackasync: the same with the subscriber's AckAsync.
	variantWatermillAsync = "Watermill router, AckAsync + native no-op"
)

// variantKeys are the variants' short names, for -report.only and the
// profile files of -report.profile.
var variantKeys = map[string]string{
	variantRaw:            "raw",
	variantNative:         "native",
	variantWasm:           "wasm",
	variantWatermill:      "watermill",
	variantWatermillAsync: "watermill-ackasync",
}

const (
	subject     = "bench.q"
	payloadSize = 128
)

// env is one embedded server with the queue binding laid out.
type env struct {
	srv   *server.Server
	dir   string
	pubNC *nats.Conn // the producer's connection
	pubJS jetstream.JetStream
	conNC *nats.Conn // the consumer's (sluice's) connection
	conJS jetstream.JetStream
	cfg   *config.Config
	bc    config.Binding
	// syncAcks is what sluice run sets for this storage: confirmed acks
	// with durable storage.
	syncAcks bool
}

func queueConfig(t testing.TB, module string, concurrency int) *config.Config {
	return testenv.Config(t, fmt.Sprintf(`
function "noop" { module = %q }
queue "q" {
  subject     = %q
  function    = "noop"
  concurrency = %d
}`, module, subject, concurrency))
}

func newEnv(t testing.TB, st storage, cfg *config.Config) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 4 << 30, NoSigs: true,
		SyncAlways: st.syncAlways,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	e := &env{srv: srv, dir: dir, cfg: cfg, bc: cfg.Bindings()[0], syncAcks: st.syncAlways}
	connect := func() (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	e.pubNC, e.pubJS = connect()
	e.conNC, e.conJS = connect()
	if err := triggers.Ensure(context.Background(), e.conJS, cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) close() {
	e.pubNC.Close()
	e.conNC.Close()
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	_ = os.RemoveAll(e.dir)
}

// start runs the consume side of variant; onEntry is called with each
// event's payload when the handler (native) or Invoke (wasm) is entered,
// onExit when Invoke returns (wasm only). stop drains and waits.
func (e *env) start(t testing.TB, variant string, set *functions.Set, onEntry, onExit func([]byte)) (stop func()) {
	t.Helper()
	ctx := context.Background()
	if variant == variantRaw {
		cons, err := e.conJS.Consumer(ctx, triggers.StreamName(e.bc), triggers.ConsumerName(e.bc))
		if err != nil {
			t.Fatal(err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(triggers.Prefetch(e.bc)))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range e.bc.Concurrency {
			wg.Go(func() {
				for {
					msg, err := it.Next()
					if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
						return
					}
					if err != nil {
						continue
					}
					onEntry(msg.Data())
					_ = msg.Ack()
				}
			})
		}
		return func() { it.Drain(); wg.Wait() }
	}
	if variant == variantWatermill || variant == variantWatermillAsync {
		return e.startWatermill(t, variant == variantWatermillAsync, onEntry)
	}
	var inv triggers.Invoker
	switch variant {
	case variantNative:
		inv = invokerFunc(func(_ context.Context, _ string, ev functions.Event) (functions.Result, error) {
			onEntry(ev.Data)
			return functions.Result{}, nil
		})
	case variantWasm:
		inv = invokerFunc(func(ctx context.Context, name string, ev functions.Event) (functions.Result, error) {
			onEntry(ev.Data)
			res, err := set.Invoke(ctx, name, ev)
			onExit(ev.Data)
			return res, err
		})
	default:
		t.Fatalf("unknown variant %q", variant)
	}
	runner, err := triggers.NewRunner(ctx, e.cfg, triggers.Options{
		JS: e.conJS, Publisher: triggers.NewPublisher(e.conNC, e.conJS), Invoker: inv,
		Logger: slog.New(slog.DiscardHandler), DrainTimeout: 10 * time.Second, SyncAcks: e.syncAcks,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	return func() { cancel(); <-done }
}

type invokerFunc func(context.Context, string, functions.Event) (functions.Result, error)

func (f invokerFunc) Invoke(ctx context.Context, name string, ev functions.Event) (functions.Result, error) {
	return f(ctx, name, ev)
}

// waitAcked polls the consumer until its ack floor reaches n (stream
// sequences start at 1 on a fresh server) or timeout passes, and returns
// the ack floor reached.
func (e *env) waitAcked(t testing.TB, n int, timeout time.Duration) int {
	ctx := context.Background()
	cons, err := e.pubJS.Consumer(ctx, triggers.StreamName(e.bc), triggers.ConsumerName(e.bc))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	floor := 0
	for {
		if info, err := cons.Info(ctx); err == nil {
			floor = int(info.AckFloor.Stream)
		}
		if floor >= n || time.Now().After(deadline) {
			return floor
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func nop([]byte) {}

// tputResult is one saturation run.
type tputResult struct {
	eventsPerSec float64
	cpuPerEvent  time.Duration // this process + workers
	peakRSS      int64         // this process (broker, client, runner)
	workerRSS    int64         // sum over live workers
	workers      int
	capped       bool // stopped at -report.cap before all events were acknowledged
}

// throughput publishes n events as fast as async publishing allows (4000
// outstanding) while the variant consumes them, and times first publish to
// last acknowledgement. A non-empty prof is a file for a CPU profile of
// this process over that window.
func throughput(t testing.TB, st storage, cfg *config.Config, variant string, set *functions.Set, n int, prof string) tputResult {
	t.Helper()
	e := newEnv(t, st, cfg)
	defer e.close()
	stop := e.start(t, variant, set, nop, nop)
	payload := make([]byte, payloadSize)
	resetPeakRSS()
	stopProf := startProfile(t, prof)
	cpu0 := cpuTime()
	start := time.Now()
	for range n {
		if _, err := e.pubJS.PublishAsync(subject, payload, jetstream.WithStallWait(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	acked := e.waitAcked(t, n, *runCap)
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	stopProf()
	if acked == 0 {
		t.Fatalf("%s: no event acknowledged in %s", variant, *runCap)
	}
	r := tputResult{eventsPerSec: float64(acked) / elapsed.Seconds(), cpuPerEvent: cpu / time.Duration(acked), peakRSS: peakRSS(), capped: acked < n}
	if r.capped {
		t.Logf("%s %s: only %d of %d events acknowledged after %s", st.name, variant, acked, n, elapsed)
	}
	if variant == variantWasm {
		r.workerRSS, r.workers = childrenRSS()
	}
	stop()
	return r
}

// latResult is one open-loop run.
type latResult struct {
	p50, p99, max    time.Duration // scheduled send -> handler / Invoke entry
	exitP50, exitP99 time.Duration // scheduled send -> Invoke returned (wasm)
	lagP50, lagP99   time.Duration // scheduled send -> PublishAsync called (harness)
	delivered        float64       // events/s handled over the run
	samples          int
}

// latency sends rate events/s for dur on a fixed schedule (open loop: each
// event's latency counts from its scheduled send time, so a stalled
// publisher is not hidden), discarding the first 200 ms as warm-up. How
// late the publisher itself sends is reported as lag. A non-empty prof is
// a file for a CPU profile of this process while events are sent and
// handled.
func latency(t testing.TB, st storage, cfg *config.Config, variant string, set *functions.Set, rate int, dur time.Duration, prof string) latResult {
	t.Helper()
	e := newEnv(t, st, cfg)
	defer e.close()
	n := int(float64(rate) * dur.Seconds())
	const lead = 50 * time.Millisecond // let the consumer's first pull arrive
	const warm = 200 * time.Millisecond
	interval := time.Second / time.Duration(rate)
	sched := func(i int) time.Duration { return lead + time.Duration(i)*interval }
	entry := make([]atomic.Int64, n)
	exit := make([]atomic.Int64, n)
	var got atomic.Int64
	t0 := time.Now()
	index := func(data []byte) int {
		if len(data) < 8 {
			return -1
		}
		i := int(binary.LittleEndian.Uint64(data))
		if i < 0 || i >= n {
			return -1
		}
		return i
	}
	onEntry := func(data []byte) {
		now := int64(time.Since(t0))
		if i := index(data); i >= 0 && entry[i].CompareAndSwap(0, now) {
			got.Add(1)
		}
	}
	onExit := func(data []byte) {
		now := int64(time.Since(t0))
		if i := index(data); i >= 0 {
			exit[i].CompareAndSwap(0, now)
		}
	}
	stop := e.start(t, variant, set, onEntry, onExit)
	stopProf := startProfile(t, prof)
	lag := make([]time.Duration, 0, n)
	var pubErr error
	inThread(func() {
		// Go's timers wake a sleeper up to ~1 ms late at these
		// intervals; nanosleep with a 1 µs timer slack on this thread
		// is late by tens of µs.
		setTimerSlack(time.Microsecond)
		for i := 0; i < n; {
			now := time.Since(t0)
			for ; i < n && sched(i) <= now; i++ {
				if sched(i) >= lead+warm {
					lag = append(lag, time.Since(t0)-sched(i))
				}
				p := make([]byte, payloadSize)
				binary.LittleEndian.PutUint64(p, uint64(i))
				if _, err := e.pubJS.PublishAsync(subject, p, jetstream.WithStallWait(time.Minute)); err != nil {
					pubErr = err
					return
				}
			}
			if i < n {
				nanosleep(sched(i) - time.Since(t0))
			}
		}
	})
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for got.Load() < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: only %d of %d events handled", variant, got.Load(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	handled := time.Since(t0) - lead
	stopProf()
	// Exits are recorded just after the last entry.
	time.Sleep(20 * time.Millisecond)
	stop()
	var lat, exitLat []time.Duration
	for i := range n {
		if sched(i) < lead+warm {
			continue
		}
		lat = append(lat, time.Duration(entry[i].Load())-sched(i))
		if x := exit[i].Load(); x != 0 {
			exitLat = append(exitLat, time.Duration(x)-sched(i))
		}
	}
	slices.Sort(lat)
	slices.Sort(exitLat)
	slices.Sort(lag)
	return latResult{
		p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[len(lat)-1],
		exitP50: percentile(exitLat, 50), exitP99: percentile(exitLat, 99),
		lagP50: percentile(lag, 50), lagP99: percentile(lag, 99),
		delivered: float64(n) / handled.Seconds(), samples: len(lat),
	}
}

// inThread runs fn on a goroutine locked to its own OS thread and waits.
func inThread(fn func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(done)
		fn()
	}()
	<-done
}

// setTimerSlack sets the calling thread's timer slack (Linux
// PR_SET_TIMERSLACK; the default is 50 µs).
func setTimerSlack(d time.Duration) {
	const prSetTimerSlack = 29
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(d.Nanoseconds()), 0)
}

// nanosleep blocks the calling thread for d (no Go timer).
func nanosleep(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	_ = syscall.Nanosleep(&ts, nil)
}
