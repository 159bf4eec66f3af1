package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/testenv"
)

// TestNewFailingVariantIsRetriedThenDeadLettered does what a new user does
// with the failing variant, in each language: `sluice new NAME --lang L`,
// paste every printed block unchanged into one runtime.hcl, run, and
// `sluice publish NAME '"fail"' --wait`. Under the default retry policy
// (no retry block in the printed HCL) the user sees the event retried,
// attempt after attempt, then dead-lettered after 5 attempts with the
// function's reason, and the command exits 1. One runtime serves every
// language, and the events of all four wait their backoff at once.
func TestNewFailingVariantIsRetriedThenDeadLettered(t *testing.T) {
	var langs []guestbuild.Language
	for _, lang := range []guestbuild.Language{guestbuild.Go, guestbuild.C, guestbuild.Rust, guestbuild.AssemblyScript} {
		if err := guestbuild.Toolchain(lang); err != nil {
			if os.Getenv(testenv.RequireToolchainEnv) != "" {
				t.Fatalf("%s toolchain: %v", lang, err)
			}
			t.Logf("%s skipped: %v", lang, err)
			continue
		}
		langs = append(langs, lang)
	}
	// Inside the checkout, a Go function uses the checkout's SDK (outside,
	// it would need the SDK from the module proxy).
	parent := filepath.Join(testenv.RepoRoot(), ".sluice")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(parent, "new-fail-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	var hcl strings.Builder
	for _, lang := range langs {
		name := "fail_" + string(lang)
		code, out, errOut := cli(t, "new", name, "--lang", string(lang), "--dir", dir)
		if code != 0 {
			t.Fatalf("new %s: exit %d: %s", name, code, errOut)
		}
		_, block, ok := strings.Cut(out, "Paste into runtime.hcl (source is relative to the config file's directory):\n")
		block, _, ok2 := strings.Cut(block, "\nThen ")
		if !ok || !ok2 {
			t.Fatalf("no HCL block in the output of new %s:\n%s", name, out)
		}
		hcl.WriteString(block + "\n")
	}
	cfgPath := filepath.Join(dir, "runtime.hcl")
	if err := os.WriteFile(cfgPath, []byte(hcl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("the printed blocks do not load: %v\n%s", err, hcl.String())
	}
	rt := testenv.Start(t, cfg, "")
	server := "--server=" + rt.ClientURL()

	for _, lang := range langs {
		name := "fail_" + string(lang)
		t.Run(string(lang), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := cli(t, server, "publish", name, `"fail"`, "--wait")
			if code != 1 {
				t.Fatalf("publish --wait of the failing variant: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			// Progress, on stderr: the retries as they happen.
			if !strings.HasPrefix(errOut, "processing…\n") {
				t.Errorf("stderr does not start with processing…:\n%s", errOut)
			}
			retrying := regexp.MustCompile(`(?m)^  ` + name + `: retrying \(attempt (\d)\)$`)
			seen := map[string]bool{}
			for _, m := range retrying.FindAllStringSubmatch(errOut, -1) {
				seen[m[1]] = true
			}
			if len(seen) == 0 {
				t.Errorf("no retrying attempt in the progress:\n%s", errOut)
			}
			for a := range seen {
				if a < "1" || a > "4" {
					t.Errorf("retrying after attempt %s of 5:\n%s", a, errOut)
				}
			}
			if !strings.Contains(errOut, "  "+name+": dead_lettered (attempt 5)\n") {
				t.Errorf("progress does not end dead-lettered at attempt 5:\n%s", errOut)
			}
			// The outcome, on stdout: dead-lettered after 5 of 5 attempts
			// with the function's reason and where the dead letter is.
			final := regexp.MustCompile(`(?m)^` + name + `\s+` + name + `\s+dead_lettered\s+5/5\s+(\S+): asked to fail \(dead letter on (\S+)\)$`)
			m := final.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("stdout does not show the dead-lettered outcome after 5/5 attempts with the reason:\n%s", out)
			}
			if want := "sluice.dlq." + name; m[2] != want {
				t.Errorf("dead letter on %s, want %s", m[2], want)
			}
			if m[1] != "failed" {
				t.Errorf("error kind %q, want failed (the function returned a failure)", m[1])
			}
		})
	}
}
