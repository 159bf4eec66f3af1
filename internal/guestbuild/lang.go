package guestbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	csdk "github.com/sluice-run/sluice/sdk/c"
	rustsdk "github.com/sluice-run/sluice/sdk/rust"
)

// Language is a guest's source language.
type Language string

// The languages sluice builds.
const (
	Go             Language = "go"
	C              Language = "c"
	Rust           Language = "rust"
	AssemblyScript Language = "assemblyscript"
)

// Languages lists every language sluice builds, in the order Detect tries
// them.
var Languages = []Language{Go, Rust, AssemblyScript, C}

var (
	// ErrUnknownLanguage: a source directory holds nothing sluice can build.
	ErrUnknownLanguage = errors.New("no buildable guest source")
	// ErrNoToolchain: the compiler a language needs is not installed.
	ErrNoToolchain = errors.New("toolchain not installed")
)

// Detect returns the language of the guest in dir: go.mod or *.go files
// mean Go, Cargo.toml or src/lib.rs Rust, package.json or an assembly
// directory AssemblyScript, *.c files C.
func Detect(dir string) (Language, error) {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	glob := func(pattern string) bool {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		return len(m) > 0
	}
	switch {
	case exists("go.mod") || glob("*.go"):
		return Go, nil
	case exists("Cargo.toml") || exists(filepath.Join("src", "lib.rs")):
		return Rust, nil
	case exists("package.json") || exists("assembly"):
		return AssemblyScript, nil
	case glob("*.c"):
		return C, nil
	}
	if fi, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("guest source %s: %w", dir, err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("guest source %s: not a directory", dir)
	}
	return "", fmt.Errorf("guest source %s: %w: none of go.mod or *.go (Go), Cargo.toml or src/lib.rs (Rust), package.json or assembly/ (AssemblyScript), *.c (C)", dir, ErrUnknownLanguage)
}

// Toolchain reports whether the compiler lang needs is installed, with
// what to install when it is not (an error wrapping ErrNoToolchain).
func Toolchain(lang Language) error {
	switch lang {
	case Go:
		_, err := goTool()
		return err
	case C:
		if _, err := exec.LookPath(clangTool()); err != nil {
			return fmt.Errorf("%w: C needs clang, lld and a wasm32-wasi sysroot (Debian: apt-get install clang lld wasi-libc)", ErrNoToolchain)
		}
		return nil
	case Rust:
		_, _, err := rustTool()
		return err
	case AssemblyScript:
		_, err := ascTool("")
		return err
	}
	return fmt.Errorf("%w: unknown language %q", ErrNoToolchain, lang)
}

// steps returns the commands that compile the guest in dir to the module
// out, using work (an empty directory) for intermediate files.
func (b *Builder) steps(ctx context.Context, lang Language, dir, out, work string) ([]step, error) {
	var steps []step
	add := func(env []string, name string, args ...string) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		steps = append(steps, cmdStep(cmd))
	}
	switch lang {
	case Go:
		goCmd, err := goTool()
		if err != nil {
			return nil, err
		}
		add([]string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"}, goCmd, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
	case C:
		if err := Toolchain(C); err != nil {
			return nil, err
		}
		srcs, _ := filepath.Glob(filepath.Join(dir, "*.c"))
		sort.Strings(srcs)
		include := filepath.Join(work, "include")
		if err := writeFile(filepath.Join(include, "sluice.h"), csdk.Header); err != nil {
			return nil, err
		}
		// The include directory comes after dir's own files: a copy of
		// sluice.h beside the sources (as `sluice new` writes) wins.
		args := []string{"--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-idirafter", include, "-Wl,--strip-debug", "-o", out}
		if root := os.Getenv("WASI_SYSROOT"); root != "" {
			args = append(args, "--sysroot="+root)
		}
		add(nil, clangTool(), append(args, srcs...)...)
	case Rust:
		rustc, target, err := rustTool()
		if err != nil {
			return nil, err
		}
		entry := filepath.Join(dir, "src", "lib.rs")
		if _, err := os.Stat(entry); err != nil {
			return nil, fmt.Errorf("a Rust function is a library crate: %w", err)
		}
		rlib, err := b.rustSDK(ctx, rustc, target, work)
		if err != nil {
			return nil, err
		}
		// One codegen unit: for a function's small crate it takes about a
		// third less CPU than the default 16 (measured with rustc 1.63),
		// for a module of the same size.
		add(nil, rustc, "--edition", "2021", "--crate-type", "cdylib", "--crate-name", "function", "--target", target,
			"-O", "-C", "codegen-units=1", "-C", "strip=debuginfo", "--extern", "sluice="+rlib, "-L", filepath.Dir(rlib), "-o", out, entry)
	case AssemblyScript:
		s, err := b.assemblyScriptStep(ctx, dir, out, work)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownLanguage, lang)
	}
	return steps, nil
}

// buildRustSDK compiles the Rust SDK crate for target into dir, returning
// the rlib's path.
func buildRustSDK(ctx context.Context, rustc, target, dir string) (string, error) {
	src := filepath.Join(dir, "sluice", "lib.rs")
	if err := writeFile(src, rustsdk.Lib); err != nil {
		return "", err
	}
	rlib := filepath.Join(dir, "libsluice.rlib")
	cmd := exec.CommandContext(ctx, rustc, "--edition", "2021", "--crate-type", "rlib", "--crate-name", "sluice", "--target", target,
		"-O", "-o", rlib, src)
	cmd.Dir = dir
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("the sluice crate: %s: %w\n%s", filepath.Base(rustc), err, strings.TrimSpace(string(output)))
	}
	return rlib, nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// clangTool is $CC when set, else clang.
func clangTool() string {
	if cc := os.Getenv("CC"); cc != "" && strings.Contains(filepath.Base(cc), "clang") {
		return cc
	}
	return "clang"
}

// rustTool returns a rustc that has the standard library of a WASI
// target, and that target: wasm32-wasip1 (Rust 1.78 and later) or
// wasm32-wasi (earlier releases, such as Debian's). $RUSTC is tried first,
// then rustc on PATH, then Debian's /usr/bin/rustc.
func rustTool() (rustc, target string, err error) {
	var tried []string
	for _, c := range []string{os.Getenv("RUSTC"), "rustc", "/usr/bin/rustc"} {
		if c == "" {
			continue
		}
		path, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "--print", "sysroot").Output()
		if err != nil {
			continue
		}
		sysroot := strings.TrimSpace(string(out))
		for _, t := range []string{"wasm32-wasip1", "wasm32-wasi"} {
			if fi, err := os.Stat(filepath.Join(sysroot, "lib", "rustlib", t, "lib")); err == nil && fi.IsDir() {
				return path, t, nil
			}
		}
		tried = append(tried, path)
	}
	if len(tried) == 0 {
		return "", "", fmt.Errorf("%w: Rust needs rustc (Debian: apt-get install rustc libstd-rust-dev-wasm32)", ErrNoToolchain)
	}
	return "", "", fmt.Errorf("%w: no wasm32-wasip1 or wasm32-wasi standard library for %s (Debian: apt-get install libstd-rust-dev-wasm32; rustup: rustup target add wasm32-wasip1)",
		ErrNoToolchain, strings.Join(tried, ", "))
}
