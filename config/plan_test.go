package config

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

const planBase = `
function "sender" {
  module  = "sender.wasm"
  memory  = "64MiB"
  publish = ["emails.sent"]
  env     = { API_KEY = "secret-one" }
}
function "crm" { module = "crm.wasm" }
queue "emails" {
  subject  = "emails.send"
  function = "sender"
  retry { max_attempts = 5 }
}
topic "signup" {
  subject = "user.registered"
  subscriber "crm_sync" { function = "crm" }
  subscriber "welcome"  { function = "sender" }
}
`

const planNext = `
function "sender" {
  module  = "sender.wasm"
  memory  = "128MiB"
  publish = ["emails.sent", "audit.*"]
  env     = { API_KEY = "secret-two", REGION = "eu" }
}
function "crm" { module = "crm.wasm" }
queue "emails" {
  subject  = "emails.send"
  function = "sender"
  dedupe   = "1h"
  retry { max_attempts = 8 }
}
topic "signup" {
  subject = "user.registered"
  subscriber "welcome" { function = "sender" }
  subscriber "audit" {
    function   = "crm"
    start_from = "all"
  }
}
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("runtime.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDiffNoChanges(t *testing.T) {
	a, b := mustParse(t, planBase), mustParse(t, planBase)
	if got := DiffConfigs(a, b); len(got) != 0 {
		t.Fatalf("equal configs: %v", got)
	}
}

func TestDiffDescribesEveryChange(t *testing.T) {
	running := EffectiveOf(mustParse(t, planBase), func(string) string { return "aaaaaaaaaaaaaaaa" })
	// Through JSON, as the CLI reads it.
	b, err := json.Marshal(running)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "secret-one") {
		t.Fatalf("env values leaked into the effective config: %s", b)
	}
	var decoded Effective
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	next := EffectiveOf(mustParse(t, planNext), func(string) string { return "aaaaaaaaaaaaaaaa" })
	changes := Diff(&decoded, next)
	var lines []string
	for _, c := range changes {
		lines = append(lines, c.String())
	}
	want := []string{
		"function sender: memory 64MiB -> 128MiB",
		"function sender: publish + audit.*",
		"function sender: env + REGION",
		"queue emails: retry max_attempts 5 -> 8",
		"queue emails: dedupe off -> 1h",
		"topic signup: subscriber crm_sync removed",
		"topic signup: new subscriber audit (start_from all)",
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("changes:\n%q\nwant:\n%q", lines, want)
	}
	for _, c := range changes {
		switch c.Name {
		case "signup/crm_sync", "emails", "signup/audit":
			if c.Binding != c.Name {
				t.Errorf("%s: binding %q", c, c.Binding)
			}
		default:
			if c.Binding != "" {
				t.Errorf("%s: binding %q", c, c.Binding)
			}
		}
	}
}

func TestDiffVersionsAndRemovals(t *testing.T) {
	a := EffectiveOf(mustParse(t, planBase), func(string) string { return "1111111111111111" })
	b := EffectiveOf(mustParse(t, `
function "sender" {
  module  = "sender.wasm"
  memory  = "64MiB"
  publish = ["emails.sent"]
  env     = { API_KEY = "x" }
}
topic "signup" {
  subject   = "user.registered"
  retention = "1h"
  subscriber "welcome"  {
    function = "sender"
    start_from = "all"
    rate = "10/s"
  }
}
`), func(string) string { return "2222222222222222" })
	var lines []string
	for _, c := range Diff(a, b) {
		lines = append(lines, c.String())
	}
	want := []string{
		"function crm removed",
		"function sender: version 111111111111 -> 222222222222",
		"queue emails removed",
		"topic signup: retention 168h -> 1h",
		"topic signup: subscriber crm_sync removed",
		"topic signup: subscriber welcome: rate unlimited -> 10/s",
		"topic signup: subscriber welcome: start_from new -> all (no effect: where a subscriber starts is fixed when it is created)",
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("changes:\n%q\nwant:\n%q", lines, want)
	}
}
