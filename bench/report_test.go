package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/internal/testenv"
)

var (
	report      = flag.Bool("report", false, "run the benchmark report (TestReport)")
	reps        = flag.Int("report.reps", 5, "repetitions of each throughput and warm-invocation measurement")
	latReps     = flag.Int("report.latreps", 3, "repetitions of each latency point")
	sections    = flag.String("report.sections", "tput,lat,warm,cold", "sections to run: tput, lat, warm, cold, density, scale (density and scale are not in the default: each takes longer than the rest together)")
	nFast       = flag.Int("report.n.fast", 15000, "events per throughput run, fast storage")
	nDurable    = flag.Int("report.n.durable", 2000, "events per throughput run, durable storage")
	latDur      = flag.Duration("report.latdur", 1500*time.Millisecond, "duration of each open-loop latency run")
	warmIters   = flag.Int("report.warm", 20000, "calls per warm-invocation run")
	restartMany = flag.Int("report.many", 100, "functions in the large restart (0 skips it)")
	runCap      = flag.Duration("report.cap", 20*time.Second, "stop a throughput run after this long and count what was acknowledged")
	only        = flag.String("report.only", "", "run only these consume variants: comma-separated raw, native, wasm, watermill, watermill-ackasync (for profiling)")
	profileDir  = flag.String("report.profile", "", "write a CPU profile of the first repetition of every throughput and latency run to DIR/<section>-<storage>-<concurrency or rate>-<variant>.prof")
	outFile     = flag.String("report.out", "RESULTS.md", "also write the report here (\"\" for stdout only)")
)

// TestReport runs every measurement of issue 3 in one process and prints
// one Markdown report:
//
//	go test ./bench -run TestReport -v -timeout 20m -report
func TestReport(t *testing.T) {
	if !*report {
		t.Skip("the benchmark report runs only with -report")
	}
	started := time.Now()
	load0 := loadavg()
	busy0, cpu0 := machineBusy(), cpuTime()
	wasmPath := testenv.Guest(t, "internal/testguests/noop")
	cacheDir := testenv.CacheDir(t)
	cfg4 := queueConfig(t, wasmPath, 4)
	cfg1 := queueConfig(t, wasmPath, 1)
	fn := cfg4.Functions[0]

	// One warm set for every run: 4 workers primed, as a runtime that has
	// been serving for a while has.
	set, err := functions.Load(cfg4.Functions, functions.Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	awaitTierUp(t, set, "noop")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { warmInvoke(t, set, 500) })
	}
	wg.Wait()

	var b strings.Builder
	fmt.Fprintf(&b, "# sluice benchmark report\n\n")
	fmt.Fprintf(&b, "- date: %s\n", started.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "- machine: %d CPUs (`nproc`), %s, %s/%s, %s\n", runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "- commit: %s\n", commit())
	fmt.Fprintf(&b, "- payload %d B, file storage, queue binding, embedded nats-server in this process, TCP on 127.0.0.1; "+
		"durable = `SyncAlways` (sluice default), fast = server default sync\n", payloadSize)
	fmt.Fprintf(&b, "- median (min–max) over the repetitions; variants interleaved, order rotated each repetition; ratios paired per repetition\n")

	run := func(name string) bool { return strings.Contains(*sections, name) }
	if run("tput") {
		reportThroughput(t, &b, set, map[int]*config.Config{4: cfg4, 1: cfg1})
	}
	if run("lat") {
		reportLatency(t, &b, set, cfg4)
	}
	if run("warm") {
		reportWarm(t, &b, set, wasmPath, cacheDir, fn)
	}
	if run("cold") {
		reportCold(t, &b, wasmPath, cacheDir, fn)
	}
	if run("density") {
		reportDensity(t, &b, cacheDir, fn)
	}
	if run("scale") {
		reportScale(t, &b, wasmPath)
	}
	wall := time.Since(started)
	// Clamped: rusage and /proc/stat disagree by a few seconds.
	others := max(0, machineBusy()-busy0-(cpuTime()-cpu0))
	fmt.Fprintf(&b, "\nTotal %s. Load average at start %s, at end %s. CPU used by other processes on the machine during the run: "+
		"%.0f core-seconds (%.0f%% of %d cores).\n", wall.Round(time.Second), load0, loadavg(),
		others.Seconds(), 100*others.Seconds()/wall.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU())

	fmt.Print("\n" + b.String())
	if *outFile != "" {
		if err := os.WriteFile(*outFile, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func reportThroughput(t *testing.T, b *strings.Builder, set *functions.Set, cfgs map[int]*config.Config) {
	fmt.Fprintf(b, "\n## (a)/(b) Throughput at saturation (e2e-queue)\n\n")
	fmt.Fprintf(b, "Publish N events with async publish (4000 outstanding) while the consumer drains; first publish → consumer ack floor = N "+
		"(polled every 5 ms); a run still going after %s is stopped and counts what was acknowledged. N = %d (durable), %d (fast). CPU = (user+sys of this process, which hosts the broker, "+
		"+ worker processes) / N. RSS = peak of this process during the run (+ workers' peak RSS for wasm).\n\n", *runCap, *nDurable, *nFast)
	fmt.Fprintf(b, "| storage | concurrency | variant | events/s | × raw | CPU µs/event | peak RSS MiB | target |\n")
	fmt.Fprintf(b, "| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	variants := selected(variantRaw, variantNative, variantWasm, variantWatermill, variantWatermillAsync)
	for _, st := range storages {
		n := *nFast
		if st.syncAlways {
			n = *nDurable
		}
		for _, conc := range []int{4, 1} {
			res := map[string][]tputResult{}
			for rep := range *reps {
				for i := range variants {
					v := variants[(i+rep)%len(variants)]
					prof := profilePath(rep, fmt.Sprintf("tput-%s-c%d-%s", st.name, conc, variantKeys[v]))
					res[v] = append(res[v], throughput(t, st, cfgs[conc], v, set, n, prof))
				}
			}
			eps := func(v string) []float64 {
				return pick(res[v], func(r tputResult) float64 { return r.eventsPerSec })
			}
			for _, v := range variants {
				ratio, target := "1", ""
				if v != variantRaw {
					ratio = summarize(ratios(eps(v), eps(variantRaw))).fmt("%.2f")
				}
				if v == variantWasm {
					target = "≥ 0.6× (fast), ambitious 0.75×"
					if st.syncAlways {
						target = "≥ 0.9× (durable, issue 3)"
					}
					if len(res[variantWatermillAsync]) > 0 {
						target += "; ambition: ahead of Watermill AckAsync — measured " +
							summarize(ratios(eps(v), eps(variantWatermillAsync))).fmt("%.2f") + "×"
					}
				}
				if c := count(res[v], func(r tputResult) bool { return r.capped }); c > 0 {
					target += fmt.Sprintf(" (%d run(s) stopped at %s, slower than %.0f events/s)", c, *runCap, float64(n)/runCap.Seconds())
				}
				rss := summarize(pick(res[v], func(r tputResult) float64 { return mib(r.peakRSS) })).fmt("%.0f")
				if v == variantWasm {
					rss += fmt.Sprintf(" + %d workers %s", res[v][0].workers,
						summarize(pick(res[v], func(r tputResult) float64 { return mib(r.workerRSS) })).fmt("%.0f"))
				}
				fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", st.name, conc, v,
					summarize(eps(v)).fmt("%.0f"), ratio,
					summarize(pick(res[v], func(r tputResult) float64 { return us(r.cpuPerEvent) })).fmt("%.1f"),
					rss, target)
				t.Logf("tput %s c=%d %s: %v", st.name, conc, v, eps(v))
			}
		}
	}
}

func reportLatency(t *testing.T, b *strings.Builder, set *functions.Set, cfg *config.Config) {
	fmt.Fprintf(b, "\n## (a)/(b) Open-loop latency: scheduled publish → function entry (latency)\n\n")
	fmt.Fprintf(b, "Async publishes on a fixed schedule for %s per run (first 200 ms dropped); latency counts from each event's "+
		"scheduled send time. Concurrency 4. Function entry: raw = the native handler is entered; sluice = "+
		"`Invoker.Invoke` is called by the runner (before the worker round trip); \"Invoke returned\" adds the whole worker call. "+
		"Percentiles by sorting all samples (nearest rank).\n\n", *latDur)
	fmt.Fprintf(b, "| storage | rate/s | variant | p50 µs | p99 µs | max µs | Invoke returned p50 / p99 µs | handled/s | publisher lag p50 / p99 µs | sluice − raw p50 µs | sluice / raw p99 | target |\n")
	fmt.Fprintf(b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	variants := selected(variantRaw, variantWasm)
	for _, st := range storages {
		rates := []int{1000, 5000}
		if st.syncAlways {
			// 5000/s is beyond even raw JetStream's capacity with an
			// fsync per write on this machine: latency would only measure
			// the queue growing.
			rates = []int{500, 1000}
		}
		for _, rate := range rates {
			res := map[string][]latResult{}
			for rep := range *latReps {
				for i := range variants {
					v := variants[(i+rep)%len(variants)]
					prof := profilePath(rep, fmt.Sprintf("lat-%s-%d-%s", st.name, rate, variantKeys[v]))
					res[v] = append(res[v], latency(t, st, cfg, v, set, rate, *latDur, prof))
				}
			}
			get := func(v string, f func(latResult) time.Duration) []float64 {
				return pick(res[v], func(r latResult) float64 { return us(f(r)) })
			}
			p50 := func(r latResult) time.Duration { return r.p50 }
			p99 := func(r latResult) time.Duration { return r.p99 }
			for _, v := range variants {
				exit, diff, ratio, target := "–", "", "", ""
				if v == variantWasm {
					exit = summarize(get(v, func(r latResult) time.Duration { return r.exitP50 })).fmt("%.0f") + " / " +
						summarize(get(v, func(r latResult) time.Duration { return r.exitP99 })).fmt("%.0f")
					diff = summarize(diffs(get(v, p50), get(variantRaw, p50))).fmt("%.0f")
					ratio = summarize(ratios(get(v, p99), get(variantRaw, p99))).fmt("%.2f")
					target = "adds ≤ 50 µs at p50; p99 ≤ 1.5× raw"
				}
				fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", st.name, rate, v,
					summarize(get(v, p50)).fmt("%.0f"), summarize(get(v, p99)).fmt("%.0f"),
					summarize(get(v, func(r latResult) time.Duration { return r.max })).fmt("%.0f"), exit,
					summarize(pick(res[v], func(r latResult) float64 { return r.delivered })).fmt("%.0f"),
					summarize(get(v, func(r latResult) time.Duration { return r.lagP50 })).fmt("%.0f")+" / "+
						summarize(get(v, func(r latResult) time.Duration { return r.lagP99 })).fmt("%.0f"),
					diff, ratio, target)
				t.Logf("lat %s %d/s %s: p50 %v p99 %v", st.name, rate, v, get(v, p50), get(v, p99))
			}
		}
	}
}

func reportWarm(t *testing.T, b *strings.Builder, set *functions.Set, wasmPath, cacheDir string, fn config.Function) {
	fmt.Fprintf(b, "\n## (c) Warm invocation through a worker (worker-rtt)\n\n")
	fmt.Fprintf(b, "%d calls per run in a tight loop, one goroutine, 128-byte event. Baselines: a raw pipe round trip to a child "+
		"process (this test binary echoing a %d-byte frame with a 16-byte frame, bufio + flush like the worker protocol), and "+
		"the wasm call itself in this process (`sandbox.Instance.Handle`, no worker).\n\n", *warmIters, payloadSize+48)
	fmt.Fprintf(b, "| path | mean ns/op | p50 ns | p99 ns | target |\n| --- | --- | --- | --- | --- |\n")
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := sandbox.NewEngine(cacheDir).Compile(wasm, fn.Memory)
	if err != nil {
		t.Fatal(err)
	}
	echo := startEcho(t, "1")
	defer echo.close()
	echoLocked := startEcho(t, "locked")
	defer echoLocked.close()
	fast, err := sandbox.NewTierEngine("", sandbox.TierFast).Compile(wasm, fn.Memory)
	if err != nil {
		t.Fatal(err)
	}
	// A function compiled from an empty cache: first tier, then tiered up.
	tiered, err := functions.Load([]config.Function{fn}, functions.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tiered.Close()
	awaitTierUp(t, tiered, "noop")
	const (
		pathPipe     = "raw pipe round trip to a child"
		pathLocked   = "raw pipe round trip, child goroutine locked to its thread (as a worker's)"
		pathWorker   = "functions.Set.Invoke (warm worker, Cranelift from the cache)"
		pathTiered   = "functions.Set.Invoke (warm worker, after Singlepass → Cranelift tier-up)"
		pathInProc   = "in-process wasm call (sandbox Handle, Cranelift)"
		pathInProcSP = "in-process wasm call (sandbox Handle, Singlepass: the first tier)"
	)
	paths := []string{pathPipe, pathLocked, pathWorker, pathTiered, pathInProc, pathInProcSP}
	res := map[string][]callResult{}
	for rep := range *reps {
		for i := range paths {
			p := paths[(i+rep)%len(paths)]
			var r callResult
			switch p {
			case pathPipe:
				r = pipeRTT(t, echo, *warmIters)
			case pathLocked:
				r = pipeRTT(t, echoLocked, *warmIters)
			case pathWorker:
				r = warmInvoke(t, set, *warmIters)
			case pathTiered:
				r = warmInvoke(t, tiered, *warmIters)
			case pathInProc:
				r = inProcessHandle(t, mod, *warmIters)
			case pathInProcSP:
				r = inProcessHandle(t, fast, *warmIters)
			}
			res[p] = append(res[p], r)
		}
	}
	ns := func(p string, f func(callResult) time.Duration) summary {
		return summarize(pick(res[p], func(r callResult) float64 { return float64(f(r)) }))
	}
	for _, p := range paths {
		target := ""
		if p == pathWorker {
			ratio := summarize(ratios(pick(res[pathWorker], func(r callResult) float64 { return float64(r.p50) }),
				pick(res[pathPipe], func(r callResult) float64 { return float64(r.p50) }))).fmt("%.2f")
			target = "< 30 µs (issue 3); p50 ≤ 2× pipe and ≤ 25 µs — measured p50 = " + ratio + "× pipe"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", p,
			ns(p, func(r callResult) time.Duration { return r.mean }).fmt("%.0f"),
			ns(p, func(r callResult) time.Duration { return r.p50 }).fmt("%.0f"),
			ns(p, func(r callResult) time.Duration { return r.p99 }).fmt("%.0f"), target)
	}
}

func reportCold(t *testing.T, b *strings.Builder, wasmPath, cacheDir string, fn config.Function) {
	fmt.Fprintf(b, "\n## (d) Cold start\n\n")
	fmt.Fprintf(b, "`functions.Load` (an empty cache: compile with Singlepass in a worker and prove it with a first worker; "+
		"a warm cache: check the cache, start no worker) → first `Invoke` of every function returned (a cold start each). "+
		"Deploy: an empty compile cache (the Cranelift tier-up then runs in the background, not counted). Restart: the compile cache warm (and in the page cache), "+
		"N functions of the same no-op module (%s). Baselines in this process: Cranelift compile alone (`wasmer.NewModule`) and "+
		"`sandbox` Instantiate (deserialize + instantiate + `_initialize`) + first call.\n\n", sizeOf(wasmPath))
	fmt.Fprintf(b, "| measurement | runs | of which Load ms | total ms | target |\n| --- | --- | --- | --- | --- |\n")
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := sandbox.NewEngine(cacheDir).Compile(wasm, fn.Memory)
	if err != nil {
		t.Fatal(err)
	}
	var dep []coldResult
	var comp, compSP, inst []float64
	for range 3 {
		dep = append(dep, deploy(t, fn))
		comp = append(comp, ms(rawCompile(t, wasm, fn.Memory, sandbox.TierOptimized)))
		compSP = append(compSP, ms(rawCompile(t, wasm, fn.Memory, sandbox.TierFast)))
		inst = append(inst, ms(rawInstantiate(t, mod)))
	}
	raw := make([]float64, len(comp))
	for i := range comp {
		raw[i] = comp[i] + inst[i]
	}
	depTotal := pick(dep, func(r coldResult) float64 { return ms(r.total) })
	row := func(name string, rs []coldResult, target string) {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s |\n", name, len(rs),
			summarize(pick(rs, func(r coldResult) float64 { return ms(r.load) })).fmt("%.0f"),
			summarize(pick(rs, func(r coldResult) float64 { return ms(r.total) })).fmt("%.0f"), target)
	}
	row("deploy: 1 function, empty cache", dep, fmt.Sprintf("≤ 1.15× raw compile + instantiate, ≤ 1 s — measured %s×",
		summarize(ratios(depTotal, raw)).fmt("%.2f")))
	fmt.Fprintf(b, "| baseline: raw Cranelift compile, in process | %d | | %s | |\n", len(comp), summarize(comp).fmt("%.0f"))
	fmt.Fprintf(b, "| baseline: raw Singlepass compile, in process | %d | | %s | |\n", len(compSP), summarize(compSP).fmt("%.0f"))
	fmt.Fprintf(b, "| baseline: instantiate + first call, in process | %d | | %s | |\n", len(inst), summarize(inst).fmt("%.1f"))
	fmt.Fprintf(b, "| baseline: raw compile + instantiate | %d | | %s | |\n", len(raw), summarize(raw).fmt("%.0f"))
	for _, c := range []struct {
		n, runs int
		target  string
	}{{1, 5, "≤ 100 ms"}, {10, 3, ""}, {*restartMany, 1, "≤ 1.5 s for 100"}} {
		if c.n <= 0 {
			continue
		}
		var rs []coldResult
		for range c.runs {
			rs = append(rs, restart(t, fn, c.n, cacheDir))
		}
		row(fmt.Sprintf("restart: %d function(s), warm cache", c.n), rs, c.target)
	}
}

// awaitTierUp waits for the function's optimized compile to be swapped
// in, so that measurements do not share the cores with it.
func awaitTierUp(t testing.TB, set *functions.Set, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if tier, _ := set.Tier(name); tier == sandbox.TierOptimized {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("function %s not optimized after 5 minutes", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sizeOf(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", float64(fi.Size())/1e6)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func commit() string {
	out, err := exec.CommandContext(context.Background(), "git", "-C", testenv.RepoRoot(), "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// profilePath is where -report.profile puts the CPU profile of run name,
// or "" when the flag is unset or rep is not the first repetition: one
// profile per run keeps the files few, and the first repetition runs every
// variant in the same order.
func profilePath(rep int, name string) string {
	if *profileDir == "" || rep > 0 {
		return ""
	}
	return filepath.Join(*profileDir, name+".prof")
}

// startProfile writes a CPU profile of this process to path until the
// returned function is called; an empty path profiles nothing. Worker
// processes are not in it: their CPU is in the report's CPU column.
func startProfile(t testing.TB, path string) (stop func()) {
	t.Helper()
	if path == "" {
		return func() {}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		t.Fatalf("-report.profile (not with -cpuprofile): %v", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}
}

// selected filters variants by -report.only.
func selected(variants ...string) []string {
	if *only == "" {
		return variants
	}
	var out []string
	for _, v := range variants {
		for _, k := range strings.Split(*only, ",") {
			if strings.TrimSpace(k) == variantKeys[v] {
				out = append(out, v)
			}
		}
	}
	return out
}

// machineBusy is the CPU time all processes used so far (/proc/stat: every
// state but idle, iowait and steal).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 7 { // idle, iowait, steal, guest (counted in user)
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * clockTick
}

func count[T any](rs []T, f func(T) bool) int {
	n := 0
	for _, r := range rs {
		if f(r) {
			n++
		}
	}
	return n
}
