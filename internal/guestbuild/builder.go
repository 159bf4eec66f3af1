package guestbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Builder builds guests as Build does, for a caller that rebuilds the same
// functions again and again (sluice run --watch). It keeps what is slow to
// start between builds: the AssemblyScript compiler, loaded once in a node
// process that compiles every AssemblyScript build, and the Rust SDK crate,
// compiled once. It tells a changed input by its state (size and
// modification time) rather than by comparing times, and does not retry a
// build that failed until an input changes again, so a syntax error is
// reported once, not at every check.
// A Builder is safe for concurrent use. Close stops its processes and
// removes its files.
type Builder struct {
	mu     sync.Mutex
	closed bool
	work   string                // files kept between builds ("" until needed)
	last   map[string]lastBuild  // module -> its last build
	ascs   map[string]*ascServer // by the compiler's dist/asc.js; nil: run asc processes
	rlibs  map[string]string     // rustc and target -> the SDK crate built with them

	rustMu sync.Mutex // one SDK crate build at a time
}

// ErrClosed: the Builder was closed.
var ErrClosed = errors.New("guestbuild: builder closed")

// NewBuilder returns a Builder; the caller closes it.
func NewBuilder() *Builder {
	return &Builder{last: map[string]lastBuild{}, ascs: map[string]*ascServer{}, rlibs: map[string]string{}}
}

// Warm loads what the guest in dir will need to rebuild fast, before its
// first rebuild: for Rust the SDK crate; for AssemblyScript the compiler
// process, warmed by compiling the guest once to a module it throws away
// (the first compile in a new process takes several times longer than the
// next). Go and C keep nothing between builds.
func (b *Builder) Warm(ctx context.Context, dir string) error {
	lang, err := Detect(dir)
	if err != nil {
		return err
	}
	switch lang {
	case Rust:
		rustc, target, err := rustTool()
		if err != nil {
			return err
		}
		_, err = b.rustSDK(ctx, rustc, target, "")
		return err
	case AssemblyScript:
		work, err := b.workDir()
		if err != nil {
			return err
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		sum := sha256.Sum256([]byte(abs))
		out := filepath.Join(work, "warm", hex.EncodeToString(sum[:8])+".wasm")
		defer os.Remove(out)
		// A module left by an earlier Warm would make this one a no-op.
		if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		b.forget(out)
		_, err = b.Build(ctx, dir, out)
		return err
	}
	return nil
}

// Close stops the Builder's compiler processes and removes its files.
// Builds after Close keep nothing (as Build) or, when they need the
// Builder's files, fail with ErrClosed. It is idempotent.
func (b *Builder) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	ascs, work := b.ascs, b.work
	b.ascs = nil
	b.mu.Unlock()
	var errs []error
	for _, s := range ascs {
		if s != nil {
			errs = append(errs, s.close())
		}
	}
	if work != "" {
		// A build still running may be writing into work: take the SDK
		// lock, so that the crate it builds is not left half-removed.
		b.rustMu.Lock()
		errs = append(errs, os.RemoveAll(work))
		b.rustMu.Unlock()
	}
	return errors.Join(errs...)
}

// lastBuild is what a Builder remembers of the last build of a module:
// the inputs signature it was built from, and whether it failed.
type lastBuild struct {
	sig    string
	failed bool
}

func (b *Builder) lastBuild(out string) (lastBuild, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.last[out]
	return l, ok
}

func (b *Builder) remember(out string, l lastBuild) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last[out] = l
}

// forget drops what b remembers of out: its next build decides by times.
func (b *Builder) forget(out string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.last, out)
}

func (b *Builder) workDir() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", ErrClosed
	}
	if b.work == "" {
		dir, err := os.MkdirTemp("", "sluice-guestbuild-")
		if err != nil {
			return "", fmt.Errorf("guestbuild: %w", err)
		}
		b.work = dir
	}
	return b.work, nil
}

// rustSDK returns the SDK crate compiled by rustc for target: the one b
// built before, else a new one (kept in b's directory, or in work without
// a Builder).
func (b *Builder) rustSDK(ctx context.Context, rustc, target, work string) (string, error) {
	if b == nil {
		return buildRustSDK(ctx, rustc, target, work)
	}
	b.rustMu.Lock()
	defer b.rustMu.Unlock()
	key := rustc + "\x00" + target
	b.mu.Lock()
	rlib, ok := b.rlibs[key]
	b.mu.Unlock()
	if ok {
		if _, err := os.Stat(rlib); err == nil {
			return rlib, nil
		}
	}
	dir, err := b.workDir()
	if err != nil {
		return "", err
	}
	dir, err = os.MkdirTemp(dir, "rust-")
	if err != nil {
		return "", err
	}
	rlib, err = buildRustSDK(ctx, rustc, target, dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	b.mu.Lock()
	b.rlibs[key] = rlib
	b.mu.Unlock()
	return rlib, nil
}

// ascServer returns b's running compiler process for the asc at path,
// starting one if needed, or nil when there is no Builder, or the compiler
// cannot be loaded that way (then a plain asc process compiles).
func (b *Builder) ascServer(asc string) *ascServer {
	if b == nil {
		return nil
	}
	pkg := ascPackage(asc)
	if pkg == "" {
		return nil
	}
	work, err := b.workDir()
	if err != nil {
		return nil
	}
	// A file rather than node -e, so that ps shows what the process is.
	script := filepath.Join(work, "ascserver.mjs")
	if _, err := os.Stat(script); err != nil {
		if err := writeFile(script, []byte(ascServerScript)); err != nil {
			return nil
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	s, known := b.ascs[pkg]
	if known && s == nil {
		return nil
	}
	if s != nil && s.alive() {
		return s
	}
	s, err = startASCServer(script, pkg)
	if err != nil {
		return nil
	}
	b.ascs[pkg] = s
	return s
}

// dropASCServer stops the compiler process of the asc at path, which could
// not be driven in process: its builds run asc processes from now on.
func (b *Builder) dropASCServer(asc string) {
	pkg := ascPackage(asc)
	b.mu.Lock()
	s := b.ascs[pkg]
	if !b.closed {
		b.ascs[pkg] = nil
	}
	b.mu.Unlock()
	if s != nil {
		s.close()
	}
}
