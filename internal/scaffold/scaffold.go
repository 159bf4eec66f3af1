// Package scaffold creates a new function's source in one of the languages
// sluice builds (`sluice new`): a handler that logs, publishes its payload
// to NAME.done and returns "hello <payload>", its build file, a copy of the
// SDK where the language has no package registry sluice can use, and the
// runtime.hcl block that wires it. The templates are the files under
// templates/, one directory per language.
package scaffold

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"text/template"

	"github.com/sluice-run/sluice/internal/guestbuild"
	assdk "github.com/sluice-run/sluice/sdk/assemblyscript"
	csdk "github.com/sluice-run/sluice/sdk/c"
	rustsdk "github.com/sluice-run/sluice/sdk/rust"
)

//go:embed templates
var templates embed.FS

// ErrInvalid is what errors.Is finds in New's error for a name or a
// language it does not accept.
var ErrInvalid = errors.New("invalid name or language")

type invalidError string

func (e invalidError) Error() string   { return string(e) }
func (invalidError) Is(err error) bool { return err == ErrInvalid }

// sdkCopies are the SDK files copied beside a new function, per language
// (path within its directory -> content).
var sdkCopies = map[guestbuild.Language]map[string][]byte{
	guestbuild.Go:             nil,
	guestbuild.C:              {"sluice.h": csdk.Header},
	guestbuild.Rust:           {"sluice/lib.rs": rustsdk.Lib, "sluice/Cargo.toml": rustsdk.CargoToml},
	guestbuild.AssemblyScript: {"sdk/sluice/index.ts": assdk.Index, "sdk/globals/sluice_globals.ts": assdk.Globals},
}

// Function is a function New created.
type Function struct {
	Name string
	Lang guestbuild.Language
	// Dir is its directory; Files the paths written in it, sorted.
	Dir   string
	Files []string
}

// New creates the directory parent/name holding function name in lang.
// It refuses a directory that exists.
func New(parent, name string, lang guestbuild.Language) (*Function, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	copies, ok := sdkCopies[lang]
	if !ok {
		return nil, invalidError(fmt.Sprintf("--lang %q: want one of go, c, rust, assemblyscript", lang))
	}
	f := &Function{Name: name, Lang: lang, Dir: filepath.Join(parent, name)}
	if _, err := os.Stat(f.Dir); err == nil {
		return nil, fmt.Errorf("%s already exists; choose another name or --dir", f.Dir)
	}
	data := struct{ Name, Version, ASCFlags string }{name, sluiceVersion(), strings.Join(assdk.Flags("sdk", "sdk/globals"), " ")}
	root := path.Join("templates", string(lang))
	err := fs.WalkDir(templates, root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, root+"/"), ".tmpl")
		// Inside the sluice module (a checkout) the enclosing go.mod
		// serves; elsewhere a Go function is a module of its own.
		if rel == "go.mod" && f.insideSluiceModule() {
			return nil
		}
		t, err := template.ParseFS(templates, p)
		if err != nil {
			return fmt.Errorf("new: template: %w", err)
		}
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			return fmt.Errorf("new: template: %w", err)
		}
		return f.write(strings.ReplaceAll(rel, "NAME", name), []byte(b.String()))
	})
	if err != nil {
		return nil, err
	}
	for rel, content := range copies {
		if err := f.write(rel, content); err != nil {
			return nil, err
		}
	}
	sort.Strings(f.Files)
	return f, nil
}

func (f *Function) write(rel string, content []byte) error {
	full := filepath.Join(f.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return fmt.Errorf("new: %w", err)
	}
	if err := os.WriteFile(full, content, 0o644); err != nil {
		return fmt.Errorf("new: %w", err)
	}
	f.Files = append(f.Files, full)
	return nil
}

// checkName accepts names that work as a function name, a directory and a
// subject token alike.
func checkName(name string) error {
	for i, c := range name {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '_' || c == '-')) {
			return invalidError(fmt.Sprintf("name %q: use a letter, then letters, digits, '_' or '-'", name))
		}
	}
	if name == "" || len(name) > 64 {
		return invalidError("name: 1 to 64 characters")
	}
	return nil
}

func (f *Function) insideSluiceModule() bool {
	root := guestbuild.ModuleRoot(filepath.Dir(f.Dir))
	if root == "" {
		return false
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	return err == nil && strings.HasPrefix(string(mod), "module github.com/sluice-run/sluice\n")
}

// sluiceVersion is the module version this binary was built from, for a
// new Go function's go.mod.
func sluiceVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "latest"
}

// WriteGuide writes what was created, what to run once, and the
// runtime.hcl block to paste.
func (f *Function) WriteGuide(w io.Writer) {
	fmt.Fprintf(w, "Created a %s function in %s:\n", f.Lang, f.Dir)
	for _, p := range f.Files {
		fmt.Fprintf(w, "  %s\n", p)
	}
	if f.Lang == guestbuild.Go && !f.insideSluiceModule() {
		fmt.Fprintf(w, "\nRun `go mod tidy` in %s once, to fetch the SDK.\n", f.Dir)
	}
	if f.Lang == guestbuild.AssemblyScript {
		fmt.Fprintf(w, "\nRun `npm install` in %s once, to fetch the compiler.\n", f.Dir)
	}
	if err := guestbuild.Toolchain(f.Lang); err != nil {
		fmt.Fprintf(w, "\nNote: %v.\n", err)
	}
	fmt.Fprintf(w, "\nPaste into runtime.hcl (source is relative to the config file's directory):\n\n%s", HCL(f.Name, filepath.ToSlash(f.Dir)))
	fmt.Fprintf(w, "\nThen `sluice run`, and: sluice publish %s '\"world\"' --wait\n", f.Name)
}

// HCL is the runtime.hcl block of function name built from dir: the
// function, allowed to publish to NAME.done, bound to a queue on subject
// NAME.
func HCL(name, dir string) string {
	return fmt.Sprintf(`function %q {
  source  = %q
  publish = [%q]
}

queue %q {
  subject  = %q
  function = %q
}
`, name, dir, name+".done", name, name, name)
}
