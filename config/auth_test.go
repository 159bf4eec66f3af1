package config

import (
	"errors"
	"strings"
	"testing"
)

func TestUsers(t *testing.T) {
	t.Setenv("SLUICE_TEST_PW", "from-env")
	c := mustParse(t, `
nats {
  user "admin" {
    password = "a"
    role     = "admin"
  }
  user "app" {
    password_env = "SLUICE_TEST_PW"
    role         = "publish"
  }
}
`)
	want := []User{{Name: "admin", Password: "a", Role: RoleAdmin}, {Name: "app", Password: "from-env", PasswordEnv: "SLUICE_TEST_PW", Role: RolePublish}}
	if len(c.Users) != 2 || c.Users[0] != want[0] || c.Users[1] != want[1] {
		t.Fatalf("users: %+v", c.Users)
	}
}

func TestUserDiagnostics(t *testing.T) {
	_, err := Parse("runtime.hcl", []byte(`nats {
  user "a" {
    password = "x"
    role     = "root"
  }
  user "a" {
    password = "y"
    role     = "admin"
  }
  user "b" { role = "admin" }
  user "c" {
    password = ""
    role     = "admin"
  }
  user "d" {
    password     = "x"
    password_env = "X"
    role         = "admin"
  }
  user "e" {
    password_env = "SLUICE_TEST_UNSET_PASSWORD"
    role         = "publish"
  }
}
`))
	var de *DiagnosticsError
	if !errors.As(err, &de) {
		t.Fatalf("error: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"Error: Invalid role\n\n  on runtime.hcl:4:16,",
		"Error: Duplicate user name\n\n  on runtime.hcl:6:8,",
		"Error: Missing password\n\n  on runtime.hcl:10:8,",
		"Error: Empty password\n\n  on runtime.hcl:12:16,",
		"Error: Conflicting password settings\n\n  on runtime.hcl:17:5,",
		"Error: Missing password\n\n  on runtime.hcl:21:20,",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, msg)
		}
	}
	if len(de.Diags) != 6 {
		t.Errorf("%d diagnostics:\n%s", len(de.Diags), msg)
	}
}
