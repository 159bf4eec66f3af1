package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/internal/guestbuild"
	assdk "github.com/sluice-run/sluice/sdk/assemblyscript"
	csdk "github.com/sluice-run/sluice/sdk/c"
	rustsdk "github.com/sluice-run/sluice/sdk/rust"
)

func newCmd() *cobra.Command {
	var lang, parent string
	cmd := &cobra.Command{
		Use:   "new NAME",
		Short: "Scaffold a function (source and build file) and print the runtime.hcl block to paste",
		Long: "Create the directory NAME (under --dir) holding a function in --lang that logs, publishes its\n" +
			"payload to NAME.done and returns \"hello <payload>\"; the payload \"fail\" fails it (retried) and\n" +
			"\"permanent\" fails it permanently (dead-lettered at once). sluice builds it from source when it runs.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := scaffoldName(name); err != nil {
				return usage(err)
			}
			files, ok := scaffolds[guestbuild.Language(lang)]
			if !ok {
				return usage(fmt.Errorf("--lang %q: want one of go, c, rust, assemblyscript", lang))
			}
			dir := filepath.Join(parent, name)
			if _, err := os.Stat(dir); err == nil {
				return failed(fmt.Errorf("%s already exists; choose another name or --dir", dir))
			}
			written, err := writeScaffold(dir, name, files(dir))
			if err != nil {
				return failed(err)
			}
			printScaffold(cmd.OutOrStdout(), guestbuild.Language(lang), name, dir, written)
			return nil
		},
	}
	cmd.Flags().StringVarP(&lang, "lang", "l", "go", "language: go, c, rust or assemblyscript")
	cmd.Flags().StringVar(&parent, "dir", ".", "directory to create the function's directory in")
	return cmd
}

// scaffoldName accepts names that work as a function name, a directory and
// a subject token alike.
func scaffoldName(name string) error {
	for i, c := range name {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '_' || c == '-')) {
			return fmt.Errorf("name %q: use a letter, then letters, digits, '_' or '-'", name)
		}
	}
	if name == "" || len(name) > 64 {
		return errors.New("name: 1 to 64 characters")
	}
	return nil
}

// scaffolds gives, per language, the files of a new function (path within
// its directory -> text/template source, or raw bytes for SDK copies).
var scaffolds = map[guestbuild.Language]func(dir string) map[string]any{
	guestbuild.Go: func(dir string) map[string]any {
		files := map[string]any{"main.go": goTemplate}
		// Inside the sluice module (a checkout) the enclosing go.mod
		// serves; elsewhere the function is a module of its own.
		if !insideSluiceModule(dir) {
			files["go.mod"] = goModTemplate
		}
		return files
	},
	guestbuild.C: func(string) map[string]any {
		return map[string]any{"{{.Name}}.c": cTemplate, "sluice.h": csdk.Header, "Makefile": makefileTemplate}
	},
	guestbuild.Rust: func(string) map[string]any {
		return map[string]any{"Cargo.toml": cargoTemplate, "src/lib.rs": rustTemplate,
			"sluice/lib.rs": rustsdk.Lib, "sluice/Cargo.toml": rustsdk.CargoToml}
	},
	guestbuild.AssemblyScript: func(string) map[string]any {
		return map[string]any{"package.json": asPackageTemplate(), "assembly/index.ts": asTemplate,
			"sdk/sluice/index.ts": assdk.Index, "sdk/globals/sluice_globals.ts": assdk.Globals}
	},
}

// asPackageTemplate is a package.json whose build script runs asc as sluice
// does, with the SDK copy in sdk/.
func asPackageTemplate() string {
	return `{
  "name": "{{.Name}}",
  "private": true,
  "scripts": {
    "build": "asc assembly/index.ts -o {{.Name}}.wasm -O3 ` + strings.Join(assdk.Flags("sdk", "sdk/globals"), " ") + `"
  },
  "devDependencies": {
    "assemblyscript": "^0.28.0"
  }
}
`
}

func insideSluiceModule(dir string) bool {
	root := guestbuild.ModuleRoot(filepath.Dir(dir))
	if root == "" {
		return false
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	return err == nil && strings.HasPrefix(string(mod), "module github.com/sluice-run/sluice\n")
}

type scaffoldData struct {
	Name, Version string
}

func writeScaffold(dir, name string, files map[string]any) ([]string, error) {
	data := scaffoldData{Name: name, Version: sluiceVersion()}
	var written []string
	for path, content := range files {
		path, err := render(path, data)
		if err != nil {
			return nil, err
		}
		var b []byte
		switch c := content.(type) {
		case []byte:
			b = c
		case string:
			s, err := render(c, data)
			if err != nil {
				return nil, err
			}
			b = []byte(s)
		}
		full := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, fmt.Errorf("new: %w", err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			return nil, fmt.Errorf("new: %w", err)
		}
		written = append(written, filepath.Join(dir, filepath.FromSlash(path)))
	}
	sort.Strings(written)
	return written, nil
}

func render(text string, data scaffoldData) (string, error) {
	t, err := template.New("").Delims("{{", "}}").Parse(text)
	if err != nil {
		return "", fmt.Errorf("new: template: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("new: template: %w", err)
	}
	return b.String(), nil
}

// sluiceVersion is the module version this binary was built from, for a
// new Go function's go.mod.
func sluiceVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "latest"
}

func printScaffold(w io.Writer, lang guestbuild.Language, name, dir string, files []string) {
	fmt.Fprintf(w, "Created a %s function in %s:\n", lang, dir)
	for _, f := range files {
		fmt.Fprintf(w, "  %s\n", f)
	}
	if lang == guestbuild.Go && !insideSluiceModule(dir) {
		fmt.Fprintf(w, "\nRun `go mod tidy` in %s once, to fetch the SDK.\n", dir)
	}
	if lang == guestbuild.AssemblyScript {
		fmt.Fprintf(w, "\nRun `npm install` in %s once, to fetch the compiler.\n", dir)
	}
	if err := guestbuild.Toolchain(lang); err != nil {
		fmt.Fprintf(w, "\nNote: %v.\n", err)
	}
	fmt.Fprintf(w, "\nPaste into runtime.hcl (source is relative to the config file's directory):\n\n%s", scaffoldHCL(name, filepath.ToSlash(dir)))
	fmt.Fprintf(w, "\nThen `sluice run`, and: sluice publish %s '\"world\"' --wait\n", name)
}

func scaffoldHCL(name, dir string) string {
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

const goTemplate = `//go:build wasip1

// Command {{.Name}} is a sluice function: it logs, publishes its payload to
// {{.Name}}.done and returns "hello <payload>". The payload "fail" fails it
// (retried), "permanent" fails it permanently (dead-lettered at once).
package main

import (
	"errors"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		sluice.Logf(sluice.Info, "event %s, attempt %d", e.ID, e.Attempt)
		switch string(e.Data) {
		case ` + "`\"fail\"`, \"fail\"" + `:
			return nil, errors.New("asked to fail")
		case ` + "`\"permanent\"`, \"permanent\"" + `:
			return nil, sluice.Permanent(errors.New("asked to fail permanently"))
		}
		if err := sluice.Publish("{{.Name}}.done", e.Data); err != nil {
			return nil, err
		}
		return append([]byte("hello "), e.Data...), nil
	})
}

func main() {}
`

const goModTemplate = `module {{.Name}}

go 1.26

require github.com/sluice-run/sluice {{.Version}}
`

const cTemplate = `/* {{.Name}}: a sluice function. It logs, publishes its payload to
 * {{.Name}}.done and returns "hello <payload>". The payload "fail" fails it
 * (retried), "permanent" fails it permanently (dead-lettered at once). */
#include "sluice.h"

static int is(const sluice_event *e, const char *word) {
  char quoted[64];
  snprintf(quoted, sizeof quoted, "\"%s\"", word);
  return strcmp(e->data.ptr, word) == 0 || strcmp(e->data.ptr, quoted) == 0;
}

static int handle_event(const sluice_event *e) {
  sluice_logf(SLUICE_INFO, "event %s, attempt %d", e->id.ptr, e->attempt);
  if (is(e, "fail")) return sluice_fail("asked to fail");
  if (is(e, "permanent")) return sluice_permanent("asked to fail permanently");
  int32_t rc = sluice_publish("{{.Name}}.done", e->data.ptr, e->data.len);
  if (rc < 0) return sluice_failf("publish: %s", sluice_strerror(rc));
  char result[1024];
  snprintf(result, sizeof result, "hello %s", e->data.ptr);
  return sluice_ok_str(result);
}

SLUICE_HANDLER(handle_event)
`

const makefileTemplate = `# sluice builds this function itself (source = "..." in runtime.hcl);
# this Makefile is for building it by hand.
{{.Name}}.wasm: {{.Name}}.c sluice.h
	clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wl,--strip-debug -o $@ {{.Name}}.c
`

const cargoTemplate = `# sluice builds this function itself with rustc (source = "..." in
# runtime.hcl), with the sluice crate as its only dependency; cargo works
# too: cargo build --release --target wasm32-wasip1 (wasm32-wasi before Rust 1.78).
[package]
name = "{{.Name}}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
sluice = { path = "sluice" }
`

const rustTemplate = `//! {{.Name}}: a sluice function. It logs, publishes its payload to
//! {{.Name}}.done and returns "hello <payload>". The payload "fail" fails it
//! (retried), "permanent" fails it permanently (dead-lettered at once).

use sluice::{Error, Event, Level};

fn handle_event(e: &Event) -> Result<Vec<u8>, Error> {
    sluice::log(Level::Info, &format!("event {}, attempt {}", e.id, e.attempt));
    let data = String::from_utf8_lossy(&e.data);
    match data.trim_matches('"') {
        "fail" => return Err("asked to fail".into()),
        "permanent" => return Err(sluice::permanent("asked to fail permanently")),
        _ => {}
    }
    sluice::publish("{{.Name}}.done", &e.data)?;
    Ok(format!("hello {}", data).into_bytes())
}

sluice::handler!(handle_event);
`

const asTemplate = `// {{.Name}}: a sluice function. It logs, publishes its payload to
// {{.Name}}.done and returns "hello <payload>". The payload "fail" fails it
// (retried), "permanent" fails it permanently (dead-lettered at once).
import { Event, Outcome, ok, fail, permanent, publish, log, Level, errorName, run } from "sluice";

function handleEvent(e: Event): Outcome {
  log(Level.Info, "event " + e.id + ", attempt " + e.attempt.toString());
  const data = e.dataString();
  if (data == "fail" || data == "\"fail\"") return fail("asked to fail");
  if (data == "permanent" || data == "\"permanent\"") return permanent("asked to fail permanently");
  const rc = publish("{{.Name}}.done", data);
  if (rc < 0) return fail("publish: " + errorName(rc));
  return ok("hello " + data);
}

export function handle(): i32 {
  return run(handleEvent);
}
`
