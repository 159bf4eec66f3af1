package bench

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-run/sluice/internal/testenv"
)

// clockTick is the unit of utime/stime in /proc/PID/stat (USER_HZ).
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU time used so far by this process, its exited children
// (workers that were waited for) and its live children (workers, read from
// /proc at clock-tick resolution).
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	d := tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
	for _, pid := range testenv.Children() {
		if f := testenv.ProcStat(pid); len(f) > 15 {
			u, _ := strconv.ParseInt(f[14], 10, 64)
			s, _ := strconv.ParseInt(f[15], 10, 64)
			d += time.Duration(u+s) * clockTick
		}
	}
	return d
}

func tv(t syscall.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}

// resetPeakRSS resets this process's VmHWM (Linux >= 4.0).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// statusKB reads a "Vm...:" line of /proc/PID/status in KiB.
func statusKB(pid, field string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// peakRSS is this process's peak resident memory since resetPeakRSS.
func peakRSS() int64 { return statusKB("self", "VmHWM") << 10 }

// childrenRSS sums the peak resident memory of the live children (workers)
// and counts them.
func childrenRSS() (int64, int) {
	var sum int64
	kids := testenv.Children()
	for _, pid := range kids {
		sum += statusKB(strconv.Itoa(pid), "VmHWM") << 10
	}
	return sum, len(kids)
}

// summary is the median, min and max of repeated measurements.
type summary struct{ med, lo, hi float64 }

func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{math.NaN(), math.NaN(), math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{med, s[0], s[len(s)-1]}
}

// fmtSum formats a summary as "median (min–max)" with format f per number.
func (s summary) fmt(f string) string {
	if math.IsNaN(s.med) {
		return "–"
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.med, s.lo, s.hi)
}

// percentile of sorted values (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }

// pick returns field name of each result in rs.
func pick[T any](rs []T, f func(T) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

// ratios divides b by a pairwise (runs of the same repetition).
func ratios(b, a []float64) []float64 {
	out := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		out = append(out, b[i]/a[i])
	}
	return out
}

// diffs subtracts a from b pairwise.
func diffs(b, a []float64) []float64 {
	out := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		out = append(out, b[i]-a[i])
	}
	return out
}
