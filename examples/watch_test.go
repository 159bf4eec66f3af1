package examples_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// versionGuests return the text VERSION: file -> source, per language.
var versionGuests = map[guestbuild.Language]map[string]string{
	guestbuild.Go: {"main.go": `//go:build wasip1

package main

import "github.com/sluice-run/sluice/sdk"

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) { return []byte("VERSION"), nil })
}

func main() {}
`},
	guestbuild.Rust: {"src/lib.rs": `fn h(_e: &sluice::Event) -> Result<Vec<u8>, sluice::Error> { Ok(b"VERSION".to_vec()) }
sluice::handler!(h);
`},
	guestbuild.AssemblyScript: {"assembly/index.ts": `import { Event, Outcome, ok, run } from "sluice";
function h(e: Event): Outcome { return ok("VERSION"); }
export function handle(): i32 { return run(h); }
`},
}

// TestWatchSourcesRebuildsEveryLanguage: one runtime with a Go, a Rust and
// an AssemblyScript function built from source, WatchSources running (the
// AssemblyScript compiler kept in one process, the Rust SDK crate built
// once): saving a change to each makes the next event run the new
// version; an AssemblyScript syntax error is reported with the compiler's
// message while the last good version keeps running, and the fix is built.
func TestWatchSourcesRebuildsEveryLanguage(t *testing.T) {
	langs := []guestbuild.Language{guestbuild.Go, guestbuild.Rust, guestbuild.AssemblyScript}
	for _, lang := range langs {
		testenv.RequireToolchain(t, lang)
	}
	// Inside the checkout, so that the Go function's SDK import resolves
	// to this module.
	parent := filepath.Join(testenv.RepoRoot(), ".sluice")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(parent, "watch-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	save := func(lang guestbuild.Language, code string) {
		t.Helper()
		for name := range versionGuests[lang] {
			path := filepath.Join(dir, string(lang), filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(code), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	version := func(lang guestbuild.Language, v string) string {
		for _, code := range versionGuests[lang] {
			return strings.Replace(code, "VERSION", string(lang)+" "+v, 1)
		}
		return ""
	}
	var hcl strings.Builder
	for _, lang := range langs {
		save(lang, version(lang, "v1"))
		fmt.Fprintf(&hcl, "function %q { source = %q }\nqueue %q {\n  subject  = %q\n  function = %q\n}\n", lang, string(lang), lang, lang, lang)
	}
	cfgPath := filepath.Join(dir, "runtime.hcl")
	if err := os.WriteFile(cfgPath, []byte(hcl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")

	type report struct {
		function string
		err      error
	}
	reports := make(chan report, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rt.WatchSources(ctx, 100*time.Millisecond, func(fn string, err error) { reports <- report{fn, err} })
	}()
	t.Cleanup(func() { cancel(); <-done })

	_, js := testenv.Connect(t, rt.ClientURL())
	n := 0
	resultOf := func(lang guestbuild.Language) string {
		t.Helper()
		n++
		id := fmt.Sprintf("watch-%d", n)
		if _, err := js.Publish(context.Background(), string(lang), nil, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
		var st triggers.Status
		testenv.Eventually(t, 60*time.Second, "event "+id+" to succeed", func() bool {
			st = statusOf(t, js, id, string(lang))
			return st.State == triggers.StateSucceeded
		})
		return string(st.Result)
	}
	rebuilt := func(lang guestbuild.Language) error {
		t.Helper()
		select {
		case r := <-reports:
			if r.function != string(lang) {
				t.Fatalf("rebuild of %s reported, want %s (%v)", r.function, lang, r.err)
			}
			return r.err
		case <-time.After(2 * time.Minute):
			t.Fatalf("no rebuild of %s reported", lang)
		}
		return nil
	}

	for _, lang := range langs {
		if got, want := resultOf(lang), string(lang)+" v1"; got != want {
			t.Fatalf("result %q, want %q", got, want)
		}
		save(lang, version(lang, "v2"))
		if err := rebuilt(lang); err != nil {
			t.Fatalf("rebuild of %s: %v", lang, err)
		}
		if got, want := resultOf(lang), string(lang)+" v2"; got != want {
			t.Fatalf("after the change: result %q, want %q", got, want)
		}
	}

	save(guestbuild.AssemblyScript, "function h( {")
	err = rebuilt(guestbuild.AssemblyScript)
	if err == nil || !strings.Contains(err.Error(), "assembly/index.ts(1,") {
		t.Fatalf("syntax error reported as %v, want the compiler's message naming assembly/index.ts(1,…)", err)
	}
	if got, want := resultOf(guestbuild.AssemblyScript), "assemblyscript v2"; got != want {
		t.Fatalf("after a syntax error: result %q, want %q still", got, want)
	}
	save(guestbuild.AssemblyScript, version(guestbuild.AssemblyScript, "v3"))
	if err := rebuilt(guestbuild.AssemblyScript); err != nil {
		t.Fatalf("rebuild after the fix: %v", err)
	}
	if got, want := resultOf(guestbuild.AssemblyScript), "assemblyscript v3"; got != want {
		t.Fatalf("after the fix: result %q, want %q", got, want)
	}
}
