package config

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// decodeCluster decodes the cluster block of the nats block:
//
//	cluster {
//	  name   = "sluice"
//	  listen = "10.0.0.1:6222"
//	  routes = ["nats://10.0.0.1:6222", "nats://10.0.0.2:6222", "nats://10.0.0.3:6222"]
//	  user   = "route"
//	  password_env = "SLUICE_ROUTE_PASSWORD"
//	}
func (d *decoder) decodeCluster(c *hcl.BodyContent) *Cluster {
	blocks := c.Blocks.ByType()["cluster"]
	b := d.atMostOne(blocks, " in the nats block")
	if b == nil {
		return nil
	}
	if a := c.Attributes["url"]; a != nil {
		d.errorf(b.DefRange, "Cluster with an external server",
			"A cluster block makes the embedded NATS servers of several nodes form a cluster, but url (at %s) says this node uses an existing NATS deployment instead. Remove one of them.", a.Expr.Range())
		return nil
	}
	cc := d.content(b.Body, clusterSchema)
	cl := &Cluster{}
	if a := cc.Attributes["name"]; a != nil {
		if s, ok := d.str(a); ok && d.nodeName(a, s) {
			cl.Name = s
		}
	}
	if a := cc.Attributes["listen"]; a != nil {
		d.clusterListen = a.Expr.Range()
		if s, ok := d.str(a); ok && d.hostPort(a, s, -1) {
			cl.Listen = s
		}
	}
	if tb := d.atMostOne(cc.Blocks.ByType()["tls"], " in the cluster block"); tb != nil {
		cl.TLS = d.decodeTLS(tb, true)
	}
	if a := cc.Attributes["routes"]; a != nil {
		routes, ranges, ok := d.list(a)
		if ok {
			for i, r := range routes {
				if d.routeURL(ranges[i], a, r) {
					cl.Routes = append(cl.Routes, r)
				}
			}
		}
	}
	if a := cc.Attributes["user"]; a != nil {
		if s, ok := d.str(a); ok {
			if s == "" {
				d.errorf(a.Expr.Range(), "Empty user", "The cluster's route user is empty.")
			}
			cl.User = s
		}
	}
	pw, env := cc.Attributes["password"], cc.Attributes["password_env"]
	switch {
	case cl.User != "" && pw == nil && env == nil:
		d.errorf(cc.Attributes["user"].NameRange, "Missing password",
			`The cluster's route user needs a password: password = "..." or password_env = "NAME_OF_AN_ENVIRONMENT_VARIABLE".`)
	case cl.User == "" && (pw != nil || env != nil):
		d.errorf(b.DefRange, "Missing user", `A cluster password needs a user: user = "...".`)
	case pw != nil || env != nil:
		cl.Password, cl.PasswordEnv, _ = d.password(pw, env, "cluster's route user")
	}
	return cl
}

// IsLoopback reports whether a listen address's host only accepts local
// connections: "localhost" or a loopback IP ("" and unspecified addresses
// listen everywhere).
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// routeURL checks one route of a cluster block.
func (d *decoder) routeURL(rng hcl.Range, a *hcl.Attribute, s string) bool {
	u, err := url.Parse(s)
	ok := err == nil && (u.Scheme == "nats" || u.Scheme == "nats-route") && u.Hostname() != "" &&
		u.Port() != "" && u.Path == "" && u.RawQuery == "" && u.User == nil
	if ok {
		p, err := strconv.Atoi(u.Port())
		ok = err == nil && p >= 1 && p <= 65535
	}
	if !ok {
		d.errorf(rng, "Invalid route",
			`Each of %s must be another node's cluster address, such as "nats://10.0.0.2:6222" (credentials go in the cluster block's user and password, not in the URL); %q is not one.`, a.Name, s)
	}
	return ok
}

var nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// nodeName checks a node or cluster name: NATS uses it as a server name,
// and sluice as a KV key.
func (d *decoder) nodeName(a *hcl.Attribute, s string) bool {
	if !nodeNamePattern.MatchString(s) {
		d.errorf(a.Expr.Range(), "Invalid name",
			"%s must be 1 to 64 letters, digits, '-' or '_'; got %q.", a.Name, s)
		return false
	}
	return true
}
