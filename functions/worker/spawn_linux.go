package worker

import "syscall"

// sysProcAttr puts a worker in its own process group, so that a terminal's
// Ctrl-C reaches only the runtime (which then drains its invocations), and
// has the kernel kill it when the runtime dies, however it dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
