// Package testenv starts real sluice parts for tests: guest modules built
// from the repo's sources, runtimes on an embedded JetStream server with a
// random port and a temporary directory, a nats-server process for runtimes
// that are its clients, and client connections.
package testenv

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/wasmerio/wasmer-go/wasmer"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/guestbuild"
	sluiceruntime "github.com/sluice-run/sluice/runtime"
)

// RepoRoot is the directory of the repository's go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CacheDir is a compile cache shared by every test binary and run on this
// machine: artifacts are keyed by the module's content and written
// atomically, and compiling a Go guest takes about two seconds.
func CacheDir(t testing.TB) string {
	dir := filepath.Join(os.TempDir(), "sluice-test-cache")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("cache dir: %v", err)
	}
	return dir
}

// Guest builds the Go guest at dir (relative to the repo root, such as
// "internal/testguests/noop" or "examples/emails/sender") and returns the
// module's path.
func Guest(t testing.TB, dir string) string {
	t.Helper()
	src := filepath.Join(RepoRoot(), dir)
	out := filepath.Join(src, filepath.Base(dir)+".wasm")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := guestbuild.Build(ctx, src, out); err != nil {
		t.Fatalf("build guest %s: %v", dir, err)
	}
	return out
}

// Config parses hcl as if it were a file at the repo root, so relative
// module paths resolve there. Unless hcl has a metrics block, the metrics
// endpoint listens on a free port rather than the default one, which tests
// running at the same time (or a `sluice run` on this machine) would share.
func Config(t testing.TB, hcl string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(RepoRoot(), "test-runtime.hcl"), []byte(hcl))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if !metricsBlock.MatchString(hcl) {
		cfg.Metrics.Listen = MetricsListen
	}
	return cfg
}

var metricsBlock = regexp.MustCompile(`(?m)^\s*metrics\s*\{`)

// MetricsListen is the metrics address of test runtimes: a free port on
// loopback (see Runtime.MetricsAddr).
const MetricsListen = "127.0.0.1:0"

// RuntimeOptions are the options Start uses: cfg on a random port, metrics
// on a free one, data in dir ("" for a new temporary one), the shared
// compile cache, warnings logged to the test.
func RuntimeOptions(t testing.TB, cfg *config.Config, dir string) sluiceruntime.Options {
	if dir == "" {
		dir = t.TempDir()
	}
	return sluiceruntime.Options{
		Config: cfg, DataDir: dir, Listen: "127.0.0.1:-1", MetricsListen: MetricsListen,
		CacheDir: CacheDir(t), Logger: Logger(t), DrainTimeout: 10 * time.Second,
	}
}

// Start runs a runtime for cfg with RuntimeOptions, and shuts it down when
// the test ends.
func Start(t testing.TB, cfg *config.Config, dir string) *sluiceruntime.Runtime {
	t.Helper()
	rt, err := sluiceruntime.Start(context.Background(), RuntimeOptions(t, cfg, dir))
	if err != nil {
		t.Fatalf("start runtime: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return rt
}

// Logger writes warnings and errors to the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Connect opens a client connection to url, closed when the test ends.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Eventually polls cond until it holds or timeout passes, then fails the
// test with what.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Server starts a bare embedded NATS server with JetStream (file storage in
// a temporary directory, random port, the server's default sync), shut down
// when the test ends.
func Server(t testing.TB) *server.Server {
	return ServerWithSync(t, false)
}

// ServerWithSync is Server with sluice's durable default (fsync before every
// acknowledgement) when syncAlways is set.
func ServerWithSync(t testing.TB, syncAlways bool) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 4 << 30, NoSigs: true,
		SyncAlways: syncAlways,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// WAT compiles WebAssembly text to a module file and returns its path:
// small hostile guests are easiest written this way.
func WAT(t testing.TB, src string) string {
	t.Helper()
	b, err := wasmer.Wat2Wasm(src)
	if err != nil {
		t.Fatalf("wat2wasm: %v", err)
	}
	path := filepath.Join(t.TempDir(), "module.wasm")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
