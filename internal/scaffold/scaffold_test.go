package scaffold_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/scaffold"
)

// TestNewWritesEachLanguagesFiles: each language gets its source, build
// file and SDK copy, with the name filled in everywhere and no template
// left; a bad name, an unknown language and an existing directory are
// refused, the first two as ErrInvalid.
func TestNewWritesEachLanguagesFiles(t *testing.T) {
	want := map[guestbuild.Language][]string{
		guestbuild.Go:             {"go.mod", "main.go"},
		guestbuild.C:              {"Makefile", "hello.c", "sluice.h"},
		guestbuild.Rust:           {"Cargo.toml", "sluice/Cargo.toml", "sluice/lib.rs", "src/lib.rs"},
		guestbuild.AssemblyScript: {"assembly/index.ts", "package.json", "sdk/globals/sluice_globals.ts", "sdk/sluice/index.ts"},
	}
	for lang, files := range want {
		parent := t.TempDir()
		f, err := scaffold.New(parent, "hello", lang)
		if err != nil {
			t.Fatalf("%s: %v", lang, err)
		}
		var got []string
		for _, p := range f.Files {
			rel, _ := filepath.Rel(f.Dir, p)
			got = append(got, filepath.ToSlash(rel))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "{{") && !strings.Contains(rel, "sluice") && !strings.Contains(rel, "sdk") {
				t.Errorf("%s: %s keeps a template action", lang, rel)
			}
		}
		if !slices.Equal(got, files) {
			t.Errorf("%s: files %v, want %v", lang, got, files)
		}
		if _, err := scaffold.New(parent, "hello", lang); err == nil || errors.Is(err, scaffold.ErrInvalid) {
			t.Errorf("%s: a second New into the same directory: %v, want refused", lang, err)
		}
	}
	for _, bad := range [][2]string{{"1x", "go"}, {"", "go"}, {"ok", "cobol"}} {
		if _, err := scaffold.New(t.TempDir(), bad[0], guestbuild.Language(bad[1])); !errors.Is(err, scaffold.ErrInvalid) {
			t.Errorf("New(%q, %q): %v, want ErrInvalid", bad[0], bad[1], err)
		}
	}
}
