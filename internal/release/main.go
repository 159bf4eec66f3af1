// Command release builds the release archive of sluice for the machine's
// platform (linux/amd64 with glibc):
//
//	go run ./internal/release
//
// writes dist/sluice-<version>-linux-amd64.tar.gz, <version> being
// `git describe --tags --always --dirty`. The archive holds one directory
// with the binary, lib/libwasmer.so beside it (the binary finds it through
// a RUNPATH of $ORIGIN/lib, nothing else), the licenses, the README, and
// the examples ready to run: their modules prebuilt and a runtime.hcl that
// names no guest sources, so that `sluice run` needs no Go toolchain.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/guestbuild"
)

// runPath is the binary's only library search path: the lib directory
// beside it, wherever the archive was extracted.
const runPath = "$ORIGIN/lib"

func main() {
	out := flag.String("out", "dist", "directory the archive is written to")
	flag.Parse()
	root, err := repoRoot()
	if err == nil {
		var archive string
		archive, err = build(context.Background(), root, *out)
		if err == nil {
			fmt.Println(archive)
			return
		}
	}
	fmt.Fprintf(os.Stderr, "release: %v\n", err)
	os.Exit(1)
}

// repoRoot is the root of the git work tree holding the current directory.
func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("find the repository root: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// gitVersion is `git describe --tags --always --dirty` in root.
func gitVersion(root string) (string, error) {
	cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git describe: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// build stages the release of the repository at root and writes its
// archive into outDir (relative to root unless absolute); it returns the
// archive's path.
func build(ctx context.Context, root, outDir string) (string, error) {
	if goruntime.GOOS != "linux" || goruntime.GOARCH != "amd64" {
		return "", fmt.Errorf("the release is built on linux/amd64 (the only platform of the bundled libwasmer); this is %s/%s", goruntime.GOOS, goruntime.GOARCH)
	}
	version, err := gitVersion(root)
	if err != nil {
		return "", err
	}
	name := "sluice-" + version + "-linux-amd64"
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(root, outDir)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp(outDir, ".stage-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	dir := filepath.Join(stage, name)

	if err := buildBinary(ctx, root, version, filepath.Join(dir, "sluice")); err != nil {
		return "", err
	}
	lib, err := wasmerLib(ctx, root)
	if err != nil {
		return "", err
	}
	copies := map[string]string{
		filepath.Join(lib, "libwasmer.so"):                    "lib/libwasmer.so",
		filepath.Join(lib, "..", "..", "..", "..", "LICENSE"): "lib/LICENSE.wasmer",
		filepath.Join(root, "LICENSE"):                        "LICENSE",
		filepath.Join(root, "README.md"):                      "README.md",
	}
	for from, to := range copies {
		if err := copyFile(from, filepath.Join(dir, to)); err != nil {
			return "", err
		}
	}
	if err := stageExamples(ctx, root, dir); err != nil {
		return "", err
	}
	archive := filepath.Join(outDir, name+".tar.gz")
	if err := writeArchive(stage, name, archive); err != nil {
		return "", err
	}
	return archive, nil
}

// buildBinary links cmd/sluice with the version stamped and a RUNPATH of
// $ORIGIN/lib only. wasmer-go's cgo directive adds an rpath into the Go
// module cache, which cannot be taken off the link line; the binary's
// RUNPATH string is rewritten after the link instead.
func buildBinary(ctx context.Context, root, version, out string) error {
	ldflags := fmt.Sprintf("-s -w -X github.com/sluice-run/sluice/internal/version.Version=%s -extldflags '-Wl,--enable-new-dtags -Wl,-rpath,%s'", version, runPath)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./cmd/sluice")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH=amd64")
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, output)
	}
	return setRunPath(out, runPath)
}

// setRunPath makes want the binary's only RUNPATH entry. The linker wrote
// want as the last entry of the RUNPATH string; the string is overwritten
// in place with want and padded with NULs, so no offset moves.
func setRunPath(path, want string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	dynamic, dynstr := f.Section(".dynamic"), f.Section(".dynstr")
	if dynamic == nil || dynstr == nil {
		return fmt.Errorf("%s is not dynamically linked", path)
	}
	dyn, err := dynamic.Data()
	if err != nil {
		return err
	}
	strs, err := dynstr.Data()
	if err != nil {
		return err
	}
	const entry = 16 // Elf64_Dyn: d_tag, d_val
	var patched bool
	for i := 0; i+entry <= len(dyn); i += entry {
		tag := elf.DynTag(binary.LittleEndian.Uint64(dyn[i:]))
		if tag != elf.DT_RUNPATH && tag != elf.DT_RPATH {
			continue
		}
		off := binary.LittleEndian.Uint64(dyn[i+8:])
		end := bytes.IndexByte(strs[off:], 0)
		old := string(strs[off : off+uint64(end)])
		if !strings.HasSuffix(old, want) {
			return fmt.Errorf("%s: %s is %q, which does not end in %q", path, tag, old, want)
		}
		copy(strs[off:off+uint64(end)], append([]byte(want), make([]byte, end-len(want))...))
		patched = true
	}
	if !patched {
		return fmt.Errorf("%s has no RUNPATH", path)
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := w.WriteAt(strs, int64(dynstr.Offset)); err != nil {
		w.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return w.Close()
}

// wasmerLib is the directory of the libwasmer.so the build links, in the
// wasmer-go module.
func wasmerLib(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/wasmerio/wasmer-go")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("find wasmer-go: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "wasmer", "packaged", "lib", "linux-amd64"), nil
}

// sourceLine is a function's `source = "…"` attribute on a line of its own.
var sourceLine = regexp.MustCompile(`(?m)^[ \t]*source[ \t]*=.*\n`)

// stageExamples builds the modules of the repository's runtime.hcl into
// dir and writes a runtime.hcl that names the modules without their
// sources (a machine without Go runs them as they are).
func stageExamples(ctx context.Context, root, dir string) error {
	src := filepath.Join(root, "runtime.hcl")
	cfg, err := config.Load(src)
	if err != nil {
		return err
	}
	for _, f := range cfg.Functions {
		rel, err := filepath.Rel(root, f.Module)
		if err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("function %s: module %s is outside the repository", f.Name, f.Module)
		}
		out := filepath.Join(dir, rel)
		if f.Source == "" {
			if err := copyFile(f.Module, out); err != nil {
				return err
			}
			continue
		}
		if _, err := guestbuild.Build(ctx, f.Source, out); err != nil {
			return fmt.Errorf("function %s: %w", f.Name, err)
		}
	}
	text, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	header := "# sluice runtime configuration of the release: `./sluice run` in this\n" +
		"# directory loads it. The example modules are prebuilt beside it.\n"
	body := sourceLine.ReplaceAll(text, nil)
	for bytes.HasPrefix(body, []byte("#")) {
		_, body, _ = bytes.Cut(body, []byte("\n"))
	}
	staged := filepath.Join(dir, "runtime.hcl")
	if err := os.WriteFile(staged, append([]byte(header), body...), 0o644); err != nil {
		return err
	}
	if _, err := config.Load(staged); err != nil {
		return fmt.Errorf("the release's runtime.hcl: %w", err)
	}
	return nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

// writeArchive writes the tree stage/name as a gzipped tar to archive
// (through a temporary file, so that a failed build leaves no archive).
func writeArchive(stage, name, archive string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(archive), ".archive-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	gz := gzip.NewWriter(tmp)
	tw := tar.NewWriter(gz)
	err = filepath.WalkDir(filepath.Join(stage, name), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(stage, path)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if err := errors.Join(tw.Close(), gz.Close(), tmp.Close()); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), archive)
}
