package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/testenv"
)

// TestNewScaffoldsAFunctionThatRuns does what a new user does, in each
// language: `sluice new hello --lang L`, paste the printed block into
// runtime.hcl unchanged, run, and `publish --wait`: the function succeeds
// with its result, and its permanently failing variant is dead-lettered
// after one attempt with its reason.
func TestNewScaffoldsAFunctionThatRuns(t *testing.T) {
	for _, lang := range []guestbuild.Language{guestbuild.C, guestbuild.Rust, guestbuild.AssemblyScript, guestbuild.Go} {
		t.Run(string(lang), func(t *testing.T) {
			testenv.RequireToolchain(t, lang)
			dir := t.TempDir()
			if lang == guestbuild.Go {
				// A Go function outside the sluice module needs the SDK
				// from the module proxy; inside a checkout it uses the
				// checkout's.
				var err error
				if dir, err = os.MkdirTemp(filepath.Join(testenv.RepoRoot(), ".sluice"), "new-test-"); err != nil {
					if err := os.MkdirAll(filepath.Join(testenv.RepoRoot(), ".sluice"), 0o755); err != nil {
						t.Fatal(err)
					}
					if dir, err = os.MkdirTemp(filepath.Join(testenv.RepoRoot(), ".sluice"), "new-test-"); err != nil {
						t.Fatal(err)
					}
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
			}
			code, out, errOut := cli(t, "new", "hello", "--lang", string(lang), "--dir", dir)
			if code != 0 {
				t.Fatalf("new: exit %d: %s", code, errOut)
			}
			_, block, ok := strings.Cut(out, "Paste into runtime.hcl (source is relative to the config file's directory):\n")
			block, _, ok2 := strings.Cut(block, "\nThen ")
			if !ok || !ok2 {
				t.Fatalf("no HCL block in the output:\n%s", out)
			}
			cfgPath := filepath.Join(dir, "runtime.hcl")
			if err := os.WriteFile(cfgPath, []byte(block), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatalf("the printed block does not load: %v\n%s", err, block)
			}
			rt := testenv.Start(t, cfg, "")
			server := "--server=" + rt.ClientURL()

			code, out, errOut = cli(t, server, "publish", "hello", `"world"`, "--wait", "--json")
			if code != 0 {
				t.Fatalf("publish --wait: exit %d: %s %s", code, out, errOut)
			}
			p := decode(t, out)
			if len(p.Outcomes) != 1 || p.Outcomes[0].State != "succeeded" || p.Outcomes[0].Result != `hello "world"` {
				t.Fatalf("outcomes %+v, want one succeeded with result %q", p.Outcomes, `hello "world"`)
			}

			code, out, _ = cli(t, server, "publish", "hello", `"permanent"`, "--wait", "--json")
			if code == 0 {
				t.Fatalf("publish --wait of the permanent failure: exit 0: %s", out)
			}
			p = decode(t, out)
			if len(p.Outcomes) != 1 || p.Outcomes[0].State != "dead_lettered" || p.Outcomes[0].Attempts != 1 ||
				p.Outcomes[0].Error != "asked to fail permanently" {
				t.Fatalf("outcomes %+v, want one dead_lettered after 1 attempt with the function's reason", p.Outcomes)
			}
		})
	}
}

func TestNewRefusesBadNamesAndLanguages(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"new", "9lives", "--dir", dir},
		{"new", "a.b", "--dir", dir},
		{"new", "ok", "--lang", "cobol", "--dir", dir},
	} {
		if code, _, errOut := cli(t, args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errOut)
		}
	}
	if code, _, _ := cli(t, "new", "twice", "--lang", "c", "--dir", dir); code != 0 {
		t.Fatal("first new failed")
	}
	if code, _, errOut := cli(t, "new", "twice", "--lang", "c", "--dir", dir); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Errorf("second new into an existing directory: exit %d, %q", code, errOut)
	}
}
