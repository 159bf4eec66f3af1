package runtime

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/triggers"
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
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	a := &serverAuth{password: hex.EncodeToString(pw)}
	a.users = append(a.users, &server.User{Username: internalUser, Password: a.password})
	for _, u := range cfg.Users {
		su := &server.User{Username: u.Name, Password: u.Password}
		if u.Role == config.RolePublish {
			su.Permissions = publishPermissions(cfg)
		}
		a.users = append(a.users, su)
	}
	return a, nil
}

// publishPermissions are those of the publish role: publish to the
// bindings' subjects (with a JetStream ack), read stream and binding
// information, and read event statuses; not delete or purge messages,
// pause consumers, write object or KV stores, replay dead letters, or
// reach the admin service.
func publishPermissions(cfg *config.Config) *server.Permissions {
	allow := []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.*",
		"$JS.API.STREAM.NAMES",
		"$JS.API.STREAM.LIST",
		"$JS.API.CONSUMER.LIST.*",
		"$JS.API.CONSUMER.NAMES.*",
		"$JS.API.CONSUMER.INFO.*.*",
	}
	// Reading the status bucket (get and watch) and the runtime's
	// recorded config (for `sluice plan`).
	for _, bucket := range []string{triggers.StatusBucket, StateBucket, NodesBucket} {
		stream := "KV_" + bucket
		allow = append(allow,
			"$JS.API.DIRECT.GET."+stream, "$JS.API.DIRECT.GET."+stream+".>",
			"$JS.API.STREAM.MSG.GET."+stream,
			"$JS.API.CONSUMER.CREATE."+stream, "$JS.API.CONSUMER.CREATE."+stream+".>",
			"$JS.API.CONSUMER.DELETE."+stream+".*",
			"$JS.FC."+stream+".>",
		)
	}
	for _, q := range cfg.Queues {
		allow = append(allow, q.Subject)
	}
	for _, t := range cfg.Topics {
		allow = append(allow, t.Subject)
	}
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: allow,
			Deny: []string{
				"$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.CONSUMER.PAUSE.>",
				"$O.>", "$KV.>", "sluice.replay.>", "$SRV.>", "sluice.admin.>",
			},
		},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// option is the runtime's own credentials on the embedded server.
func (a *serverAuth) option() nats.Option {
	if a.password == "" {
		return func(*nats.Options) error { return nil }
	}
	return nats.UserInfo(internalUser, a.password)
}
