package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
)

// nodeName is this node's name: --name, then nats.name, then the host name.
func nodeName(opts Options, cfg *config.Config) string {
	if opts.Name != "" {
		return opts.Name
	}
	if cfg.NATS.Name != "" {
		return cfg.NATS.Name
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "sluice"
}

// replicas is how many copies of every stream and bucket sluice asks for.
func (r *Runtime) replicas() int { return max(1, r.cfg.NATS.Replicas) }

// clusterOptions makes the embedded server a member of the cluster the
// config describes. Routes carry the cluster's credentials; a route to this
// node's own address is harmless (the server recognises and drops it), so
// every node may list all of them.
func clusterOptions(cl *config.Cluster, listen string) (server.ClusterOpts, []*url.URL, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return server.ClusterOpts{}, nil, fmt.Errorf("cluster listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return server.ClusterOpts{}, nil, fmt.Errorf("cluster listen address %q: bad port", listen)
	}
	if cl.User == "" && !config.IsLoopback(host) {
		return server.ClusterOpts{}, nil, fmt.Errorf("refusing to accept cluster routes on %s without authentication: it is not a loopback address, so anyone who can reach it could join the cluster and read every event. "+
			`Set user and password (or password_env) in the nats block's cluster block, the same on every node, or listen on 127.0.0.1`, listen)
	}
	opts := server.ClusterOpts{Name: cl.Name, Host: host, Port: port, Username: cl.User, Password: cl.Password}
	var routes []*url.URL
	for _, r := range cl.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return server.ClusterOpts{}, nil, fmt.Errorf("route %q: %w", r, err)
		}
		if cl.User != "" {
			u.User = url.UserPassword(cl.User, cl.Password)
		}
		routes = append(routes, u)
	}
	return opts, routes, nil
}

// layoutWait bounds how long Start waits for JetStream to accept the
// layout: a cluster's nodes start one by one, and streams with R replicas
// can only be placed once R of them are up.
const layoutWait = 3 * time.Minute

// setupRequestTimeout bounds each JetStream request of a start's steps.
// JetStream leaves a request unanswered while the raft group that should
// answer it has no leader: a node was killed, and the groups it led elect
// another after 4–9 s (nats-server 2.15's election timeout). A retry is
// answered as soon as one is elected, so a long wait only delays it:
// with one 30 s context per step, 4 of 9 restarts of a cluster node took
// 30–36 s. Every step is idempotent, so a request cut short is only sent
// again.
const setupRequestTimeout = 2 * time.Second

// moduleTryTimeout bounds one try of a step that moves module bytes, which
// may take long for a large module on a busy disk.
const moduleTryTimeout = 30 * time.Second

// waitJetStream waits until JetStream answers at all: a cluster's meta
// group has a leader once a majority of its servers are up.
func (r *Runtime) waitJetStream(ctx context.Context) error {
	// Only the meta leader answers; after it was killed, the others elect
	// one within 4–9 s. Ask often, so that the answer comes soon after.
	return r.untilReady(ctx, "reach JetStream", time.Second, func(ctx context.Context) error {
		_, err := r.js.AccountInfo(ctx)
		return err
	})
}

// untilReady runs step until it succeeds, retrying while its error says
// that JetStream is not (yet) able to do it: no quorum, not enough peers, a
// leader being elected. Other errors end it at once. Each try has at most
// try; with try 0 it has no deadline of its own, for a step whose every
// request is bounded (see setupRequestTimeout).
func (r *Runtime) untilReady(ctx context.Context, what string, try time.Duration, step func(context.Context) error) error {
	start := time.Now()
	deadline := start.Add(layoutWait)
	var lastLog time.Time
	for tries := 1; ; tries++ {
		err := tryWithin(ctx, try, step)
		if err == nil {
			// A restart's time is the sum of these: the log says where
			// it went.
			r.log.Info("start step", "step", what, "took", time.Since(start).Round(time.Millisecond), "tries", tries)
		}
		if err == nil || !r.transient(err) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: JetStream still not available after %s (are enough nodes of the cluster up for nats.replicas = %d?): %w", what, layoutWait, r.replicas(), err)
		}
		if time.Since(lastLog) > 5*time.Second {
			r.log.Warn("waiting for JetStream", "step", what, "replicas", r.replicas(), "error", err)
			r.probe.setPhase("waiting for JetStream (" + what + ")")
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tryWithin runs step once, for at most d when d > 0.
func tryWithin(ctx context.Context, d time.Duration, step func(context.Context) error) error {
	if d <= 0 {
		return step(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return step(ctx)
}

// transient reports whether err is JetStream saying "not now".
func (r *Runtime) transient(err error) bool {
	if errors.Is(err, errNotStored) {
		// A module another node is about to store; alone, nobody will.
		return r.cfg.NATS.Cluster != nil || r.cfg.NATS.URL != ""
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10008, // JetStream system temporarily unavailable (no meta leader)
			10005, // no suitable peers for placement
			10023, // insufficient resources
			10009, // not the leader
			10006: // cluster not active
			return true
		}
		return apiErr.Code == 503
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrNoResponders) {
		// A clustered server answers so until its JetStream is up; a
		// single server that says so has no JetStream at all.
		return r.cfg.NATS.Cluster != nil
	}
	// A module read from the object store that outlasts its try ends
	// with the pipe's deadline error ("read pipe: i/o timeout"), not the
	// context's.
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse)
}
