package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sluice-run/sluice/internal/testenv"
)

const connectConfig = `
nats {
  url = %q
  %s
  tls {
    %s
  }
}
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}
`

// writeFile writes data into a new file of the test and returns its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// publishOK publishes to ok.send with args and checks the outcome came
// back succeeded.
func publishOK(t *testing.T, args ...string) {
	t.Helper()
	code, out, errOut := cli(t, append(args, "publish", "ok.send", "{}", "--wait", "--json")...)
	if code != 0 {
		t.Fatalf("publish: exit %d\n%s%s", code, out, errOut)
	}
	if p := decode(t, out); len(p.Outcomes) != 1 || p.Outcomes[0].State != "succeeded" {
		t.Fatalf("outcomes: %s", out)
	}
}

// TestClientModeOverTLSWithNKey: the runtime joins a nats-server that
// requires TLS with client certificates and NKEY authentication, with
// nats { url, nkey, tls { cert, key, ca } }; the CLI reaches it with
// --nkey and the TLS flags, and without them it is refused.
func TestClientModeOverTLSWithNKey(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	certs := testenv.TLSCerts(t)
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := writeFile(t, "user.nk", seed)
	conf := writeFile(t, "server.conf", fmt.Appendf(nil, `
authorization { users = [ { nkey: %q } ] }
tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }
`, pub, certs.ServerCert, certs.ServerKey, certs.CA))
	nkeyOpt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	url := testenv.StartSecureNATSServer(t, []nats.Option{nkeyOpt, nats.RootCAs(certs.CA), nats.ClientCert(certs.ClientCert, certs.ClientKey)}, "-c", conf)
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("the server's URL %s does not require TLS", url)
	}
	cfg := testenv.Config(t, fmt.Sprintf(connectConfig, url, fmt.Sprintf("nkey = %q", seedFile),
		fmt.Sprintf("cert = %q\n    key = %q\n    ca = %q", certs.ClientCert, certs.ClientKey, certs.CA)))
	testenv.Start(t, cfg, "")

	flags := []string{"--server", url, "--nkey", seedFile, "--tlsca", certs.CA, "--tlscert", certs.ClientCert, "--tlskey", certs.ClientKey}
	publishOK(t, flags...)
	if code, _, errOut := cli(t, "--server", url, "--tlsca", certs.CA, "--tlscert", certs.ClientCert, "--tlskey", certs.ClientKey, "nodes"); code != 2 {
		t.Errorf("without the nkey: exit %d, want 2 (%s)", code, errOut)
	}
	if code, _, errOut := cli(t, "--server", url, "--nkey", seedFile, "--tlsca", certs.CA, "nodes"); code != 2 {
		t.Errorf("without a client certificate: exit %d, want 2 (%s)", code, errOut)
	}
}

// TestCLIThroughContextWithCreds: NATS_CONTEXT names a natscli context
// (url, creds, ca) of a nats-server in operator mode that requires TLS;
// the runtime joins it with nats { creds, tls { ca } }, and the CLI, given
// nothing but the context, publishes and waits for the outcome.
func TestCLIThroughContextWithCreds(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	certs := testenv.TLSCerts(t)
	op := operatorMode(t)
	conf := writeFile(t, "server.conf", fmt.Appendf(nil, `%s
tls { cert_file: %q, key_file: %q }
`, op.config, certs.ServerCert, certs.ServerKey))
	url := testenv.StartSecureNATSServer(t, []nats.Option{nats.UserCredentials(op.creds), nats.RootCAs(certs.CA)}, "-c", conf)

	cfg := testenv.Config(t, fmt.Sprintf(connectConfig, url, fmt.Sprintf("creds = %q", op.creds), fmt.Sprintf("ca = %q", certs.CA)))
	testenv.Start(t, cfg, "")

	home := t.TempDir()
	ctxJSON, err := json.Marshal(map[string]string{"url": url, "creds": op.creds, "ca": certs.CA})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, "nats", "context"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "nats", "context", "prod.json"), ctxJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CONFIG_HOME", home)
	t.Setenv("SLUICE_SERVER", "")
	t.Setenv("NATS_URL", "")
	t.Setenv("NATS_CONTEXT", "prod")
	publishOK(t)
	if code, out, errOut := cli(t, "nodes", "--json"); code != 0 || !strings.Contains(out, url) {
		t.Errorf("nodes through the context: exit %d\n%s%s", code, out, errOut)
	}
	// --context takes a file too, and wins over NATS_CONTEXT.
	t.Setenv("NATS_CONTEXT", "missing")
	publishOK(t, "--context", filepath.Join(home, "nats", "context", "prod.json"))
	if code, _, errOut := cli(t, "nodes"); code != 2 || !strings.Contains(errOut, `NATS context "missing"`) {
		t.Errorf("an unknown context: exit %d, %s", code, errOut)
	}
}

// TestServerPrecedence: --server, then SLUICE_SERVER, then NATS_URL.
func TestServerPrecedence(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	rt := testenv.Start(t, testenv.Config(t, `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}
`), "")
	const nowhere = "nats://127.0.0.1:1"
	t.Setenv("NATS_CONTEXT", "")
	t.Setenv("SLUICE_SERVER", "")
	t.Setenv("NATS_URL", rt.ClientURL())
	if code, _, errOut := cli(t, "nodes"); code != 0 {
		t.Fatalf("NATS_URL not honoured: exit %d, %s", code, errOut)
	}
	t.Setenv("SLUICE_SERVER", nowhere)
	if code, _, errOut := cli(t, "nodes"); code != 2 || !strings.Contains(errOut, nowhere) {
		t.Errorf("SLUICE_SERVER does not win over NATS_URL: exit %d, %s", code, errOut)
	}
	if code, _, errOut := cli(t, "--server", rt.ClientURL(), "nodes"); code != 0 {
		t.Errorf("--server does not win over SLUICE_SERVER: exit %d, %s", code, errOut)
	}
}

// operator is a nats-server operator-mode setup: the server config
// (operator, system account and one JetStream-enabled account, preloaded
// in a memory resolver) and a creds file of a user of that account.
type operator struct {
	config, creds string
}

func operatorMode(t *testing.T) operator {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	opKP, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := opKP.PublicKey()
	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := ac.Encode(opKP)
		must(err)
		return kp, pub, token
	}
	_, sysPub, sysJWT := account("SYS", false)
	appKP, appPub, appJWT := account("APP", true)
	oc := jwt.NewOperatorClaims(opPub)
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(opKP)
	must(err)

	userKP, err := nkeys.CreateUser()
	must(err)
	userPub, _ := userKP.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	uc.Name = "sluice"
	userJWT, err := uc.Encode(appKP)
	must(err)
	seed, _ := userKP.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	return operator{
		config: fmt.Sprintf("operator: %q\nsystem_account: %q\nresolver: MEMORY\nresolver_preload: { %s: %q, %s: %q }\n",
			opJWT, sysPub, sysPub, sysJWT, appPub, appJWT),
		creds: writeFile(t, "user.creds", creds),
	}
}

// TestEmbeddedServerTLS: nats { tls { cert, key } } makes the embedded
// server's client listener require TLS: the CLI connects with --tlsca,
// and a client that does not trust the certificate is refused.
func TestEmbeddedServerTLS(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	certs := testenv.TLSCerts(t)
	rt := testenv.Start(t, testenv.Config(t, fmt.Sprintf(`
nats {
  tls {
    cert = %q
    key  = %q
  }
  user "admin" {
    password = "admin-secret"
    role     = "admin"
  }
}
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}
`, certs.ServerCert, certs.ServerKey)), "")
	user := []string{"--server", rt.ClientURL(), "--user", "admin", "--password", "admin-secret"}
	publishOK(t, append(user, "--tlsca", certs.CA)...)
	if code, _, errOut := cli(t, append(user, "nodes")...); code != 2 || !strings.Contains(errOut, "certificate") {
		t.Errorf("a client without the CA: exit %d, %s", code, errOut)
	}
	nc, err := nats.Connect(strings.Replace(rt.ClientURL(), "tls://", "nats://", 1), nats.UserInfo("admin", "admin-secret"), nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Errorf("a plain-text connection was accepted")
	}
}
