package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jsm.go/natscontext"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

// connFlags say where the runtime is and how to reach it, the way natscli
// does: a context (natscli's context files, read by natscontext) and flags
// that override its settings.
type connFlags struct {
	server, context        string
	creds, nkey            string
	tlsCert, tlsKey, tlsCA string
}

func (c *connFlags) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&c.server, "server", "", "NATS URL(s) of the runtime (env SLUICE_SERVER, then NATS_URL; default the context's, else "+defaultAddr+")")
	f.StringVar(&c.context, "context", "", "natscli context: a name (~/.config/nats/context/NAME.json) or a .json file (env NATS_CONTEXT)")
	f.StringVar(&c.creds, "creds", "", "user credentials file (JWT and seed)")
	f.StringVar(&c.nkey, "nkey", "", "user NKEY seed file")
	f.StringVar(&c.tlsCert, "tlscert", "", "TLS client certificate file")
	f.StringVar(&c.tlsKey, "tlskey", "", "TLS client private key file")
	f.StringVar(&c.tlsCA, "tlsca", "", "CA file verifying the server's TLS certificate")
}

// resolve is the URL and the options of the connection. The URL is the
// first set of --server, SLUICE_SERVER, NATS_URL, the context's url and
// the default; the context is --context, else NATS_CONTEXT (never
// natscli's selected context, which would silently point the CLI at
// another deployment); --user, --password, --creds, --nkey and the TLS
// flags override the context's.
func (c *connFlags) resolve(a *authFlags) (string, []nats.Option, error) {
	server := c.server
	for _, env := range []string{"SLUICE_SERVER", "NATS_URL"} {
		if server == "" {
			server = os.Getenv(env)
		}
	}
	name := c.context
	if name == "" {
		name = os.Getenv("NATS_CONTEXT")
	}
	overrides := []natscontext.Option{
		natscontext.WithUser(a.user), natscontext.WithPassword(a.password),
		natscontext.WithCreds(c.creds), natscontext.WithNKey(c.nkey),
		natscontext.WithCertificate(c.tlsCert), natscontext.WithKey(c.tlsKey), natscontext.WithCA(c.tlsCA),
	}
	if server != "" {
		overrides = append(overrides, natscontext.WithServerURL(server))
	}
	var (
		nctx *natscontext.Context
		err  error
	)
	switch {
	case name == "":
		if server == "" {
			overrides = append(overrides, natscontext.WithServerURL(defaultAddr))
		}
		nctx, err = natscontext.New("", false, overrides...)
	case strings.ContainsRune(name, os.PathSeparator) || strings.HasSuffix(name, ".json"):
		nctx, err = natscontext.NewFromFile(name, overrides...)
	default:
		nctx, err = natscontext.New(name, true, overrides...)
	}
	if err != nil {
		return "", nil, usage(fmt.Errorf("NATS context %q: %w", name, err))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return "", nil, usage(fmt.Errorf("--tlscert and --tlskey go together"))
	}
	opts, err := nctx.NATSOptions(a.options()...)
	if err != nil {
		return "", nil, usage(fmt.Errorf("NATS context %q: %w", name, err))
	}
	return nctx.ServerURL(), opts, nil
}
