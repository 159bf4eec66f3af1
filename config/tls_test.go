package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTransportSecurity: tls blocks resolve their files; a non-loopback
// listener whose users' or route passwords would travel in clear needs
// TLS or insecure = true; creds and nkey belong to client mode.
func TestTransportSecurity(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cert.pem", "key.pem", "ca.pem", "user.creds", "user.nk"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	parse := func(src string) (*Config, error) {
		return Parse(filepath.Join(dir, "runtime.hcl"), []byte(src))
	}
	users := `
  user "admin" {
    password = "pw"
    role     = "admin"
  }`
	tls := `
  tls {
    cert = "cert.pem"
    key  = "key.pem"
    ca   = "ca.pem"
  }`

	_, err := parse(`nats {
  listen = "0.0.0.0:4222"` + users + `
}`)
	if err == nil || !strings.Contains(err.Error(), "Passwords in clear") || !strings.Contains(err.Error(), "runtime.hcl:2:") {
		t.Errorf("users on 0.0.0.0 without TLS: %v", err)
	}
	if _, err := parse(`nats {
  listen   = "0.0.0.0:4222"
  insecure = true` + users + `
}`); err != nil {
		t.Errorf("insecure = true: %v", err)
	}
	c, err := parse(`nats {
  listen = "0.0.0.0:4222"` + users + tls + `
}`)
	if err != nil {
		t.Fatalf("with TLS: %v", err)
	}
	if want := (TLS{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: filepath.Join(dir, "ca.pem")}); c.NATS.TLS == nil || *c.NATS.TLS != want {
		t.Errorf("tls %+v, want %+v", c.NATS.TLS, want)
	}

	_, err = parse(`nats {
  cluster {
    listen   = "0.0.0.0:6222"
    user     = "route"
    password = "pw"
  }
}`)
	if err == nil || !strings.Contains(err.Error(), "Route password in clear") {
		t.Errorf("a route password on 0.0.0.0 without TLS: %v", err)
	}
	if _, err := parse(`nats {
  cluster {
    listen   = "0.0.0.0:6222"
    user     = "route"
    password = "pw"` + tls + `
  }
}`); err != nil {
		t.Errorf("cluster with TLS: %v", err)
	}

	c, err = parse(`nats {
  url   = "tls://nats.example.com:4222"
  creds = "user.creds"
  tls { ca = "ca.pem" }
}`)
	if err != nil {
		t.Fatalf("client mode with creds: %v", err)
	}
	if c.NATS.Creds != filepath.Join(dir, "user.creds") || c.NATS.TLS == nil || c.NATS.TLS.CA == "" || c.NATS.TLS.Cert != "" {
		t.Errorf("client mode: %+v", c.NATS)
	}
	for src, want := range map[string]string{
		`nats { nkey = "user.nk" }`: "Credentials without an external server",
		`nats {
  url   = "nats://a:4222"
  creds = "user.creds"
  nkey  = "user.nk"
}`: "Conflicting credentials",
		`nats {
  url   = "nats://a:4222"
  creds = "missing.creds"
}`: "does not exist",
		`nats {
  tls { ca = "ca.pem" }
}`: "A listener's tls block needs cert and key",
		`nats {
  url = "nats://a:4222"
  tls { cert = "cert.pem" }
}`: "cert and key go together",
	} {
		if _, err := parse(src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s\nerror %v, want %q", src, err, want)
		}
	}
}
