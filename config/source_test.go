package config

import (
	"path/filepath"
	"testing"
)

// TestModuleDefaultsFromSource: a function with source and no module gets
// the module <source>/<base>.wasm, resolved against the config's directory.
func TestModuleDefaultsFromSource(t *testing.T) {
	dir := t.TempDir()
	src := []byte(`
function "hello" { source = "fns/hello" }
function "both" {
  source = "fns/both"
  module = "out/both.wasm"
}
queue "q" {
  subject  = "q"
  function = "hello"
}
queue "r" {
  subject  = "r"
  function = "both"
}
`)
	cfg, err := Parse(filepath.Join(dir, "runtime.hcl"), src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"hello": filepath.Join(dir, "fns", "hello", "hello.wasm"),
		"both":  filepath.Join(dir, "out", "both.wasm"),
	}
	for _, f := range cfg.Functions {
		if f.Module != want[f.Name] {
			t.Errorf("function %s: module %q, want %q", f.Name, f.Module, want[f.Name])
		}
	}
}
