package runtime

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
)

// internalUser is the runtime's own identity on the embedded server when
// users are configured: an admin with a random password made at start and
// never shown. '$' cannot start a configured user name, so it never clashes.
const internalUser = "$sluice-runtime"

// serverAuth is how the embedded server authenticates clients.
type serverAuth struct {
	users []*server.User
	// password of internalUser; "" when there is no authentication.
	password string
}

// newServerAuth builds the embedded server's users from the config. It
// refuses to serve a non-loopback address without users: anyone who can
// reach it could publish, purge dead letters and deploy functions.
func newServerAuth(cfg *config.Config, listen string) (*serverAuth, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", listen, err)
	}
	if len(cfg.Users) == 0 {
		if !config.IsLoopback(host) {
			return nil, fmt.Errorf("refusing to listen on %s without authentication: it is not a loopback address, so anyone who can reach it could publish events, purge dead letters and deploy functions. "+
				`Add users to the nats block of the config, such as user "admin" { password_env = "SLUICE_ADMIN_PASSWORD"  role = "admin" } (and role = "publish" for producers), or listen on 127.0.0.1`, listen)
		}
		return &serverAuth{}, nil
	}
	if !config.IsLoopback(host) && cfg.NATS.TLS == nil && !cfg.NATS.Insecure {
		return nil, fmt.Errorf("refusing to listen on %s without TLS: it is not a loopback address, and the users' passwords would cross the network unencrypted. "+
			`Add a tls block to the nats block (tls { cert = "server.pem"  key = "server-key.pem" }), listen on 127.0.0.1, or set insecure = true in the nats block`, listen)
	}
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	a := &serverAuth{password: hex.EncodeToString(pw)}
	a.users = a.usersOf(cfg)
	return a, nil
}

// usersOf is the server's users for cfg: the runtime's own, then the
// config's, publish-role users limited to cfg's subjects.
func (a *serverAuth) usersOf(cfg *config.Config) []*server.User {
	users := []*server.User{{Username: internalUser, Password: a.password}}
	for _, u := range cfg.Users {
		su := &server.User{Username: u.Name, Password: u.Password}
		if u.Role == config.RolePublish {
			su.Permissions = publishPermissions(cfg, u.Name)
		}
		users = append(users, su)
	}
	return users
}

// reloadUsers gives the embedded server the users of cfg, so that a queue
// or topic added by a reload is publishable by the publish role at once,
// and a user added, removed or given a new password counts from now on.
// Connected clients keep the permissions they connected with.
func (r *Runtime) reloadUsers(cfg *config.Config) error {
	if r.srv == nil || r.auth == nil || r.auth.password == "" {
		return nil
	}
	opts := r.srvOpts.Clone()
	opts.Users = r.auth.usersOf(cfg)
	// Ports asked as "any free one" are the ones the server took.
	if a, ok := r.srv.Addr().(*net.TCPAddr); ok {
		opts.Port = a.Port
	}
	if a := r.srv.ClusterAddr(); a != nil {
		opts.Cluster.Port = a.Port
	}
	if err := r.srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("embedded server users: %w", err)
	}
	r.srvOpts = opts
	return nil
}

// publishPermissions are those of the publish role for user: publish
// events to the bindings' subjects (JetStream's acknowledgement comes back
// to the client's inbox), ask the runtime for event statuses
// (StatusSubject), and receive on its own inboxes, UserInbox(user) (publish
// acknowledgements, status answers, Sluice-Reply outcomes). Nothing else:
// no JetStream API at all (no stream or consumer listing, no message or
// key-value read, no consumer creation, whose delivery subject permissions
// cannot check), no key-value or object store subject, no admin, replay or
// micro-service subject, no forged guest log line
// (client.LogSubjectPrefix), no publish to inboxes (answering others'
// requests), and no other client's inbox: "_INBOX.>" would show the
// answers to every admin's and producer's requests, payloads and values
// included. The runtime's own traffic uses another prefix still
// (RuntimeInboxPrefix). The deny list holds even when a binding's subject
// is a wide wildcard.
func publishPermissions(cfg *config.Config, user string) *server.Permissions {
	allow := []string{StatusSubject}
	deny := []string{
		"$JS.>", "$KV.>", "$O.>", "$SRV.>", "$SYS.>", "$JSC.>", "$NRG.>",
		"_INBOX.>", RuntimeInboxPrefix + ".>",
		AdminSubjectPrefix + ".>", "sluice.replay.>", "sluice.dlq.>", client.LogSubjectPrefix + ".>",
	}
	for _, b := range cfg.Bindings() {
		deny = append(deny, b.DeadLetter, client.DeadLetterSubjects(b.DeadLetter))
	}
	for _, q := range cfg.Queues {
		allow = append(allow, q.Subject)
	}
	for _, t := range cfg.Topics {
		allow = append(allow, t.Subject)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: allow, Deny: deny},
		Subscribe: &server.SubjectPermission{Allow: []string{UserInbox(user) + ".>"}},
	}
}

// option is the runtime's own credentials on the embedded server.
func (a *serverAuth) option() nats.Option {
	if a.password == "" {
		return func(*nats.Options) error { return nil }
	}
	return nats.UserInfo(internalUser, a.password)
}

// UserInbox is the inbox prefix of a configured user's connections
// ("_INBOX.<user>"): a publish-role user may subscribe below it only, so
// its clients set it as their inbox prefix (nats.CustomInboxPrefix; the
// sluice CLI does so for --user).
func UserInbox(user string) string { return client.UserInbox(user) }
