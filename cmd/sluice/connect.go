package main

import (
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client/connect"
)

// connFlags say where the runtime is and how to reach it, the way natscli
// does (see package client/connect).
type connFlags struct{ connect.Options }

func (c *connFlags) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&c.Server, "server", "", "NATS URL(s) of the runtime (env SLUICE_SERVER, then NATS_URL; default the context's, else "+connect.DefaultURL+")")
	f.StringVar(&c.Context, "context", "", "natscli context: a name (~/.config/nats/context/NAME.json) or a .json file (env NATS_CONTEXT)")
	f.StringVar(&c.Creds, "creds", "", "user credentials file (JWT and seed)")
	f.StringVar(&c.NKey, "nkey", "", "user NKEY seed file")
	f.StringVar(&c.TLSCert, "tlscert", "", "TLS client certificate file")
	f.StringVar(&c.TLSKey, "tlskey", "", "TLS client private key file")
	f.StringVar(&c.TLSCA, "tlsca", "", "CA file verifying the server's TLS certificate")
}

// resolve is the URL and the options of the connection: --user and
// --password, the other flags, the environment and the context.
func (c *connFlags) resolve(a *authFlags) (string, []nats.Option, error) {
	o := c.Options
	o.User, o.Password = a.user, a.password
	url, opts, err := o.Resolve(a.options()...)
	if err != nil {
		return "", nil, usage(err)
	}
	return url, opts, nil
}
