package runtime

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/config"
)

// tlsTimeout bounds a TLS handshake on the embedded server's listeners, in
// seconds (the server's default of 2 is short for a loaded machine).
const tlsTimeout = 5

// listenerTLS is the server side of a tls block: the certificate, and when
// ca is set, verification of the peers' certificates against it.
func listenerTLS(t *config.TLS, what string) (*tls.Config, error) {
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: t.Cert, KeyFile: t.Key, CaFile: t.CA, Verify: t.CA != "", Timeout: tlsTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("%s TLS: %w", what, err)
	}
	return c, nil
}

// serverTLS sets the embedded server's client and cluster listeners' TLS
// from the config.
func serverTLS(opts *server.Options, n config.NATS) error {
	if t := n.TLS; t != nil {
		c, err := listenerTLS(t, "client listener")
		if err != nil {
			return err
		}
		opts.TLS, opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = true, c, t.CA != "", tlsTimeout
	}
	if cl := n.Cluster; cl != nil && cl.TLS != nil {
		c, err := listenerTLS(cl.TLS, "cluster")
		if err != nil {
			return err
		}
		// A node dials routes as well as accepting them, and every route
		// must prove it is a node: verify both ways against the same CA,
		// as nats-server does for a cluster's tls block.
		c.ClientAuth = tls.RequireAndVerifyClientCert
		if cl.TLS.CA != "" {
			c.RootCAs = c.ClientCAs
		}
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = c, tlsTimeout
	}
	return nil
}

// clientOptions are the runtime's credentials and TLS on the deployment
// at nats.url.
func clientOptions(n config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case n.Creds != "":
		opts = append(opts, nats.UserCredentials(n.Creds))
	case n.NKey != "":
		o, err := nats.NkeyOptionFromSeed(n.NKey)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey %s: %w", n.NKey, err)
		}
		opts = append(opts, o)
	}
	if t := n.TLS; t != nil {
		if t.CA != "" {
			opts = append(opts, nats.RootCAs(t.CA))
		}
		if t.Cert != "" {
			opts = append(opts, nats.ClientCert(t.Cert, t.Key))
		}
	}
	return opts, nil
}

// redactURLs hides the credentials in a comma-separated list of NATS
// URLs, for the banner, logs, errors and the node records.
func redactURLs(urls string) string {
	list := strings.Split(urls, ",")
	for i, s := range list {
		u, err := url.Parse(s)
		if err != nil || u.User == nil {
			continue
		}
		if _, hasPassword := u.User.Password(); !hasPassword {
			u.User = url.User("xxxxx") // a token
		}
		list[i] = u.Redacted()
	}
	return strings.Join(list, ",")
}
