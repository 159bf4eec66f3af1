package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/internal/testenv"
)

// TestDeniedPublishNamesTheSubject: a Go guest's publish outside its
// publish list fails with an error naming the subject it tried.
func TestDeniedPublishNamesTheSubject(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "runtime.hcl")
	hcl := fmt.Sprintf(`function "publisher" {
  source  = %q
  module  = %q
  publish = ["greet.done"]
}
queue "q" {
  subject  = "q"
  function = "publisher"
}
`, filepath.Join(testenv.RepoRoot(), "internal", "testguests", "publisher"), filepath.Join(dir, "publisher.wasm"))
	if err := os.WriteFile(cfgPath, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(t, "invoke", "publisher", "hi", "-c", cfgPath, "--cache", filepath.Join(dir, "cache"), "-H", "Target: greet.audit")
	if code != 1 {
		t.Fatalf("invoke: exit %d, want 1\n%s%s", code, out, errOut)
	}
	if want := `publish "greet.audit": denied`; !strings.Contains(out, want) {
		t.Errorf("invoke output does not contain %q:\n%s", want, out)
	}
}
