package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
)

var (
	densityIdle   = flag.Int("report.density.idle", 1000, "deployed functions without events in the density section")
	densityActive = flag.Int("report.density.active", 100, "active functions at concurrency 1 in the density section")
)

// pssOf is a process's proportional set size (Linux >= 4.14; 0 elsewhere).
func pssOf(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// reportDensity measures what idle and active functions cost: issue 12's
// density section, in this process (functions.Load stands for a node's
// start: the broker's own start is measured elsewhere).
func reportDensity(t *testing.T, b *strings.Builder, cacheDir string, fn config.Function) {
	fmt.Fprintf(b, "\n## Density\n\n")
	fmt.Fprintf(b, "Copies of the no-op function, compile cache warm. Load = `functions.Load` (checks the cache, starts no worker). "+
		"Cold start = an idle function's first `Invoke` (a worker process started, the compiled module loaded, the call). "+
		"PSS from `/proc/PID/smaps_rollup`, this process plus its workers.\n\n")
	fmt.Fprintf(b, "| measurement | value | target |\n| --- | --- | --- |\n")
	fns := func(n int) []config.Function {
		out := make([]config.Function, n)
		for i := range out {
			out[i] = fn
			out[i].Name = fmt.Sprintf("noop%d", i)
		}
		return out
	}
	before := len(testenv.Children())
	start := time.Now()
	idle, err := functions.Load(fns(*densityIdle), functions.Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	load := time.Since(start)
	workers := len(testenv.Children()) - before
	self := pssOf(os.Getpid())
	fmt.Fprintf(b, "| %d idle functions: Load | %.0f ms | restart to ready ≤ 3 s |\n", *densityIdle, ms(load))
	fmt.Fprintf(b, "| %d idle functions: worker processes | %d | none |\n", *densityIdle, workers)
	fmt.Fprintf(b, "| %d idle functions: PSS of this process (no broker) | %.0f MiB | node RSS ≤ 300 MiB |\n", *densityIdle, mib(self))
	var colds []float64
	ev := benchEvent()
	for i := range min(20, *densityIdle) {
		s := time.Now()
		if _, err := idle.Invoke(context.Background(), fmt.Sprintf("noop%d", i), ev); err != nil {
			t.Fatal(err)
		}
		colds = append(colds, ms(time.Since(s)))
	}
	idle.Close()
	slices.Sort(colds)
	fmt.Fprintf(b, "| cold start of an idle function (first Invoke), %d functions | p50 %.1f ms, max %.1f ms | p50 ≤ 50 ms |\n",
		len(colds), colds[len(colds)/2], colds[len(colds)-1])

	active, err := functions.Load(fns(*densityActive), functions.Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	for i := range *densityActive {
		if _, err := active.Invoke(context.Background(), fmt.Sprintf("noop%d", i), ev); err != nil {
			t.Fatal(err)
		}
	}
	total := pssOf(os.Getpid())
	kids := testenv.Children()
	for _, pid := range kids {
		total += pssOf(pid)
	}
	fmt.Fprintf(b, "| %d active functions at concurrency 1: total PSS (this process + %d workers) | %.0f MiB | ≤ 2 GiB |\n",
		*densityActive, len(kids), mib(total))
}
