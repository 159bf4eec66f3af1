package testenv

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-run/sluice/functions/worker"
)

// Children returns the pids of this process's live children (none where
// /proc is missing).
func Children() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	me := strconv.Itoa(os.Getpid())
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := ProcStat(pid); len(f) > 4 && f[4] == me {
			out = append(out, pid)
		}
	}
	return out
}

// ProcStat returns the fields of /proc/PID/stat numbered as in proc(5)
// (f[1] pid, f[3] state, f[4] ppid, f[14] utime, f[15] stime).
func ProcStat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return append([]string{"", strconv.Itoa(pid), "comm"}, strings.Fields(s[i+1:])...)
}

// CPUTicks is a process's user+system CPU time in clock ticks.
func CPUTicks(pid int) int {
	f := ProcStat(pid)
	if len(f) < 16 {
		return 0
	}
	u, _ := strconv.Atoi(f[14])
	s, _ := strconv.Atoi(f[15])
	return u + s
}

// BusyChildren lists child processes that use CPU over half a second.
func BusyChildren(t testing.TB) []int {
	t.Helper()
	before := map[int]int{}
	for _, pid := range Children() {
		before[pid] = CPUTicks(pid)
	}
	time.Sleep(500 * time.Millisecond) // the measurement window, not a wait for an event
	var busy []int
	for pid, ticks := range before {
		if CPUTicks(pid)-ticks > 10 {
			busy = append(busy, pid)
		}
	}
	return busy
}

// RSS is a process's resident memory in bytes (0 if unknown).
func RSS(pid int) int64 { return worker.RSSOf(pid) }
