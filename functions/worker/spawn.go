package worker

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
)

// The kernel sends a child its parent-death signal when the thread that
// forked it exits, not when its process does (golang/go#27505), and the Go
// runtime ends a thread whenever a goroutine locked to it returns. So every
// worker is started from one goroutine locked to its thread for the life of
// the process: that thread never exits before the runtime does. The
// goroutine is process-wide because the thread is; it costs one idle thread.
var (
	spawnOnce sync.Once
	spawns    chan spawnJob
)

type spawnJob struct {
	cmd  *exec.Cmd
	done chan error
}

func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawns = make(chan spawnJob)
		go spawner()
	})
	done := make(chan error, 1)
	spawns <- spawnJob{cmd: cmd, done: done}
	return <-done
}

func spawner() {
	runtime.LockOSThread()
	for j := range spawns {
		j.done <- j.cmd.Start()
	}
}

// passEnv are the variables of the runtime's environment a worker keeps:
// those that tune the Go runtime and the dynamic loader. Nothing else is
// inherited (no credentials, no password_env variables).
var passEnv = []string{
	"LD_LIBRARY_PATH", "GODEBUG", "GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GOTRACEBACK", "GORACE", "GOCOVERDIR",
}

// workerEnv is a worker's whole environment.
func workerEnv(extra []string) []string {
	env := []string{EnvVar + "=1"}
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...)
}
