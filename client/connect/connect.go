// Package connect resolves where a sluice runtime is and how to reach it
// the way natscli does: a NATS context (natscli's context files), the
// environment (SLUICE_SERVER, NATS_URL, NATS_CONTEXT) and explicit
// settings that override the context's. It is apart from package client
// because the context reader brings dependencies a producer that dials
// NATS itself does not need.
package connect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/nats-io/jsm.go/natscontext"
	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/sluice-run/sluice/client"
)

// DefaultURL is where a runtime listens unless told otherwise.
const DefaultURL = "nats://127.0.0.1:4222"

// Options say where the runtime is and how to reach it; empty fields take
// the context's settings.
type Options struct {
	// Server is the URL(s); empty means SLUICE_SERVER, then NATS_URL,
	// then the context's, then DefaultURL.
	Server string
	// Context is a natscli context: a name (~/.config/nats/context/NAME.json)
	// or a .json file; empty means NATS_CONTEXT, and without it none
	// (never natscli's selected context, which would silently point at
	// another deployment).
	Context string
	// User and Password; a user's connection takes client.UserInbox(User)
	// as its inbox prefix, the only inboxes the publish role may use.
	User, Password string
	// Creds is a credentials file (JWT and seed), NKey a seed file.
	Creds, NKey string
	// TLSCert and TLSKey are a client certificate, TLSCA verifies the
	// server's.
	TLSCert, TLSKey, TLSCA string
}

// ErrOptions: the options (or the context they name) are not usable.
var ErrOptions = errors.New("bad connection options")

// Resolve returns the URL and the connection options, extra first.
func (o Options) Resolve(extra ...nats.Option) (string, []nats.Option, error) {
	server := o.Server
	for _, env := range []string{"SLUICE_SERVER", "NATS_URL"} {
		if server == "" {
			server = os.Getenv(env)
		}
	}
	name := o.Context
	if name == "" {
		name = os.Getenv("NATS_CONTEXT")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return "", nil, fmt.Errorf("%w: a TLS certificate and its key go together", ErrOptions)
	}
	overrides := []natscontext.Option{
		natscontext.WithUser(o.User), natscontext.WithPassword(o.Password),
		natscontext.WithCreds(o.Creds), natscontext.WithNKey(o.NKey),
		natscontext.WithCertificate(o.TLSCert), natscontext.WithKey(o.TLSKey), natscontext.WithCA(o.TLSCA),
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
			overrides = append(overrides, natscontext.WithServerURL(DefaultURL))
		}
		nctx, err = natscontext.New("", false, overrides...)
	case strings.ContainsRune(name, os.PathSeparator) || strings.HasSuffix(name, ".json"):
		nctx, err = natscontext.NewFromFile(name, overrides...)
	default:
		nctx, err = natscontext.New(name, true, overrides...)
	}
	if err != nil {
		return "", nil, fmt.Errorf("%w: NATS context %q: %w", ErrOptions, name, err)
	}
	if o.User != "" {
		extra = append(extra, nats.UserInfo(o.User, o.Password), nats.CustomInboxPrefix(client.UserInbox(o.User)))
	}
	opts, err := nctx.NATSOptions(extra...)
	if err != nil {
		return "", nil, fmt.Errorf("%w: NATS context %q: %w", ErrOptions, name, err)
	}
	return nctx.ServerURL(), opts, nil
}

// Dial connects as o says (Resolve). Its errors say what to change: the
// credentials the server wants, or where the runtime is.
func (o Options) Dial(extra ...nats.Option) (*nats.Conn, error) {
	server, opts, err := o.Resolve(extra...)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(server, opts...)
	switch {
	case err == nil:
		return nc, nil
	case errors.Is(err, nats.ErrAuthorization) && o.User == "":
		return nil, fmt.Errorf("connect to %s: the server needs credentials: pass --user and --password (or set SLUICE_USER and SLUICE_PASSWORD), --creds, --nkey, or a --context that has them", server)
	case errors.Is(err, nats.ErrAuthorization):
		return nil, fmt.Errorf("connect to %s as %s: authorization failed: check --user and --password (SLUICE_USER, SLUICE_PASSWORD)", server, o.User)
	}
	return nil, fmt.Errorf("connect to %s: %w (is `sluice run` running? set --server, SLUICE_SERVER, NATS_URL or --context)", server, err)
}

// Denials records the first permissions violation the server reports on
// a connection, and cancels the context Watch returned when it does: a
// request the server refused is never answered, so a command waiting for
// the answer stops at once instead.
type Denials struct {
	mu     sync.Mutex
	first  error
	cancel context.CancelCauseFunc
}

// Watch returns ctx, canceled at the first denial.
func (d *Denials) Watch(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	d.mu.Lock()
	d.cancel = cancel
	d.mu.Unlock()
	return ctx
}

// Option makes a connection report its denials to d.
func (d *Denials) Option() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if !errors.Is(err, nats.ErrPermissionViolation) {
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.first == nil {
			d.first = err
		}
		if d.cancel != nil {
			d.cancel(err)
		}
	})
}

// Err is the first denial, or nil.
func (d *Denials) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.first
}

// AddFlags adds natscli's connection flags to f, and sluice's --user and
// --password (defaults from SLUICE_USER and SLUICE_PASSWORD), setting o.
func (o *Options) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Server, "server", "", "NATS URL(s) of the runtime (env SLUICE_SERVER, then NATS_URL; default the context's, else "+DefaultURL+")")
	f.StringVar(&o.Context, "context", "", "natscli context: a name (~/.config/nats/context/NAME.json) or a .json file (env NATS_CONTEXT)")
	f.StringVar(&o.Creds, "creds", "", "user credentials file (JWT and seed)")
	f.StringVar(&o.NKey, "nkey", "", "user NKEY seed file")
	f.StringVar(&o.TLSCert, "tlscert", "", "TLS client certificate file")
	f.StringVar(&o.TLSKey, "tlskey", "", "TLS client private key file")
	f.StringVar(&o.TLSCA, "tlsca", "", "CA file verifying the server's TLS certificate")
	f.StringVar(&o.User, "user", os.Getenv("SLUICE_USER"), "user name on the runtime's NATS server (env SLUICE_USER)")
	f.StringVar(&o.Password, "password", os.Getenv("SLUICE_PASSWORD"), "password of --user (env SLUICE_PASSWORD)")
}
