// Package guestbuild compiles guest sources (Go, C, Rust and AssemblyScript
// functions written with the sluice SDKs) to WebAssembly reactor modules,
// rebuilding only when the sources changed.
package guestbuild

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Build compiles the guest in dir to out (a wasm reactor module) when out is
// missing or older than any of its inputs. The language is detected from
// dir (see Detect). Go: GOOS=wasip1 GOARCH=wasm -buildmode=c-shared; the
// inputs are the .go files in dir, every .go file in the sdk directory of
// the enclosing module (<module root>/sdk), and that module's go.mod and
// go.sum (other local packages the guest imports are not tracked). C, Rust
// and AssemblyScript: see the build functions of each; the inputs are every
// file under dir except .wasm files and the toolchains' own directories,
// and the SDK is the one built into this program.
//
// It reports whether it built. It is safe to call concurrently, from several
// goroutines or processes, for the same out: each build writes to a
// temporary directory beside out and renames the module into place, so out
// is always either absent, the previous module or a complete new one.
// Errors include the compiler's output.
func Build(ctx context.Context, dir, out string) (built bool, err error) {
	return (*Builder)(nil).Build(ctx, dir, out)
}

// Build builds as the package's Build does, with what b keeps between
// builds (see Builder). A nil b keeps nothing.
func (b *Builder) Build(ctx context.Context, dir, out string) (built bool, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	out, err = filepath.Abs(out)
	if err != nil {
		return false, err
	}
	lang, err := Detect(dir)
	if err != nil {
		return false, err
	}
	lock := lockFor(out)
	select {
	case lock <- struct{}{}:
		defer func() { <-lock }()
	case <-ctx.Done():
		return false, ctx.Err()
	}

	// The module's mtime is set to when the build started, so that a source
	// edited while compiling still counts as newer than the module; a failed
	// build is remembered from the same instant.
	start := time.Now()
	defer func() {
		if err != nil && ctx.Err() == nil {
			b.remember(out, start)
		} else if built {
			b.remember(out, time.Time{})
		}
	}()
	stale, err := isStale(lang, dir, out, b.failedAt(out))
	if err != nil || !stale {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return false, err
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(out), ".guestbuild-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, filepath.Base(out))

	steps, err := b.steps(ctx, lang, dir, tmp, tmpDir)
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("build %s guest %s: %w", lang, dir, ctx.Err())
		}
		return false, fmt.Errorf("build %s guest %s: %w", lang, dir, err)
	}
	for _, s := range steps {
		if output, err := s.run(); err != nil {
			if ctx.Err() != nil {
				return false, fmt.Errorf("build %s guest %s: %w", lang, dir, ctx.Err())
			}
			return false, fmt.Errorf("build %s guest %s: %s: %v\n%s", lang, dir, s.tool, err, strings.TrimSpace(string(output)))
		}
	}
	if err := os.Chtimes(tmp, start, start); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return false, err
	}
	return true, nil
}

// step is one command of a build: tool names it in errors, run returns its
// combined output.
type step struct {
	tool string
	run  func() ([]byte, error)
}

func cmdStep(cmd *exec.Cmd) step {
	return step{tool: filepath.Base(cmd.Path), run: cmd.CombinedOutput}
}

// ModuleRoot returns the directory of the go.mod enclosing dir ("" if none).
func ModuleRoot(dir string) string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !fi.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// isStale reports whether out is missing or older than any input. A build
// that failed at failedAt (zero: none) counts as built then: only an input
// changed since makes it stale again.
func isStale(lang Language, dir, out string, failedAt time.Time) (bool, error) {
	built := failedAt
	fi, err := os.Stat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if failedAt.IsZero() {
			return true, nil
		}
	case err != nil:
		return false, err
	case fi.ModTime().After(built):
		built = fi.ModTime()
	}
	newer := func(path string) (bool, error) {
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return fi.ModTime().After(built), nil
	}
	if lang != Go {
		return treeNewer(dir, out, built)
	}

	// The package's own files.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	goFiles := 0
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		goFiles++
		if n, err := newer(filepath.Join(dir, e.Name())); err != nil || n {
			return n, err
		}
	}
	if goFiles == 0 {
		return false, fmt.Errorf("build guest %s: no Go files", dir)
	}

	root := ModuleRoot(dir)
	if root == "" {
		return false, nil
	}
	for _, name := range []string{"go.mod", "go.sum"} {
		if n, err := newer(filepath.Join(root, name)); err != nil || n {
			return n, err
		}
	}
	sdk := filepath.Join(root, "sdk")
	if fi, err := os.Stat(sdk); err != nil || !fi.IsDir() {
		return false, nil
	}
	stale := false
	err = filepath.WalkDir(sdk, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		n, err := newer(path)
		if err != nil {
			return err
		}
		if n {
			stale = true
			return fs.SkipAll
		}
		return nil
	})
	return stale, err
}

// goTool returns the go command: the one on PATH, else the one of the
// toolchain this program was built with.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("guestbuild: no go command on PATH or in GOROOT")
	}
	return p, nil
}

var (
	locksMu sync.Mutex
	locks   = map[string]chan struct{}{}
)

// lockFor returns a lock (a channel of capacity 1) that serializes builds of
// one output within this process, so that concurrent callers wait for one
// build instead of each running their own.
func lockFor(out string) chan struct{} {
	locksMu.Lock()
	defer locksMu.Unlock()
	l, ok := locks[out]
	if !ok {
		l = make(chan struct{}, 1)
		locks[out] = l
	}
	return l
}
