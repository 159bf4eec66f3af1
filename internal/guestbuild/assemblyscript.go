package guestbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	assdk "github.com/sluice-run/sluice/sdk/assemblyscript"
)

// ascTool returns the AssemblyScript compiler: dir's own
// (node_modules/.bin/asc, after npm install), else asc on PATH.
func ascTool(dir string) (string, error) {
	if dir != "" {
		local := filepath.Join(dir, "node_modules", ".bin", "asc")
		if _, err := os.Stat(local); err == nil {
			return local, nil
		}
	}
	if p, err := exec.LookPath("asc"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: AssemblyScript needs asc: npm install in the function's directory, or npm install -g assemblyscript", ErrNoToolchain)
}

// assemblyScriptStep compiles assembly/index.ts with the SDK (import
// "sluice") on the package path, the SDK's abort, trace and seed in place
// of the "env" imports, and the start function exported as _initialize so
// that the runtime runs it. An asconfig.json in dir (such as the
// @assemblyscript/wasi-shim setup) still applies; these flags take
// precedence. With a Builder, the compiler already loaded in its node
// process compiles it; otherwise a new asc process.
func (b *Builder) assemblyScriptStep(ctx context.Context, dir, out, work string) (step, error) {
	asc, err := ascTool(dir)
	if err != nil {
		return step{}, err
	}
	entry := filepath.Join("assembly", "index.ts")
	if _, err := os.Stat(filepath.Join(dir, entry)); err != nil {
		return step{}, fmt.Errorf("an AssemblyScript function's entry is assembly/index.ts: %w", err)
	}
	pkgs, globals := filepath.Join(work, "pkgs"), filepath.Join(work, "globals")
	if err := writeFile(filepath.Join(pkgs, "sluice", "index.ts"), assdk.Index); err != nil {
		return step{}, err
	}
	if err := writeFile(filepath.Join(globals, "sluice_globals.ts"), assdk.Globals); err != nil {
		return step{}, err
	}
	// asc ignores an absolute --lib directory (0.28): pass both relative.
	relPkgs, err := filepath.Rel(dir, pkgs)
	if err != nil {
		return step{}, err
	}
	relGlobals, err := filepath.Rel(dir, globals)
	if err != nil {
		return step{}, err
	}
	args := append([]string{entry, "-o", out, "-O3"}, assdk.Flags(relPkgs, relGlobals)...)
	process := func() *exec.Cmd {
		cmd := exec.CommandContext(ctx, asc, args...)
		cmd.Dir = dir
		return cmd
	}
	srv := b.ascServer(asc)
	if srv == nil {
		return cmdStep(process()), nil
	}
	return step{tool: "asc", run: func() ([]byte, error) {
		out, err := srv.compile(ctx, dir, args)
		if errors.Is(err, errASCInternal) {
			b.dropASCServer(asc)
		}
		if errors.Is(err, errASCProcess) || errors.Is(err, errASCInternal) {
			return process().CombinedOutput()
		}
		return out, err
	}}, nil
}
