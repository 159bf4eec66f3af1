package guestbuild

import "syscall"

// sysProcAttr puts a compiler process in its own process group, so that a
// terminal's Ctrl-C reaches only the runtime, and has the kernel kill it
// when the runtime dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
