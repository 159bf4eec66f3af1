package guestbuild

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func requireToolchain(t *testing.T, lang Language) {
	t.Helper()
	if err := Toolchain(lang); err != nil {
		if os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// saver writes files of a guest, each with the precise current time as
// its modification time: builds compare it with when they started, and the
// kernel's own file times are coarser than time.Now.
type saver struct {
	t   *testing.T
	dir string
}

func (s *saver) save(name, content string) {
	s.t.Helper()
	path := filepath.Join(s.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		s.t.Fatal(err)
	}
}

// TestBuilderRebuildsEachLanguage: a Builder (warmed) builds C, Rust and
// AssemblyScript guests, rebuilds them after a change into a different
// module, reports a syntax error with the compiler's message once, does not
// retry it while nothing changed, and builds again once it is fixed.
func TestBuilderRebuildsEachLanguage(t *testing.T) {
	guests := map[Language]struct {
		file, code, broken string
	}{
		C: {"fn.c", `#include "sluice.h"
static int h(const sluice_event *e) { return sluice_ok_str("VERSION"); }
SLUICE_HANDLER(h)
`, "static int h( {"},
		Rust: {"src/lib.rs", `fn h(_e: &sluice::Event) -> Result<Vec<u8>, sluice::Error> { Ok(b"VERSION".to_vec()) }
sluice::handler!(h);
`, "fn h( {"},
		AssemblyScript: {"assembly/index.ts", `import { Event, Outcome, ok, run } from "sluice";
function h(e: Event): Outcome { return ok("VERSION"); }
export function handle(): i32 { return run(h); }
`, "function h( {"},
	}
	b := NewBuilder()
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	for _, lang := range []Language{C, Rust, AssemblyScript} {
		t.Run(string(lang), func(t *testing.T) {
			requireToolchain(t, lang)
			g := guests[lang]
			s := &saver{t: t, dir: t.TempDir()}
			// Long enough to be stored as text in the module, as UTF-8 or
			// (AssemblyScript) UTF-16.
			version := func(v string) string { return "the result of version " + v }
			holds := func(module []byte, v string) bool {
				text := version(v)
				utf16 := make([]byte, 0, 2*len(text))
				for _, c := range []byte(text) {
					utf16 = append(utf16, c, 0)
				}
				return bytes.Contains(module, []byte(text)) || bytes.Contains(module, utf16)
			}
			s.save(g.file, strings.Replace(g.code, "VERSION", version("v1"), 1))
			if err := b.Warm(ctx, s.dir); err != nil {
				t.Fatalf("Warm: %v", err)
			}
			out := filepath.Join(s.dir, "fn.wasm")
			build := func(want bool) []byte {
				t.Helper()
				built, err := b.Build(ctx, s.dir, out)
				if err != nil || built != want {
					t.Fatalf("Build: built = %v, %v; want %v", built, err, want)
				}
				data, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				return data
			}
			v1 := build(true)
			if !holds(v1, "v1") {
				t.Fatal("the module does not hold the guest's result text of v1")
			}
			build(false)
			s.save(g.file, strings.Replace(g.code, "VERSION", version("v2"), 1))
			if v2 := build(true); !holds(v2, "v2") {
				t.Fatal("the rebuilt module does not hold v2")
			}

			s.save(g.file, g.broken)
			_, err := b.Build(ctx, s.dir, out)
			if err == nil || !strings.Contains(err.Error(), filepath.Base(g.file)) {
				t.Fatalf("syntax error: %v; want the compiler's message naming %s", err, filepath.Base(g.file))
			}
			if built, err := b.Build(ctx, s.dir, out); built || err != nil {
				t.Fatalf("Build of the unchanged broken source: built = %v, %v; want no build and no error", built, err)
			}
			if built, err := Build(ctx, s.dir, out); built || err == nil {
				t.Fatalf("package Build of the broken source: built = %v, %v; want the error again", built, err)
			}
			s.save(g.file, strings.Replace(g.code, "VERSION", version("v3"), 1))
			if v3 := build(true); !holds(v3, "v3") {
				t.Fatal("the module built after the fix does not hold v3")
			}
		})
	}
}

// TestBuilderASCLibrariesDoNotLeak: the AssemblyScript compiler process
// forgets one build's --lib files before the next, so a global that a
// guest's asconfig.json library defines is unknown to another guest.
func TestBuilderASCLibrariesDoNotLeak(t *testing.T) {
	requireToolchain(t, AssemblyScript)
	b := NewBuilder()
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	with := &saver{t: t, dir: t.TempDir()}
	with.save("mylib/extra.ts", "export function extraGlobal(): string { return \"from lib\"; }\n")
	with.save("asconfig.json", `{"options": {"lib": ["./mylib"]}}`)
	code := `import { Event, Outcome, ok, run } from "sluice";
function h(e: Event): Outcome { return ok(extraGlobal()); }
export function handle(): i32 { return run(h); }
`
	with.save("assembly/index.ts", code)
	if _, err := b.Build(ctx, with.dir, filepath.Join(with.dir, "fn.wasm")); err != nil {
		t.Fatalf("guest with the library: %v", err)
	}
	without := &saver{t: t, dir: t.TempDir()}
	without.save("assembly/index.ts", code)
	_, err := b.Build(ctx, without.dir, filepath.Join(without.dir, "fn.wasm"))
	if err == nil || !strings.Contains(err.Error(), "extraGlobal") {
		t.Fatalf("guest without the library: %v; want an error naming extraGlobal", err)
	}
}

// TestBuilderCloseStopsTheCompiler: Close ends the AssemblyScript
// compiler process and removes the Builder's files; a build after Close
// still works (as Build does).
func TestBuilderCloseStopsTheCompiler(t *testing.T) {
	requireToolchain(t, AssemblyScript)
	b := NewBuilder()
	s := &saver{t: t, dir: t.TempDir()}
	s.save("assembly/index.ts", `export function handle(): i32 { return 0; }
`)
	if err := b.Warm(context.Background(), s.dir); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	var servers []*ascServer
	for _, srv := range b.ascs {
		servers = append(servers, srv)
	}
	work := b.work
	b.mu.Unlock()
	if len(servers) != 1 {
		t.Fatalf("%d compiler processes after Warm, want 1", len(servers))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if servers[0].alive() {
		t.Error("the compiler process is alive after Close")
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Errorf("the Builder's directory %s: %v after Close, want it removed", work, err)
	}
	if built, err := b.Build(context.Background(), s.dir, filepath.Join(s.dir, "fn.wasm")); err != nil || !built {
		t.Errorf("Build after Close: %v, %v", built, err)
	}
}

// TestBuilderRetriesAfterAnEditWithinOneClockTick: a fix saved after a
// failed build started, but stamped (by a coarse file system clock) no
// later than the broken save, is still built, and so is a change saved
// after a successful build started but stamped before it: a Builder tells
// changes by the state of the inputs, not by comparing times.
func TestBuilderRetriesAfterAnEditWithinOneClockTick(t *testing.T) {
	requireToolchain(t, C)
	b := NewBuilder()
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	dir := t.TempDir()
	src, out := filepath.Join(dir, "fn.c"), filepath.Join(dir, "fn.wasm")
	stamp := time.Now()
	write := func(code string) {
		t.Helper()
		if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(src, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	write("static int h( {")
	if _, err := b.Build(ctx, dir, out); err == nil {
		t.Fatal("the broken source built")
	}
	write(`#include "sluice.h"
static int h(const sluice_event *e) { return sluice_ok_str("fixed"); }
SLUICE_HANDLER(h)
`)
	if built, err := b.Build(ctx, dir, out); err != nil || !built {
		t.Fatalf("after the fix, stamped as the broken save: built = %v, %v; want a build", built, err)
	}
	if built, err := b.Build(ctx, dir, out); err != nil || built {
		t.Fatalf("nothing changed: built = %v, %v; want no build", built, err)
	}
	write(`#include "sluice.h"
static int h(const sluice_event *e) { return sluice_ok_str("changed again"); }
SLUICE_HANDLER(h)
`)
	if built, err := Build(ctx, dir, out); err != nil || built {
		t.Fatalf("package Build, which compares times: built = %v, %v; want no build (the source looks older)", built, err)
	}
	if built, err := b.Build(ctx, dir, out); err != nil || !built {
		t.Fatalf("a change stamped before the last build: built = %v, %v; want a build", built, err)
	}
}

// TestBuilderFallsBackToASCProcesses: with an AssemblyScript compiler that
// cannot be driven in process (here a package whose dist/asc.js has no
// main, and whose asc command writes an empty module), a Builder builds
// with asc processes instead, and keeps doing so.
func TestBuilderFallsBackToASCProcesses(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node")
	}
	s := &saver{t: t, dir: t.TempDir()}
	pkg := filepath.Join(s.dir, "node_modules", "assemblyscript")
	s.save("node_modules/assemblyscript/dist/asc.js", "export const libraryFiles = {};\n")
	s.save("node_modules/assemblyscript/bin/asc.js", `#!/bin/sh
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then printf '\000asm\001\000\000\000' > "$2"; exit 0; fi
  shift
done
exit 1
`)
	if err := os.Chmod(filepath.Join(pkg, "bin", "asc.js"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "node_modules", ".bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../assemblyscript/bin/asc.js", filepath.Join(s.dir, "node_modules", ".bin", "asc")); err != nil {
		t.Fatal(err)
	}
	s.save("assembly/index.ts", "export function handle(): i32 { return 0; }\n")

	b := NewBuilder()
	t.Cleanup(func() { b.Close() })
	out := filepath.Join(s.dir, "fn.wasm")
	for i := range 2 {
		if i > 0 {
			s.save("assembly/index.ts", "export function handle(): i32 { return 1; }\n")
		}
		if built, err := b.Build(context.Background(), s.dir, out); err != nil || !built {
			t.Fatalf("build %d: built = %v, %v; want a build by an asc process", i+1, built, err)
		}
		if data, err := os.ReadFile(out); err != nil || !bytes.Equal(data, []byte("\x00asm\x01\x00\x00\x00")) {
			t.Fatalf("build %d: module %q, %v; want the asc process's", i+1, data, err)
		}
		b.mu.Lock()
		srv, known := b.ascs[filepath.Join(pkg, "dist", "asc.js")]
		b.mu.Unlock()
		if !known || srv != nil {
			t.Fatalf("build %d: the compiler process is %v (known %v), want it dropped", i+1, srv, known)
		}
	}
}
