//go:build !linux

package worker

import "syscall"

// sysProcAttr puts a worker in its own process group, so that a terminal's
// Ctrl-C reaches only the runtime. Outside Linux there is no parent-death
// signal: a worker whose runtime dies ends when it next reads its input.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
