// Package client talks to a sluice runtime over NATS: it publishes events
// and waits for their outcomes, reads statuses, lists bindings, nodes and
// functions, deploys and rolls back, reloads, pauses and resumes bindings,
// and inspects, replays and purges dead letters. It is pure Go (no cgo, no
// wasm engine), so that any producer can import it; docs/PROTOCOL.md
// describes the subjects, headers and keys it uses, for other languages.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// Errors callers branch on.
var (
	// ErrNoRuntime: no runtime answers the API (none runs, or this
	// connection reaches another server).
	ErrNoRuntime = errors.New("no runtime answers (is `sluice run` running, and are you connected to it?)")
	// ErrNotBound: no queue or topic stores the subject published to.
	ErrNotBound = errors.New("no queue or topic is bound to the subject, so the event was not stored")
	// ErrNoDeadLetters: the binding has no dead-letter stream here.
	ErrNoDeadLetters = errors.New("no such binding has dead letters here")
	// ErrNotFound: no status or dead letter of the event.
	ErrNotFound = errors.New("not found")
)

// Client is a connection to a sluice runtime. It does not own the
// connection: the caller closes it.
type Client struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// New returns a client over nc.
func New(nc *nats.Conn) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Client{nc: nc, js: js}, nil
}

// Conn is the client's connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// call sends a JSON request to a runtime endpoint and decodes the JSON
// answer into out; a micro service error becomes an error.
func (c *Client) call(ctx context.Context, subject string, in, out any, timeout time.Duration) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return ErrNoRuntime
	case err != nil:
		return err
	}
	if e := m.Header.Get(micro.ErrorHeader); e != "" {
		return errors.New(e)
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("bad answer: %w", err)
	}
	return nil
}
