package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/testenv"
)

// publisherGuests publish the payload to the subject of the Target header
// and fail with their SDK's text for a failed publish, as
// internal/testguests/publisher does with the Go SDK: file -> source.
var publisherGuests = map[guestbuild.Language]map[string]string{
	guestbuild.C: {"publisher.c": `#include "sluice.h"
static int publisher(const sluice_event *e) {
  sluice_bytes target = sluice_header(e, "Target");
  if (!target.ptr) return sluice_permanent("missing Target header");
  char subject[512];
  snprintf(subject, sizeof subject, "%.*s", (int)target.len, target.ptr);
  if (sluice_publish(subject, e->data.ptr, e->data.len) < 0) return sluice_fail(sluice_error());
  char result[600];
  snprintf(result, sizeof result, "published to %s", subject);
  return sluice_ok_str(result);
}
SLUICE_HANDLER(publisher)
`},
	guestbuild.Rust: {"src/lib.rs": `use sluice::{Error, Event};

fn publisher(e: &Event) -> Result<Vec<u8>, Error> {
    let target = e.header("Target").ok_or_else(|| sluice::permanent("missing Target header"))?.to_string();
    sluice::publish(&target, &e.data)?;
    Ok(format!("published to {}", target).into_bytes())
}

sluice::handler!(publisher);
`},
	guestbuild.AssemblyScript: {"assembly/index.ts": `import { Event, Outcome, ok, fail, permanent, publishBytes, lastError, run } from "sluice";

function publisher(e: Event): Outcome {
  const target = e.header("Target");
  if (target == null) return permanent("missing Target header");
  if (publishBytes(target!, e.data) < 0) return fail(lastError());
  return ok("published to " + target!);
}

export function handle(): i32 { return run(publisher); }
`},
}

// TestDeniedPublishNamesTheSubjectInEverySDK: in every SDK (Go, C, Rust,
// AssemblyScript), a guest that fails with its SDK's error for a publish
// outside its publish list reports the same text, naming the subject:
// publish "greet.audit": denied; a long subject is cut to 64 bytes; a
// subject in the list is published.
func TestDeniedPublishNamesTheSubjectInEverySDK(t *testing.T) {
	dir := t.TempDir()
	sources := map[guestbuild.Language]string{
		guestbuild.Go: filepath.Join(testenv.RepoRoot(), "internal", "testguests", "publisher"),
	}
	for lang, files := range publisherGuests {
		src := filepath.Join(dir, string(lang))
		for name, code := range files {
			path := filepath.Join(src, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(code), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		sources[lang] = src
	}
	long := "greet." + strings.Repeat("x", 70)
	for _, lang := range []guestbuild.Language{guestbuild.Go, guestbuild.C, guestbuild.Rust, guestbuild.AssemblyScript} {
		t.Run(string(lang), func(t *testing.T) {
			testenv.RequireToolchain(t, lang)
			cfgPath := filepath.Join(dir, string(lang)+".hcl")
			hcl := fmt.Sprintf(`function "publisher" {
  source  = %q
  module  = %q
  publish = ["greet.done"]
}
`, sources[lang], filepath.Join(dir, string(lang)+".wasm"))
			if err := os.WriteFile(cfgPath, []byte(hcl), 0o644); err != nil {
				t.Fatal(err)
			}
			invoke := func(target string) (int, string) {
				t.Helper()
				code, out, errOut := cli(t, "invoke", "publisher", "hi", "-c", cfgPath, "--cache", filepath.Join(dir, "cache"), "-H", "Target: "+target)
				return code, out + errOut
			}
			if code, out := invoke("greet.done"); code != 0 || !strings.Contains(out, "published to greet.done") {
				t.Fatalf("publish to greet.done: exit %d, want 0 and the result\n%s", code, out)
			}
			for target, want := range map[string]string{
				"greet.audit": `publish "greet.audit": denied`,
				long:          `publish "` + long[:64] + `"…: denied`,
			} {
				code, out := invoke(target)
				if code != 1 {
					t.Errorf("publish to %s: exit %d, want 1\n%s", target, code, out)
				}
				if !strings.Contains(out, want) {
					t.Errorf("publish to %s: the output does not contain %q:\n%s", target, want, out)
				}
			}
		})
	}
}
