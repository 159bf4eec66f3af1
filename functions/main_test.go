package functions_test

import (
	"encoding/binary"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/sluice-run/sluice/functions/worker"
)

// mitmEnv names a token file: a worker started with it set, while it can
// take the token (remove the file), rewrites its first done frame into a
// compile reply on its way to the supervisor, as a compromised worker
// would. One worker in all breaks the protocol, once.
const mitmEnv = "SLUICE_TEST_MITM_TOKEN"

// Protocol constants, as the worker package defines them.
const (
	fdToSupervisor = 4
	frameDone      = 15
	frameCompiled  = 10
)

// TestMain lets this test binary serve as the sluice worker processes that
// the functions under test start.
func TestMain(m *testing.M) {
	if os.Getenv(worker.EnvVar) == "1" && os.Getenv(mitmEnv) != "" {
		interpose(os.Getenv(mitmEnv))
	}
	worker.RunIfWorker()
	os.Exit(m.Run())
}

// interpose puts a pipe between the worker and its supervisor's end of the
// protocol, and a goroutine (ending with the process) that forwards frames.
func interpose(token string) {
	up, err := syscall.Dup(fdToSupervisor)
	if err != nil {
		return
	}
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	if err := syscall.Dup3(int(w.Fd()), fdToSupervisor, 0); err != nil {
		return
	}
	w.Close()
	out := os.NewFile(uintptr(up), "supervisor")
	go func() {
		var hdr [5]byte
		for {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
			if _, err := io.ReadFull(r, body); err != nil {
				return
			}
			if hdr[4] == frameDone && os.Remove(token) == nil {
				hdr[4] = frameCompiled
			}
			if _, err := out.Write(append(hdr[:], body...)); err != nil {
				return
			}
		}
	}()
}
