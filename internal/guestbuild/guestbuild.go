// Package guestbuild compiles guest sources (Go, C, Rust and AssemblyScript
// functions written with the sluice SDKs) to WebAssembly reactor modules,
// rebuilding only when the sources changed.
package guestbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	// edited while compiling still counts as newer than the module.
	start := time.Now()
	var stale bool
	if b == nil {
		if stale, err = isStale(lang, dir, out); err != nil || !stale {
			return false, err
		}
	} else {
		// A Builder remembers the state of the inputs (a signature) each
		// module was built from, or failed to build from, and compares
		// states rather than times: a file system's clock is coarser than
		// time.Now, and a save just after a build started must not be
		// missed. A build that failed is not tried again with the same
		// inputs.
		var sig string
		if sig, err = inputsSignature(lang, dir, out); err != nil {
			return false, err
		}
		last, known := b.lastBuild(out)
		switch {
		case !known:
			stale, err = isStale(lang, dir, out)
		case last.sig != sig:
			stale = true
		case last.failed:
			stale = false
		default:
			_, err = os.Stat(out)
			stale = errors.Is(err, fs.ErrNotExist)
			if stale {
				err = nil
			}
		}
		if err != nil {
			return false, err
		}
		if !stale {
			if !known {
				b.remember(out, lastBuild{sig: sig})
			}
			return false, nil
		}
		defer func() {
			if ctx.Err() == nil {
				b.remember(out, lastBuild{sig: sig, failed: err != nil})
			}
		}()
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

// isStale reports whether out is missing or older than any input.
func isStale(lang Language, dir, out string) (bool, error) {
	fi, err := os.Stat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	built, stale := fi.ModTime(), false
	err = walkInputs(lang, dir, out, func(_ string, fi fs.FileInfo) bool {
		stale = fi.ModTime().After(built)
		return !stale
	})
	return stale, err
}

// inputsSignature identifies the state of every input of the guest in dir
// (path, size, modification time): a file written again, even within the
// granularity of the file system's clock, changes it unless it keeps its
// size too.
func inputsSignature(lang Language, dir, out string) (string, error) {
	h := sha256.New()
	err := walkInputs(lang, dir, out, func(path string, fi fs.FileInfo) bool {
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", path, fi.Size(), fi.ModTime().UnixNano())
		return true
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// walkInputs calls fn with every input of the guest in dir while it
// returns true. Go: the package's .go files, the enclosing module's go.mod
// and go.sum and the .go files of its sdk directory. Others: every file
// under dir except out, .wasm files, dot files and the toolchains' own
// directories (node_modules, target, build).
func walkInputs(lang Language, dir, out string, fn func(path string, fi fs.FileInfo) bool) error {
	if lang != Go {
		return walkTree(dir, func(path string, d fs.DirEntry) bool {
			name := d.Name()
			if d.IsDir() {
				return path == dir || !(strings.HasPrefix(name, ".") || name == "node_modules" || name == "target" || name == "build")
			}
			return path != out && !strings.HasSuffix(name, ".wasm") && !strings.HasPrefix(name, ".")
		}, fn)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	goFiles := 0
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		goFiles++
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if !fn(filepath.Join(dir, e.Name()), fi) {
			return nil
		}
	}
	if goFiles == 0 {
		return fmt.Errorf("build guest %s: no Go files", dir)
	}
	root := ModuleRoot(dir)
	if root == "" {
		return nil
	}
	for _, name := range []string{"go.mod", "go.sum"} {
		path := filepath.Join(root, name)
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !fn(path, fi) {
			return nil
		}
	}
	sdk := filepath.Join(root, "sdk")
	if fi, err := os.Stat(sdk); err != nil || !fi.IsDir() {
		return nil
	}
	return walkTree(sdk, func(path string, d fs.DirEntry) bool {
		return d.IsDir() || strings.HasSuffix(path, ".go")
	}, fn)
}

// walkTree calls fn, while it returns true, with the files under dir that
// keep accepts; a directory keep refuses is skipped.
func walkTree(dir string, keep func(path string, d fs.DirEntry) bool, fn func(path string, fi fs.FileInfo) bool) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !keep(path, d) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fn(path, fi) {
			return fs.SkipAll
		}
		return nil
	})
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
