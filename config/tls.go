package config

import (
	"errors"
	"io/fs"
	"net"
	"os"

	"github.com/hashicorp/hcl/v2"
)

// TLS is a tls block: PEM files, absolute paths.
//
// On the embedded server's client listener (nats { tls { … } }) Cert and
// Key are the server's certificate and required; CA, when set, makes the
// server require client certificates signed by it. In client mode (nats {
// url = … }) CA verifies the server and Cert and Key, both or neither, are
// the client's certificate. On cluster routes (cluster { tls { … } }) Cert
// and Key are required and CA verifies the other nodes.
type TLS struct {
	Cert, Key, CA string
}

var tlsSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "cert"}, {Name: "key"}, {Name: "ca"}},
}

// decodeTransport decodes the nats block's connection security: the tls
// block, and creds, nkey and insecure. It runs after the rest of the block,
// whose listen, url and users it checks against.
func (d *decoder) decodeTransport(c *hcl.BodyContent, n *NATS) {
	url := c.Attributes["url"]
	for _, name := range []string{"creds", "nkey"} {
		a := c.Attributes[name]
		if a == nil {
			continue
		}
		if url == nil {
			d.errorf(a.NameRange, "Credentials without an external server",
				"%s authenticates this node to an existing NATS deployment (nats.url), which is not set: the embedded server's identities are its user blocks.", name)
			continue
		}
		if p, ok := d.existingFile(a); ok {
			if name == "creds" {
				n.Creds = p
			} else {
				n.NKey = p
			}
		}
	}
	if n.Creds != "" && n.NKey != "" {
		d.errorf(c.Attributes["nkey"].NameRange, "Conflicting credentials", "Set one of creds (at %s) and nkey.", c.Attributes["creds"].NameRange)
	}
	if b := d.atMostOne(c.Blocks.ByType()["tls"], " in the nats block"); b != nil {
		n.TLS = d.decodeTLS(b, url == nil)
	}
	if a := c.Attributes["insecure"]; a != nil {
		n.Insecure, _ = d.boolean(a)
	}
	if n.Insecure {
		return
	}
	if a := c.Attributes["listen"]; a != nil && url == nil && n.TLS == nil && len(d.users) > 0 && n.Listen != "" && !loopbackAddr(n.Listen) {
		d.errorf(a.Expr.Range(), "Passwords in clear",
			"The embedded server listens on %s, which is not a loopback address, and its users' passwords would cross the network unencrypted. "+
				`Add a tls block to the nats block (tls { cert = "server.pem"  key = "server-key.pem" }), listen on 127.0.0.1, or set insecure = true to accept it.`, n.Listen)
	}
	if cl := n.Cluster; cl != nil && cl.TLS == nil && cl.User != "" && cl.Listen != "" && !loopbackAddr(cl.Listen) {
		d.errorf(d.clusterListen, "Route password in clear",
			"The cluster listens on %s, which is not a loopback address, and the route password would cross the network unencrypted. "+
				`Add a tls block to the cluster block (tls { cert = "node.pem"  key = "node-key.pem"  ca = "ca.pem" }), or set insecure = true in the nats block to accept it.`, cl.Listen)
	}
}

// decodeTLS decodes a tls block; needCert says whether cert and key are
// required (a listener's), else they go together or not at all (a
// client's).
func (d *decoder) decodeTLS(b *hcl.Block, needCert bool) *TLS {
	c := d.content(b.Body, tlsSchema)
	t := &TLS{}
	ok := true
	for _, f := range []struct {
		name string
		dst  *string
	}{{"cert", &t.Cert}, {"key", &t.Key}, {"ca", &t.CA}} {
		if a := c.Attributes[f.name]; a != nil {
			p, fok := d.existingFile(a)
			*f.dst, ok = p, ok && fok
		}
	}
	switch {
	case !ok:
		return nil
	case needCert && (c.Attributes["cert"] == nil || c.Attributes["key"] == nil):
		d.errorf(b.DefRange, "Missing certificate", "A listener's tls block needs cert and key (PEM files); ca is optional.")
		return nil
	case (c.Attributes["cert"] == nil) != (c.Attributes["key"] == nil):
		d.errorf(b.DefRange, "Missing certificate", "cert and key go together: set both, or neither to verify the server with ca only.")
		return nil
	}
	return t
}

// existingFile decodes a path attribute naming a file that exists.
func (d *decoder) existingFile(a *hcl.Attribute) (string, bool) {
	p, ok := d.path(a)
	if !ok {
		return "", false
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		why := "it is a directory"
		if errors.Is(err, fs.ErrNotExist) {
			why = "it does not exist"
		} else if err != nil {
			why = err.Error()
		}
		d.errorf(a.Expr.Range(), "Unreadable file", "%s names %s, but %s.", a.Name, p, why)
		return "", false
	}
	return p, true
}

// loopbackAddr reports whether the host of a "host:port" listen address
// only accepts local connections.
func loopbackAddr(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	return err == nil && IsLoopback(host)
}
