// Package guestbuild compiles guest sources (Go, C, Rust and AssemblyScript
// functions written with the sluice SDKs) to WebAssembly reactor modules,
// rebuilding only when the sources changed.
package guestbuild

import (
	"bytes"
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

	stale, err := isStale(lang, dir, out)
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

	cmds, err := commands(ctx, lang, dir, tmp, tmpDir)
	if err != nil {
		return false, fmt.Errorf("build %s guest %s: %w", lang, dir, err)
	}
	// The module's mtime is set to when the build started, so that a source
	// edited while compiling still counts as newer than the module.
	start := time.Now()
	for _, cmd := range cmds {
		var output bytes.Buffer
		cmd.Stdout = &output
		cmd.Stderr = &output
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(output.String())
			if ctx.Err() != nil {
				return false, fmt.Errorf("build %s guest %s: %w", lang, dir, ctx.Err())
			}
			return false, fmt.Errorf("build %s guest %s: %s: %v\n%s", lang, dir, filepath.Base(cmd.Path), err, msg)
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

// isStale reports whether out is missing or older than any input.
func isStale(lang Language, dir, out string) (bool, error) {
	fi, err := os.Stat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	built := fi.ModTime()
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
