package testenv

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Children returns the pids of this process's children.
func Children(t testing.TB) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(pid); len(f) > 3 && f[3] == strconv.Itoa(os.Getpid()) {
			out = append(out, pid)
		}
	}
	return out
}

// procStat returns the fields of /proc/PID/stat after the command name.
func procStat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	// Keep indexes as in proc(5): field 1 pid, 2 comm, 3 state, 4 ppid...
	return append([]string{"", "", ""}, strings.Fields(s[i+1:])[0:]...)[1:]
}

// CPUTicks is a process's user+system CPU time in clock ticks.
func CPUTicks(pid int) int {
	f := procStat(pid)
	if len(f) < 15 {
		return 0
	}
	u, _ := strconv.Atoi(f[13])
	s, _ := strconv.Atoi(f[14])
	return u + s
}

// BusyChildren lists child processes that use CPU over half a second.
func BusyChildren(t testing.TB) []int {
	t.Helper()
	before := map[int]int{}
	for _, pid := range Children(t) {
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
func RSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
