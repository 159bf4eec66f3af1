package functions_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
)

// rewriteLater replaces path's contents with b once the file clock has
// moved past the file's change time, and sets its modification time
// back, as a change meant to go unnoticed would.
func rewriteLater(t *testing.T, path string, b []byte) {
	t.Helper()
	oldSize, oldMtime, oldCtime, ok := functions.StampOf(path)
	if !ok {
		t.Fatal("no stamp")
	}
	probe := filepath.Join(t.TempDir(), "probe")
	testenv.Eventually(t, 5*time.Second, "the file clock passes the module's change time", func() bool {
		if err := os.WriteFile(probe, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, ctime, _ := functions.StampOf(probe)
		return ctime > oldCtime
	})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(0, oldMtime)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if size, m, _, _ := functions.StampOf(path); size != oldSize || m != oldMtime {
		t.Fatalf("the rewrite changed size or mtime: %d %d, was %d %d", size, m, oldSize, oldMtime)
	}
}

// TestLoadRecallsVersionsOnlyOfUnchangedModules: a restart does not read
// a module file whose stamp is unchanged, and a module rewritten in place
// with the same size and modification time is read again and loaded as
// its new version.
func TestLoadRecallsVersionsOnlyOfUnchangedModules(t *testing.T) {
	defer functions.SetStampSettle(0)()
	const wat = `(module (memory (export "memory") 1)
  (data (i32.const 0) "%s")
  (import "sluice" "result_set" (func $r (param i32 i32) (result i32)))
  (func (export "handle") (result i32) (drop (call $r (i32.const 0) (i32.const 2))) (i32.const 0)))`
	first := testenv.WAT(t, fmt.Sprintf(wat, "v1"))
	second, err := os.ReadFile(testenv.WAT(t, fmt.Sprintf(wat, "v2")))
	if err != nil {
		t.Fatal(err)
	}
	module := filepath.Join(t.TempDir(), "f.wasm")
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(module, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	fc := config.Function{Name: "f", Module: module, Timeout: 5 * time.Second, Memory: 1 << 20}
	load := func() string {
		t.Helper()
		s, err := functions.Load([]config.Function{fc}, functions.Options{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		optimized(t, s, "f")
		v, _, _ := s.Version("f")
		return v
	}
	v1 := load()
	if v1 != functions.Version(b) {
		t.Fatalf("version %s, want %s", v1, functions.Version(b))
	}
	if v, ok := functions.RecalledVersion(cache, module); !ok || v != v1 {
		t.Fatalf("no version recalled for the unchanged module")
	}
	// Recalled from the stamp, without reading the file.
	if got := load(); got != v1 {
		t.Fatalf("unchanged module: version %s, want %s", got, v1)
	}
	rewriteLater(t, module, second)
	if _, ok := functions.RecalledVersion(cache, module); ok {
		t.Fatal("a version was recalled for a module rewritten in place")
	}
	if got := load(); got != functions.Version(second) {
		t.Fatalf("rewritten module: version %s, want %s", got, functions.Version(second))
	}
}

// TestFileVersionFollowsTheFile: the version the runtime records for a
// module file is recalled by its stamp while the file is unchanged, and is
// the new bytes' once it is rewritten in place (size and modification time
// restored); a missing file is fs.ErrNotExist, as ReadModule says.
func TestFileVersionFollowsTheFile(t *testing.T) {
	defer functions.SetStampSettle(0)()
	first, err := os.ReadFile(testenv.WAT(t, `(module (memory (export "memory") 1) (data (i32.const 0) "v1"))`))
	if err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(testenv.WAT(t, `(module (memory (export "memory") 1) (data (i32.const 0) "v2"))`))
	if err != nil {
		t.Fatal(err)
	}
	module, cache := filepath.Join(t.TempDir(), "f.wasm"), t.TempDir()
	if err := os.WriteFile(module, first, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if v, err := functions.FileVersion(cache, module); err != nil || v != functions.Version(first) {
			t.Fatalf("version %s, %v; want %s", v, err, functions.Version(first))
		}
	}
	if v, ok := functions.RecalledVersion(cache, module); !ok || v != functions.Version(first) {
		t.Fatalf("FileVersion remembered no stamp")
	}
	rewriteLater(t, module, second)
	if v, err := functions.FileVersion(cache, module); err != nil || v != functions.Version(second) {
		t.Fatalf("after a rewrite in place: version %s, %v; want %s", v, err, functions.Version(second))
	}
	if _, err := functions.FileVersion(cache, filepath.Join(t.TempDir(), "missing.wasm")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}
