package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
)

// TestSecretsFromEnvStayOut: a secret read with env() reaches the function
// and nothing else: not the config the runtime records in KV, not the
// debug log, not /metrics, not `sluice plan`, which says "(from env)".
func TestSecretsFromEnvStayOut(t *testing.T) {
	const secret = "s3cret-9f2c41"
	t.Setenv("SLUICE_TEST_API_KEY", secret)
	t.Setenv("SLUICE_TEST_TOKEN", secret+"-token")
	testenv.Guest(t, "internal/testguests/noop")
	module := filepath.Join(testenv.RepoRoot(), "internal/testguests/noop/noop.wasm")
	src := fmt.Sprintf(`
function "noop" {
  module = %q
  env    = { API_KEY = env("SLUICE_TEST_API_KEY") }
}
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}
`, module)
	dir := t.TempDir()
	path := filepath.Join(dir, "runtime.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Functions[0].Env["API_KEY"] != secret {
		t.Fatalf("the function's env: %v", cfg.Functions[0].Env)
	}
	cfg.Metrics.Listen = testenv.MetricsListen
	logs := &testenv.Buffer{}
	opts := testenv.RuntimeOptions(t, cfg, "")
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rt, err := runtime.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Shutdown() })
	server := "--server=" + rt.ClientURL()
	publishOK(t, server)

	_, js := testenv.Connect(t, rt.ClientURL())
	kv, err := js.KeyValue(context.Background(), runtime.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := kv.Get(context.Background(), runtime.ConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(recorded.Value()), secret) || !strings.Contains(string(recorded.Value()), `"env_from_env":["API_KEY"]`) {
		t.Errorf("recorded config: %s", recorded.Value())
	}

	next := filepath.Join(dir, "next.hcl")
	if err := os.WriteFile(next, []byte(strings.Replace(src, `env("SLUICE_TEST_API_KEY") }`, `env("SLUICE_TEST_API_KEY"), TOKEN = env("SLUICE_TEST_TOKEN") }`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(t, server, "plan", "-c", next)
	if code != 0 || !strings.Contains(out, "function noop: env + TOKEN (from env)") || strings.Contains(out+errOut, secret) {
		t.Errorf("plan: exit %d\n%s%s", code, out, errOut)
	}

	resp, err := http.Get("http://" + rt.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), secret) {
		t.Errorf("/metrics shows the secret")
	}
	if err := rt.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); strings.Contains(l, secret) || !strings.Contains(l, "ok") {
		t.Errorf("the debug log shows the secret (or is empty):\n%s", l)
	}
}
