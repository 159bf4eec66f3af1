package bench

import (
	"bufio"
	"encoding/binary"
	"io"
	"os"
	"runtime"
	"testing"

	"github.com/sluice-run/sluice/functions/worker"
)

// echoEnv makes the test binary a trivial child process that answers every
// length-prefixed frame on stdin with a 16-byte frame on stdout: the raw
// pipe round trip that a worker invocation is compared with. "1" serves on
// an ordinary goroutine, "locked" on one locked to its OS thread.
const echoEnv = "SLUICE_BENCH_ECHO"

// TestMain lets this test binary serve as sluice's worker processes and as
// the echo child.
func TestMain(m *testing.M) {
	worker.RunIfWorker()
	switch os.Getenv(echoEnv) {
	case "1":
		os.Exit(serveEcho(os.Stdin, os.Stdout))
	case "locked":
		// As a worker does: its main goroutine locked to its thread.
		runtime.LockOSThread()
		os.Exit(serveEcho(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

func serveEcho(in io.Reader, out io.Writer) int {
	r := bufio.NewReaderSize(in, 64<<10)
	w := bufio.NewWriterSize(out, 64<<10)
	var hdr [4]byte
	buf := make([]byte, 64<<10)
	reply := make([]byte, 4+16)
	binary.BigEndian.PutUint32(reply, 16)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if int(n) > len(buf) {
			return 3
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return 3
		}
		if _, err := w.Write(reply); err != nil {
			return 3
		}
		if err := w.Flush(); err != nil {
			return 3
		}
	}
}
