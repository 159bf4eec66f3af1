package testenv

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServerModule is the module whose main package is the nats-server
// command; go.mod already requires it for the embedded server.
const natsServerModule = "github.com/nats-io/nats-server/v2"

var natsServerBin struct {
	once sync.Once
	path string
	err  error
}

// NATSServerBinary builds the nats-server command from the nats-server
// module at the version go.mod requires (the one sluice embeds), once per
// test process, and returns its path in CacheDir/bin.
//
// The file is named after the module version: test binaries of several
// packages (or of several checkouts) build at the same time and share
// CacheDir, so a checkout on another version must not replace this one's
// server. Each build goes to a temporary name and is renamed into place,
// so the path is always a complete executable, even for a process that
// starts it while another process renames a new build over it.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	cache := CacheDir(t) // outside Do: a Fatalf inside would leave it done with no path
	b := &natsServerBin
	b.once.Do(func() { b.path, b.err = buildNATSServer(cache) })
	if b.err != nil {
		t.Fatalf("nats-server binary: %v", b.err)
	}
	return b.path
}

func buildNATSServer(cacheDir string) (string, error) {
	dir := filepath.Join(cacheDir, "bin")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "nats-server-build-*.tmp")
	if err != nil {
		return "", err
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpPath) // gone already once renamed
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Built from the repo root, the package resolves through go.mod and
	// go.sum: the same version as the embedded server, and nothing to add
	// to either file since main.go imports only the server package.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmpPath, natsServerModule)
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", natsServerModule, err, out)
	}
	version, err := natsServerVersion(tmpPath)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "nats-server-"+version)
	if err := os.Rename(tmpPath, path); err != nil {
		return "", err
	}
	return path, nil
}

// natsServerVersion reads the version of the nats-server module that the
// executable at path was built from.
func natsServerVersion(path string) (string, error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "", err
	}
	m := info.Main
	if m.Path != natsServerModule || m.Version == "" {
		return "", fmt.Errorf("%s was built from %s %q, not from a version of %s", path, m.Path, m.Version, natsServerModule)
	}
	if m.Replace != nil {
		// A replacement (maybe a local directory) can change without a
		// new version: keep it apart from the released builds.
		return m.Version + "-replaced", nil
	}
	return m.Version, nil
}

// natsServerStartTimeout bounds how long StartNATSServer waits for the
// server to accept connections and answer JetStream requests.
const natsServerStartTimeout = 30 * time.Second

// StartNATSServer starts NATSServerBinary as a separate process: JetStream
// on, client port chosen by the server on 127.0.0.1, store in a temporary
// directory, followed by args (later flags override earlier ones). It
// returns the client URL once the server accepts connections and JetStream
// answers. The server is killed when the test ends, and its output logged
// if the test failed.
//
// The server picks its own port and reports it in a ports file, so there
// is no window in which another process could take a port chosen here.
func StartNATSServer(t testing.TB, args ...string) (url string) {
	t.Helper()
	return StartSecureNATSServer(t, nil, args...)
}

// StartSecureNATSServer is StartNATSServer for a server that requires
// credentials or TLS: ready is how the readiness check connects (its
// identity needs JetStream).
func StartSecureNATSServer(t testing.TB, ready []nats.Option, args ...string) (url string) {
	t.Helper()
	bin := NATSServerBinary(t)
	dir := t.TempDir()
	portsDir := filepath.Join(dir, "ports")
	storeDir := filepath.Join(dir, "jetstream")
	for _, d := range []string{portsDir, storeDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("nats-server: %v", err)
		}
	}
	// The output goes to a file rather than a pipe: the server writes it
	// directly, and it can be read at any time without racing a copier.
	logPath := filepath.Join(dir, "nats-server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, append([]string{
		"-a", "127.0.0.1", "-p", "-1", "-js", "-sd", storeDir, "--ports_file_dir", portsDir,
	}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("nats-server: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is in cmd.ProcessState
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // fails only if it already exited
		<-exited
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("nats-server (pid %d, %v) output:\n%s", cmd.Process.Pid, cmd.ProcessState, out)
		}
	})

	deadline := time.NewTimer(natsServerStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		url, err = natsServerReady(portsDir, ready)
		if err == nil {
			return url
		}
		select {
		case <-exited:
			// Its output is logged at cleanup, as the test has failed.
			t.Fatalf("nats-server exited before it was ready (%v)", cmd.ProcessState)
		case <-deadline.C:
			t.Fatalf("nats-server not ready after %s: %v", natsServerStartTimeout, err)
		case <-tick.C:
		}
	}
}

// natsServerReady returns the client URL from the server's ports file once
// a client can connect there and get the JetStream account information.
func natsServerReady(portsDir string, opts []nats.Option) (string, error) {
	files, err := filepath.Glob(filepath.Join(portsDir, "*.ports"))
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", errors.New("no ports file yet")
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return "", err
	}
	var ports server.Ports
	// The server writes the file in place: a partial one is retried.
	if err := json.Unmarshal(b, &ports); err != nil {
		return "", fmt.Errorf("ports file %s: %w", files[0], err)
	}
	if len(ports.Nats) == 0 {
		return "", fmt.Errorf("ports file %s has no client URL: %s", files[0], b)
	}
	url := ports.Nats[0]
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(2 * time.Second), nats.MaxReconnects(0)}, opts...)...)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", fmt.Errorf("jetstream %s: %w", url, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return "", fmt.Errorf("jetstream account info at %s: %w", url, err)
	}
	return url, nil
}
