package guestbuild

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestModuleRoot(t *testing.T) {
	root := ModuleRoot(".")
	if root == "" {
		t.Fatal("ModuleRoot(.) = \"\"")
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	if got := ModuleRoot(filepath.Join(root, "examples", "emails", "sender")); got != root {
		t.Errorf("ModuleRoot(sender) = %q, want %q", got, root)
	}
	if got := ModuleRoot(t.TempDir()); got == root {
		t.Errorf("ModuleRoot(tempdir) = %q", got)
	}
}

func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a guest")
	}
	ctx := context.Background()
	dir := filepath.Join(ModuleRoot("."), "examples", "emails", "sender")
	out := filepath.Join(t.TempDir(), "wasm", "sender.wasm")

	built, err := Build(ctx, dir, out)
	if err != nil {
		t.Fatal(err)
	}
	if !built {
		t.Fatal("first Build: built = false")
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("\x00asm")) {
		t.Fatalf("%s does not start with the wasm magic: %q", out, data[:min(8, len(data))])
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".guestbuild-*")); len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	built, err = Build(ctx, dir, out)
	if err != nil {
		t.Fatal(err)
	}
	if built {
		t.Fatal("second Build with nothing changed: built = true")
	}

	// Touch a source file (restoring its mtime afterwards, so the checkout
	// is left as it was).
	src := filepath.Join(dir, "main.go")
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	orig := fi.ModTime()
	t.Cleanup(func() { os.Chtimes(src, orig, orig) })
	now := time.Now()
	if err := os.Chtimes(src, now, now); err != nil {
		t.Fatal(err)
	}
	built, err = Build(ctx, dir, out)
	if err != nil {
		t.Fatal(err)
	}
	if !built {
		t.Fatal("Build after touching main.go: built = false")
	}
	if built, err = Build(ctx, dir, out); err != nil || built {
		t.Fatalf("Build after the rebuild: built = %v, err = %v", built, err)
	}
}

func TestBuildError(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the compiler")
	}
	mod := t.TempDir()
	files := map[string]string{
		"go.mod":  "module example.com/broken\n\ngo 1.24\n",
		"main.go": "package main\n\nfunc main() { undefinedThing() }\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(mod, "broken.wasm")
	built, err := Build(context.Background(), mod, out)
	if err == nil || built {
		t.Fatalf("Build of a broken package: built = %v, err = %v", built, err)
	}
	if !strings.Contains(err.Error(), "undefinedThing") {
		t.Errorf("error does not include the compiler output: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output exists after a failed build: %v", err)
	}
	if _, err := Build(context.Background(), t.TempDir(), out); err == nil {
		t.Error("Build of a directory without Go files succeeded")
	}
}

func TestDetect(t *testing.T) {
	root := ModuleRoot(".")
	for dir, want := range map[string]Language{
		"examples/emails/sender": Go,
		"examples/emails-c":      C,
		"examples/emails-rust":   Rust,
	} {
		got, err := Detect(filepath.Join(root, dir))
		if err != nil || got != want {
			t.Errorf("Detect(%s) = %q, %v; want %q", dir, got, err, want)
		}
	}
	empty := t.TempDir()
	if _, err := Detect(empty); !errors.Is(err, ErrUnknownLanguage) || !strings.Contains(err.Error(), empty) {
		t.Errorf("Detect(empty dir) = %v, want ErrUnknownLanguage naming the directory", err)
	}
}

// TestBuildCRebuildsOnlyOnChange builds a C guest, then again with nothing
// changed (no build), then after touching its source (a build), and shows
// the compiler's message for a syntax error.
func TestBuildCRebuildsOnlyOnChange(t *testing.T) {
	if err := Toolchain(C); err != nil {
		if os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "fn.c")
	code := "#include \"sluice.h\"\nstatic int h(const sluice_event *e) { return sluice_ok_str(\"ok\"); }\nSLUICE_HANDLER(h)\n"
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "fn.wasm")
	for i, want := range []bool{true, false} {
		built, err := Build(ctx, dir, out)
		if err != nil {
			t.Fatal(err)
		}
		if built != want {
			t.Fatalf("build %d: built = %v, want %v", i+1, built, want)
		}
	}
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(src, later, later); err != nil {
		t.Fatal(err)
	}
	if built, err := Build(ctx, dir, out); err != nil || !built {
		t.Fatalf("after touching the source: built = %v, %v; want a build", built, err)
	}
	if err := os.WriteFile(src, []byte("int handle( {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(src, later.Add(time.Second), later.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := Build(ctx, dir, out)
	if err == nil || !strings.Contains(err.Error(), "fn.c:1:") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("syntax error: %v; want the compiler's message naming fn.c:1 and the directory", err)
	}
}
