package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

// authFlags are the CLI's credentials (--user, --password) and what the
// server refused with them.
type authFlags struct {
	user, password string

	mu     sync.Mutex
	denied error // the first permissions violation the server reported
	cancel context.CancelCauseFunc
}

func (a *authFlags) register(root *cobra.Command) {
	root.PersistentFlags().StringVar(&a.user, "user", os.Getenv("SLUICE_USER"), "user name on the runtime's NATS server (env SLUICE_USER)")
	root.PersistentFlags().StringVar(&a.password, "password", os.Getenv("SLUICE_PASSWORD"), "password of --user (env SLUICE_PASSWORD)")
}

// watch returns ctx canceled when the server refuses a request for lack of
// permission, so a command stops at once instead of waiting for a reply
// that will not come.
func (a *authFlags) watch(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	a.mu.Lock()
	a.cancel = cancel
	a.mu.Unlock()
	return ctx
}

func (a *authFlags) options() []nats.Option {
	opts := []nats.Option{nats.Name("sluice cli"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if !errors.Is(err, nats.ErrPermissionViolation) {
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.denied == nil {
			a.denied = err
		}
		if a.cancel != nil {
			a.cancel(err)
		}
	})}
	return opts
}

// connectError explains a failed connection.
func (a *authFlags) connectError(server string, err error) error {
	if errors.Is(err, nats.ErrAuthorization) {
		if a.user == "" {
			return usage(fmt.Errorf("connect to %s: the server needs credentials: pass --user and --password (or set SLUICE_USER and SLUICE_PASSWORD), --creds, --nkey, or a --context that has them", server))
		}
		return usage(fmt.Errorf("connect to %s as %s: authorization failed: check --user and --password (SLUICE_USER, SLUICE_PASSWORD)", server, a.user))
	}
	return nil
}

// explain replaces a command's error by the permission the server denied,
// if it denied one: the command needs another user (exit 2).
func (a *authFlags) explain(err error) error {
	a.mu.Lock()
	denied := a.denied
	a.mu.Unlock()
	if err == nil || denied == nil {
		return err
	}
	who := "this user"
	if a.user != "" {
		who = "user " + a.user
	}
	return usage(fmt.Errorf("permission denied: %s may not do this (%v); it needs a user with role \"admin\"", who, denied))
}
