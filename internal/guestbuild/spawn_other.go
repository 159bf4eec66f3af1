//go:build !linux

package guestbuild

import "syscall"

// sysProcAttr puts a compiler process in its own process group, so that a
// terminal's Ctrl-C reaches only the runtime. Outside Linux there is no
// parent-death signal: the process ends when its input closes.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
