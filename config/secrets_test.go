package config

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestEnvFunctionReadsSecrets: env("NAME") gives a function's env value
// and a user's password from the environment, and the recorded form and
// the plan name where the value comes from, never the value.
func TestEnvFunctionReadsSecrets(t *testing.T) {
	t.Setenv("SLUICE_TEST_API_KEY", "s3cret-api-key")
	t.Setenv("SLUICE_TEST_PW", "s3cret-password")
	src := `
nats {
  user "app" {
    password = env("SLUICE_TEST_PW")
    role     = "publish"
  }
}
function "sender" {
  module = "sender.wasm"
  env    = { API_KEY = env("SLUICE_TEST_API_KEY"), REGION = "eu", TOKEN = "literal" }
}
`
	c := mustParse(t, src)
	f := c.Functions[0]
	if f.Env["API_KEY"] != "s3cret-api-key" || f.Env["REGION"] != "eu" {
		t.Errorf("env %v", f.Env)
	}
	if !slices.Equal(f.EnvFromHost, []string{"API_KEY"}) {
		t.Errorf("EnvFromHost %v, want [API_KEY]", f.EnvFromHost)
	}
	if len(c.Users) != 1 || c.Users[0].Password != "s3cret-password" {
		t.Errorf("users %+v", c.Users)
	}

	recorded, err := json.Marshal(EffectiveOf(c, nil))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(recorded), "s3cret") {
		t.Errorf("the recorded config holds a secret: %s", recorded)
	}
	if !strings.Contains(string(recorded), `"env_from_env":["API_KEY"]`) {
		t.Errorf("the recorded config does not say API_KEY comes from the environment: %s", recorded)
	}

	// TOKEN moves from the file to the environment; NEW arrives from it.
	t.Setenv("SLUICE_TEST_TOKEN", "s3cret-token")
	next := mustParse(t, strings.Replace(src, `TOKEN = "literal"`, `TOKEN = env("SLUICE_TEST_TOKEN"), NEW = env("SLUICE_TEST_TOKEN")`, 1))
	var lines []string
	for _, ch := range DiffConfigs(c, next) {
		lines = append(lines, ch.String())
	}
	plan := strings.Join(lines, "\n")
	for _, want := range []string{
		"function sender: env + NEW (from env)",
		"function sender: env TOKEN (in the file) -> (from env)",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	if strings.Contains(plan, "s3cret") {
		t.Errorf("the plan shows a secret:\n%s", plan)
	}
}

// TestEnvFunctionMissingVariable: an unset variable is a diagnostic at the
// call, with its position and the variable's name.
func TestEnvFunctionMissingVariable(t *testing.T) {
	_, err := Parse("runtime.hcl", []byte(`function "sender" {
  module = "sender.wasm"
  env    = { API_KEY = env("SLUICE_TEST_UNSET_VARIABLE") }
}
`))
	if err == nil {
		t.Fatal("an unset variable was accepted")
	}
	for _, want := range []string{"on runtime.hcl:3:24", "SLUICE_TEST_UNSET_VARIABLE is not set"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestEnvFunctionOnlyForSecrets: a setting that is recorded and shown
// (here a subject) refuses env(), saying where it belongs.
func TestEnvFunctionOnlyForSecrets(t *testing.T) {
	t.Setenv("SLUICE_TEST_SUBJECT", "jobs.x")
	_, err := Parse("runtime.hcl", []byte(`function "f" { module = "f.wasm" }
queue "q" {
  subject  = env("SLUICE_TEST_SUBJECT")
  function = "f"
}
`))
	if err == nil || !strings.Contains(err.Error(), "on runtime.hcl:3:14") || !strings.Contains(err.Error(), "only a function's env values and passwords") {
		t.Fatalf("env() in a subject: %v", err)
	}
}
