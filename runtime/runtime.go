// Package runtime is the sluice server: it starts the embedded NATS server
// with JetStream (or connects to an existing one), lays out the streams and
// consumers the config needs, loads the functions, and runs the bindings
// until it is shut down.
package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/runtime/metrics"
	"github.com/sluice-run/sluice/triggers"
)

// Options configures a Runtime. Zero values take the config's settings.
type Options struct {
	Config *config.Config
	// DataDir, when set, holds JetStream's files (DataDir/jetstream) and the
	// compile cache (DataDir/cache), overriding nats.store_dir.
	DataDir string
	// Listen, when set, overrides nats.listen ("host:port"; port -1 picks a
	// free one).
	Listen string
	// CacheDir, when set, overrides where compiled modules are cached.
	CacheDir string
	Logger   *slog.Logger
	// DrainTimeout bounds the wait for in-flight invocations at shutdown.
	DrainTimeout time.Duration
	// MetricsListen, when set, overrides metrics.listen ("host:port"; port
	// 0 picks a free one, see MetricsAddr), and serves /metrics, /healthz
	// and /readyz even when the config disables metrics.
	MetricsListen string
	// BeforeEnsure is a test hook: Start calls it with the runtime once
	// its HTTP endpoints serve, the broker is connected and the functions
	// are loaded, before the streams and consumers are laid out, and waits
	// for it to return.
	BeforeEnsure func(*Runtime)
	// WatchConfig reloads the config when its file (Config.Path) changes;
	// see Reload.
	WatchConfig bool
	// Name, when set, overrides nats.name: this node's name.
	Name string
	// ClusterListen, when set, overrides nats.cluster.listen.
	ClusterListen string
}

// Runtime is a started sluice server.
type Runtime struct {
	admin *admin
	api   micro.Service
	opts  Options
	cfg   *config.Config
	// cacheDir is the compile cache, which also remembers module files'
	// versions by their stamps (functions.FileVersion).
	cacheDir string
	log      *slog.Logger
	srv      *server.Server
	// srvOpts and auth are what srv was started with (for reloadUsers).
	srvOpts   *server.Options
	auth      *serverAuth
	nc        *nats.Conn
	js        jetstream.JetStream
	fns       *functions.Set
	storeDir  string
	clientURL string
	node      string

	metrics  *metrics.Metrics
	probe    probe
	httpSrv  *http.Server
	httpLn   net.Listener
	httpDone chan struct{}

	cancel    context.CancelFunc
	done      chan struct{}
	announced chan struct{} // closed when announce returned
	runErr    error
	closeOnce sync.Once
	// lost is set when the server closed the runtime's connection for
	// good while it ran.
	lostMu   sync.Mutex
	lost     error
	stopping bool

	reload reloader
}

// Start brings the runtime up: broker, streams and consumers, functions,
// bindings. It returns once events are being consumed, or with an error and
// nothing left running.
func Start(ctx context.Context, opts Options) (_ *Runtime, err error) {
	if opts.Config == nil {
		return nil, errors.New("runtime: no config")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runtime{opts: opts, cfg: opts.Config, log: opts.Logger, done: make(chan struct{}), metrics: metrics.New()}
	r.node = nodeName(opts, r.cfg)
	r.log = r.log.With("node", r.node)
	defer func() {
		if err != nil {
			r.closeResources()
		}
	}()
	r.probe.setPhase("building functions")
	if err := r.serveEndpoints(); err != nil {
		return nil, err
	}

	// Functions first: a bad module must stop the start before any
	// stream or consumer is touched.
	if err := BuildSources(ctx, r.cfg.Functions, r.log); err != nil {
		return nil, err
	}
	storeDir, cacheDir := r.cfg.NATS.StoreDir, filepath.Join(filepath.Dir(r.cfg.NATS.StoreDir), "cache")
	if opts.DataDir != "" {
		storeDir, cacheDir = filepath.Join(opts.DataDir, "jetstream"), filepath.Join(opts.DataDir, "cache")
	}
	if opts.CacheDir != "" {
		cacheDir = opts.CacheDir
	}
	r.cacheDir = cacheDir
	r.storeDir = storeDir
	r.probe.setPhase("connecting to NATS")
	connectStart := time.Now()
	if err := r.connect(); err != nil {
		return nil, err
	}
	r.log.Info("start step", "step", "connect to NATS", "took", time.Since(connectStart).Round(time.Millisecond), "tries", 1)
	r.probe.mu.Lock()
	r.probe.nc, r.probe.js, r.probe.bindings = r.nc, r.js, r.cfg.Bindings()
	r.probe.phase = "loading functions"
	r.probe.mu.Unlock()
	if err := r.waitJetStream(ctx); err != nil {
		return nil, err
	}
	var loadFns []config.Function
	var stored map[string][]byte
	if err := r.untilReady(ctx, "open the module store", moduleTryTimeout, func(ctx context.Context) (err error) {
		loadFns, stored, err = r.resolveModules(ctx, filepath.Join(filepath.Dir(storeDir), "modules"))
		return err
	}); err != nil {
		return nil, err
	}
	pub := triggers.NewPublisher(r.nc, r.js)
	r.fns, err = functions.Load(loadFns, functions.Options{
		CacheDir: cacheDir, Publisher: pub, Logger: r.log, JS: r.js, Observer: r.metrics,
		Replicas: r.replicas(), Modules: stored,
		Logs: &logPublisher{nc: r.nc, node: r.node, dropped: r.metrics.LogLineDropped, interested: subscriptionInterest(r.srv)},
	})
	if err != nil {
		return nil, err
	}
	if err := r.admin.keepModules(loadFns, stored); err != nil {
		return nil, err
	}
	if err := r.untilReady(ctx, "record function versions", moduleTryTimeout, r.recordModules); err != nil {
		return nil, fmt.Errorf("record function versions: %w", err)
	}
	r.probe.setPhase("laying out streams and consumers")
	if opts.BeforeEnsure != nil {
		opts.BeforeEnsure(r)
	}
	// The layout is dozens of requests for a large config: bound each
	// one rather than the step.
	setupJS, err := jetstream.New(r.nc, jetstream.WithDefaultTimeout(setupRequestTimeout))
	if err != nil {
		return nil, err
	}
	if err := r.untilReady(ctx, "lay out streams and consumers", 0, func(ctx context.Context) error {
		return triggers.Ensure(ctx, setupJS, r.cfg)
	}); err != nil {
		return nil, err
	}
	r.probe.setPhase("starting the bindings")
	var runner *triggers.Runner
	// The status bucket, then two consumers per binding: each lookup takes
	// milliseconds when answered.
	lookupTry := setupRequestTimeout + time.Duration(len(r.cfg.Bindings()))*300*time.Millisecond
	if err := r.untilReady(ctx, "look up the consumers", lookupTry, func(ctx context.Context) (err error) {
		runner, err = triggers.NewRunner(ctx, r.cfg, triggers.Options{
			JS: r.js, Publisher: pub, Invoker: r.fns, Logger: r.log, DrainTimeout: opts.DrainTimeout,
			Observer: r.metrics, Node: r.node,
			// Durable storage (the default, and assumed of an external
			// server) gets confirmed acks: see triggers.Options.
			SyncAcks: r.cfg.NATS.SyncInterval == 0,
		})
		return err
	}); err != nil {
		return nil, err
	}
	if err := r.untilReady(ctx, "record the effective config", setupRequestTimeout, r.publishConfig); err != nil {
		return nil, err
	}
	r.metrics.Watch(r.js, r.cfg)
	r.metrics.WatchNode(r.node, runner.Loads)
	var nodes jetstream.KeyValue
	if err := r.untilReady(ctx, "open the nodes bucket", setupRequestTimeout, func(ctx context.Context) (err error) {
		nodes, err = r.nodesBucket(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	if err := r.startAdmin(); err != nil {
		return nil, err
	}
	if err := r.untilReady(ctx, "serve the status API", setupRequestTimeout, r.startAPI); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.lostMu.Lock()
	r.cancel = cancel
	r.lostMu.Unlock()
	r.initReload(runCtx, runner)
	go func() {
		defer close(r.done)
		r.runErr = runner.Run(runCtx)
	}()
	r.announced = make(chan struct{})
	go func() {
		defer close(r.announced)
		r.announce(nodes, runner, r.done)
	}()
	if opts.WatchConfig {
		if err := r.startWatch(); err != nil {
			r.log.Warn("config file not watched (reload with SIGHUP)", "config", r.cfg.Path, "error", err)
		}
	}
	r.probe.setPhase("")
	return r, nil
}

// BuildSources builds the module of every function that names a Go guest
// source, when the module is missing or older than the source.
func BuildSources(ctx context.Context, fns []config.Function, log *slog.Logger) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, f := range fns {
		if f.Source == "" {
			continue
		}
		if _, err := os.Stat(f.Source); errors.Is(err, fs.ErrNotExist) {
			// A node of a cluster may run without the sources: the
			// module then comes from the module store.
			log.Warn("function source directory missing; not building", "function", f.Name, "source", f.Source)
			continue
		}
		g.Go(func() error {
			built, err := guestbuild.Build(ctx, f.Source, f.Module)
			if err != nil {
				return fmt.Errorf("function %s: build %s: %w", f.Name, f.Source, err)
			}
			if built {
				log.Info("built function", "function", f.Name, "module", f.Module)
			}
			return nil
		})
	}
	return g.Wait()
}

// connOptions are the options of the runtime's own connection. It
// reconnects forever after a disconnect. Its inbox prefix is private
// ("_SLUICE_INBOX.<random>"), so that the publish role's "_INBOX.>"
// subscription sees none of the runtime's requests and their answers
// (message fetches, key-value reads). A server's -ERR ends a nats.go
// connection for good (no reconnect); sluice validates and bounds every
// subject it sends so that it does not happen, and when it does all the
// same the runtime stops with an error rather than run without a
// connection: /healthz answers 503 and `sluice run` exits 1.
func (r *Runtime) connOptions() []nats.Option {
	tag := make([]byte, 8)
	_, _ = rand.Read(tag)
	return []nats.Option{
		nats.Name("sluice runtime"),
		nats.MaxReconnects(-1),
		nats.CustomInboxPrefix(RuntimeInboxPrefix + "." + hex.EncodeToString(tag)),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				r.log.Warn("NATS connection lost; reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			r.log.Info("NATS connection restored", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			r.log.Warn("NATS asynchronous error", "subscription", subject, "error", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			r.lostMu.Lock()
			defer r.lostMu.Unlock()
			if r.noteLostLocked(nc) {
				r.log.Error("NATS connection closed for good; stopping", "error", nc.LastError())
				if r.cancel != nil {
					r.cancel()
				}
			}
		}),
	}
}

// noteLostLocked records why nc was closed, unless the runtime closed it
// itself, and reports whether it did; r.lostMu must be held.
func (r *Runtime) noteLostLocked(nc *nats.Conn) bool {
	if r.stopping || r.lost != nil || nc == nil || !nc.IsClosed() || nc.LastError() == nil {
		return false
	}
	r.lost = fmt.Errorf("the NATS server closed the runtime's connection: %w", nc.LastError())
	return true
}

// RuntimeInboxPrefix starts the inbox of every runtime connection; no
// client role may subscribe to it (see ReservedSubject in config).
const RuntimeInboxPrefix = "_SLUICE_INBOX"

// connect starts the embedded server (or dials nats.url) and opens the
// runtime's own connection.
func (r *Runtime) connect() error {
	n := r.cfg.NATS
	if n.URL != "" {
		r.clientURL = redactURLs(n.URL)
		auth, err := clientOptions(n)
		if err != nil {
			return err
		}
		nc, err := nats.Connect(n.URL, append(r.connOptions(), auth...)...)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", r.clientURL, err)
		}
		r.nc = nc
	} else {
		listen := n.Listen
		if r.opts.Listen != "" {
			listen = r.opts.Listen
		}
		auth, err := newServerAuth(r.cfg, listen)
		if err != nil {
			return err
		}
		srv, err := r.startServer(listen, auth)
		if err != nil {
			return err
		}
		r.auth = auth
		r.srv, r.clientURL = srv, srv.ClientURL()
		// An in-process connection does not use TLS (the server does not
		// offer it there): its URL must not ask for it.
		inProcess := strings.Replace(r.clientURL, "tls://", "nats://", 1)
		nc, err := nats.Connect(inProcess, append(r.connOptions(), nats.InProcessServer(srv), auth.option())...)
		if err != nil {
			return fmt.Errorf("connect to the embedded server: %w", err)
		}
		r.nc = nc
	}
	js, err := jetstream.New(r.nc)
	if err != nil {
		return err
	}
	r.js = js
	return nil
}

func (r *Runtime) startServer(listen string, auth *serverAuth) (*server.Server, error) {
	cfg := r.cfg
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: bad port", listen)
	}
	maxEvent := int64(1 << 20)
	for _, b := range cfg.Bindings() {
		maxEvent = max(maxEvent, b.MaxEventSize)
	}
	opts := &server.Options{
		ServerName:         r.node,
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           r.storeDir,
		JetStreamMaxMemory: cfg.NATS.MaxMemory,
		JetStreamMaxStore:  cfg.NATS.MaxStore,
		SyncAlways:         cfg.NATS.SyncInterval == 0,
		SyncInterval:       cfg.NATS.SyncInterval,
		MaxPayload:         int32(min(maxEvent+64<<10, 64<<20)),
		NoSigs:             true,
		Users:              auth.users,
	}
	if cl := cfg.NATS.Cluster; cl != nil {
		clusterListen := cl.Listen
		if r.opts.ClusterListen != "" {
			clusterListen = r.opts.ClusterListen
		}
		opts.Cluster, opts.Routes, err = clusterOptions(cl, clusterListen)
		if err != nil {
			return nil, err
		}
	}
	if err := serverTLS(opts, cfg.NATS); err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	r.srvOpts = opts.Clone()
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not start listening on %s (is the port in use?)", listen)
	}
	return srv, nil
}

// Node is this node's name.
func (r *Runtime) Node() string { return r.node }

// ClientURL is where producers and the CLI connect.
func (r *Runtime) ClientURL() string { return r.clientURL }

// Functions returns the loaded functions.
func (r *Runtime) Functions() *functions.Set { return r.fns }

// Done is closed when the bindings stopped (after Shutdown, or on a fatal
// error).
func (r *Runtime) Done() <-chan struct{} { return r.done }

// Shutdown stops consuming, lets in-flight invocations finish (bounded by
// DrainTimeout), then stops the functions, the connection, the server and
// the HTTP endpoints (/readyz answers 503 from the moment it is called).
// It is safe to call more than once.
func (r *Runtime) Shutdown() error {
	r.closeOnce.Do(func() {
		r.lostMu.Lock()
		// The closed handler may not have run yet.
		r.noteLostLocked(r.nc)
		r.stopping = true
		r.lostMu.Unlock()
		r.probe.mu.Lock()
		r.probe.stopping = true
		r.probe.mu.Unlock()
		r.stopWatch()
		if r.cancel != nil {
			r.cancel()
			<-r.done
			<-r.announced
		}
		r.closeReload()
		r.closeResources()
	})
	r.lostMu.Lock()
	defer r.lostMu.Unlock()
	return errors.Join(r.runErr, r.lost)
}

func (r *Runtime) closeResources() {
	r.lostMu.Lock()
	r.stopping = true
	r.lostMu.Unlock()
	if r.api != nil {
		_ = r.api.Stop()
	}
	r.admin.stop()
	if r.fns != nil {
		r.fns.Close()
	}
	if r.nc != nil {
		_ = r.nc.Drain()
		r.nc.Close()
	}
	if r.srv != nil {
		r.srv.Shutdown()
		r.srv.WaitForShutdown()
	}
	r.closeEndpoints()
}

// PrintBanner writes where the runtime listens and a table of its bindings.
func (r *Runtime) PrintBanner(w io.Writer) {
	where := "connected to " + r.clientURL
	if r.srv != nil {
		sync := "sync always"
		if r.cfg.NATS.SyncInterval > 0 {
			sync = "sync every " + r.cfg.NATS.SyncInterval.String()
		}
		where = fmt.Sprintf("listening on %s (JetStream in %s, %s)", r.clientURL, r.storeDir, sync)
		if cl := r.cfg.NATS.Cluster; cl != nil {
			where += fmt.Sprintf("\ncluster %s: routes on %s, %d replicas", cl.Name, r.srv.ClusterAddr(), r.replicas())
		}
	}
	fmt.Fprintf(w, "sluice %s\n", where)
	fmt.Fprintf(w, "node %s\n", r.node)
	if addr := r.MetricsAddr(); addr != "" {
		fmt.Fprintf(w, "metrics on http://%s/metrics (health /healthz, readiness /readyz)\n", addr)
	} else {
		fmt.Fprintln(w, "metrics disabled")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BINDING\tKIND\tSUBJECT\tFUNCTION\tVERSION\tCONCURRENCY\tRATE\tRETRY\tDEAD LETTER")
	for _, b := range r.CurrentConfig().Bindings() {
		version, _, _ := r.fns.Version(b.Function)
		rate := "-"
		if b.Rate.PerSecond() > 0 {
			rate = fmt.Sprintf("%g/s", b.Rate.PerSecond())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d× %s..%s\t%s\n", b.Name, b.Kind, b.Subject, b.Function,
			version[:12], b.Concurrency, rate, b.Retry.MaxAttempts, b.Retry.Initial, b.Retry.Max, b.DeadLetter)
	}
	tw.Flush()
	fmt.Fprintln(w, "ready")
}
