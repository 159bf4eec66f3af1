package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/triggers"
)

// probeTimeout bounds the JetStream requests of one /readyz.
const probeTimeout = 2 * time.Second

// probe is what /healthz and /readyz look at; Start and Shutdown update it
// while requests read it.
type probe struct {
	mu       sync.Mutex
	phase    string // what Start is doing; "" once the bindings run
	nc       *nats.Conn
	js       jetstream.JetStream
	bindings []config.Binding
	stopping bool
}

func (p *probe) setPhase(phase string) {
	p.mu.Lock()
	p.phase = phase
	p.mu.Unlock()
}

// serveEndpoints starts the HTTP server of /metrics, /healthz and /readyz,
// unless metrics are disabled. It returns once the address is bound.
func (r *Runtime) serveEndpoints() error {
	addr := r.cfg.Metrics.Listen
	if r.opts.MetricsListen != "" {
		addr = r.opts.MetricsListen
	} else if r.cfg.Metrics.Disabled {
		return nil
	}
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("metrics: %s is already in use (choose another address with metrics.listen or --metrics-listen, or set metrics { enabled = false })", addr)
		}
		return fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.metrics.Handler())
	mux.HandleFunc("GET /healthz", r.healthz)
	mux.HandleFunc("GET /readyz", r.readyz)
	r.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	r.httpLn = ln
	r.httpDone = make(chan struct{})
	go func() {
		defer close(r.httpDone)
		if err := r.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("metrics server stopped", "error", err)
		}
	}()
	return nil
}

// closeEndpoints stops the HTTP server and waits for its goroutines.
func (r *Runtime) closeEndpoints() {
	if r.httpSrv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.httpSrv.Shutdown(ctx); err != nil {
		_ = r.httpSrv.Close()
	}
	<-r.httpDone
}

// MetricsAddr is the address of /metrics, /healthz and /readyz, or "" when
// metrics are disabled.
func (r *Runtime) MetricsAddr() string {
	if r.httpLn == nil {
		return ""
	}
	return r.httpLn.Addr().String()
}

// healthz answers 200 while the process runs, its NATS connection is not
// closed and its bindings have not stopped on their own.
func (r *Runtime) healthz(w http.ResponseWriter, _ *http.Request) {
	r.probe.mu.Lock()
	nc, stopping := r.probe.nc, r.probe.stopping
	r.probe.mu.Unlock()
	switch {
	case nc != nil && nc.IsClosed():
		http.Error(w, "unhealthy: the NATS connection is closed", http.StatusServiceUnavailable)
	case !stopping && isClosed(r.done):
		http.Error(w, "unhealthy: the bindings stopped", http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "ok")
	}
}

// readyz answers 200 once the runtime consumes: JetStream answers, every
// binding's consumer exists and the bindings run; 503 saying what is
// missing otherwise, and from the moment shutdown begins.
func (r *Runtime) readyz(w http.ResponseWriter, req *http.Request) {
	r.probe.mu.Lock()
	phase, js, bindings, stopping := r.probe.phase, r.probe.js, r.probe.bindings, r.probe.stopping
	r.probe.mu.Unlock()
	notReady := func(format string, args ...any) {
		http.Error(w, "not ready: "+fmt.Sprintf(format, args...), http.StatusServiceUnavailable)
	}
	switch {
	case stopping:
		notReady("shutting down")
		return
	case phase != "":
		notReady("starting: %s", phase)
		return
	case isClosed(r.done):
		notReady("the bindings stopped")
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), probeTimeout)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		notReady("JetStream does not answer: %v", err)
		return
	}
	var missing []string
	for _, b := range bindings {
		for _, c := range [][2]string{
			{triggers.StreamName(b), triggers.ConsumerName(b)},
			{triggers.ReplayStreamName(b.Name), triggers.ReplayConsumerName(b.Name)},
		} {
			if _, err := js.Consumer(ctx, c[0], c[1]); err != nil {
				missing = append(missing, fmt.Sprintf("binding %s (consumer %s on stream %s: %v)", b.Name, c[1], c[0], err))
			}
		}
	}
	if len(missing) > 0 {
		notReady("%s", strings.Join(missing, "; "))
		return
	}
	fmt.Fprintln(w, "ready")
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
