// Package metrics is the runtime's Prometheus instrumentation: counters of
// invocations, retries and dead letters (it is the triggers.Observer the
// runner reports to), of worker processes and compiles (the
// functions.Observer), and each binding's backlog, read from JetStream when
// scraped. Everything lives in the Metrics' own registry, served by the
// runtime at /metrics; nothing is registered globally.
package metrics

import (
	"context"
	"net/http"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/version"
	"github.com/sluice-run/sluice/triggers"
)

// Outcomes are the values of the outcome label of sluice_invocations_total:
// "succeeded" and the functions.Kind of each failure.
var Outcomes = []string{
	triggers.StateSucceeded,
	string(functions.KindFailed),
	string(functions.KindPermanent),
	string(functions.KindTrap),
	string(functions.KindTimeout),
	string(functions.KindMemory),
}

// workerDeathReasons are the values of the reason label of
// sluice_worker_crashes_total.
var workerDeathReasons = []string{functions.WorkerTimeout, functions.WorkerCrash, functions.WorkerLoad, functions.WorkerProtocol}

// ScrapeTimeout bounds the JetStream requests of one scrape: a backlog gauge
// whose binding does not answer in time is left out of that scrape.
const ScrapeTimeout = 2 * time.Second

// Metrics holds the runtime's metrics. Its methods are safe for concurrent
// use.
type Metrics struct {
	reg *prometheus.Registry

	invocations       *prometheus.CounterVec
	duration          *prometheus.HistogramVec
	retries           *prometheus.CounterVec
	deadLetters       *prometheus.CounterVec
	notStored         *prometheus.CounterVec
	deduplicated      *prometheus.CounterVec
	repliesDropped    *prometheus.CounterVec
	workerStarts      *prometheus.CounterVec
	workerCrashes     *prometheus.CounterVec
	workers           *prometheus.GaugeVec
	coldStarts        *prometheus.CounterVec
	coldStartDuration *prometheus.HistogramVec
	cacheHits         *prometheus.CounterVec
	cacheMisses       *prometheus.CounterVec
	logLinesDropped   *prometheus.CounterVec

	// invoked holds the children Invoked updates, by invokedKey: resolved
	// once rather than hashing their labels per event.
	invoked sync.Map

	backlog atomic.Pointer[backlogSource]
	node    atomic.Pointer[nodeSource]
}

type invokedKey struct{ binding, function, outcome string }

type invokedChildren struct {
	count prometheus.Counter
	took  prometheus.Observer
}

var (
	_ triggers.Observer      = (*Metrics)(nil)
	_ triggers.ReplyObserver = (*Metrics)(nil)
	_ functions.Observer     = (*Metrics)(nil)
)

// New returns Metrics with a fresh registry holding sluice's metrics and
// the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_invocations_total",
			Help: "Function invocations by binding, function and outcome (succeeded, failed, permanent, trap, timeout, memory).",
		}, []string{"binding", "function", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_invocation_duration_seconds",
			Help:    "How long invocations took, whatever their outcome, by binding and function.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"binding", "function"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_retries_total",
			Help: "Failed events scheduled for another attempt, by binding and function.",
		}, []string{"binding", "function"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_dead_letters_total",
			Help: "Events stored as dead letters, by binding and function.",
		}, []string{"binding", "function"}),
		notStored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_not_stored_total",
			Help: "Publishes that had to be stored and were not, by binding, function and what (dead_letter, result, failure); each leaves its event pending, to be settled again.",
		}, []string{"binding", "function", "what"}),
		deduplicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_deduplicated_total",
			Help: "Events acknowledged without running, since they already succeeded at the binding (dedupe), by binding and function.",
		}, []string{"binding", "function"}),
		repliesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_replies_dropped_total",
			Help: "Outcomes not sent to the subject a producer named in Sluice-Reply, by binding and reason: too_long, invalid, not_allowed (outside _INBOX.> and reply_subjects).",
		}, []string{"binding", "reason"}),
		logLinesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_log_lines_dropped_total",
			Help: "Guest log lines not streamed to `sluice logs` (they still reach the runtime's log), by function: the connection to NATS had too much unsent, or it was down.",
		}, []string{"function"}),
		workerStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_worker_starts_total",
			Help: "Worker processes started with a function's module loaded.",
		}, []string{"function"}),
		workerCrashes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_worker_crashes_total",
			Help: "Worker processes that ended abnormally, by reason: timeout (killed at an invocation's timeout), crash (died during an invocation), load (could not load the module).",
		}, []string{"function", "reason"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_workers",
			Help: "Worker processes running a function's module, idle or busy (0 when the function has scaled to zero).",
		}, []string{"function"}),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_cold_starts_total",
			Help: "Events that found their function without any worker and waited for one to start.",
		}, []string{"function"}),
		coldStartDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_cold_start_duration_seconds",
			Help:    "How long a cold start took: a worker process started and the function's compiled module loaded.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15},
		}, []string{"function"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_compile_cache_hits_total",
			Help: "Functions loaded whose compiled module came from the compile cache.",
		}, []string{"function"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_compile_cache_misses_total",
			Help: "Functions loaded whose module had to be compiled.",
		}, []string{"function"}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_build_info",
		Help: "Always 1; labels the build: sluice's version and the Go release that compiled it.",
	}, []string{"version", "go_version"})
	buildInfo.WithLabelValues(version.String(), goruntime.Version()).Set(1)
	m.reg.MustRegister(buildInfo, m.invocations, m.duration, m.retries, m.deadLetters, m.notStored, m.deduplicated, m.repliesDropped,
		m.workerStarts, m.workerCrashes, m.workers, m.coldStarts, m.coldStartDuration, m.cacheHits, m.cacheMisses, m.logLinesDropped,
		backlogCollector{m}, nodeCollector{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is where the metrics are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, Timeout: 2 * ScrapeTimeout})
}

// Watch makes scrapes report the backlog of cfg's bindings, read through
// js, and starts every per-binding and per-function counter at zero (so
// rates are defined before the first event). Calling it again replaces the
// bindings watched.
func (m *Metrics) Watch(js jetstream.JetStream, cfg *config.Config) {
	bindings := cfg.Bindings()
	for _, b := range bindings {
		for _, o := range Outcomes {
			m.invocations.WithLabelValues(b.Name, b.Function, o)
		}
		m.retries.WithLabelValues(b.Name, b.Function)
		m.deadLetters.WithLabelValues(b.Name, b.Function)
		m.deduplicated.WithLabelValues(b.Name, b.Function)
	}
	for _, f := range cfg.Functions {
		m.workerStarts.WithLabelValues(f.Name)
		m.workers.WithLabelValues(f.Name)
		m.coldStarts.WithLabelValues(f.Name)
		for _, reason := range workerDeathReasons {
			m.workerCrashes.WithLabelValues(f.Name, reason)
		}
		m.cacheHits.WithLabelValues(f.Name)
		m.cacheMisses.WithLabelValues(f.Name)
	}
	m.backlog.Store(&backlogSource{js: js, bindings: bindings})
}

// Invoked counts one invocation and its duration (triggers.Observer).
func (m *Metrics) Invoked(binding, function, outcome string, _ int, took time.Duration) {
	k := invokedKey{binding, function, outcome}
	c, ok := m.invoked.Load(k)
	if !ok {
		c, _ = m.invoked.LoadOrStore(k, &invokedChildren{
			count: m.invocations.WithLabelValues(binding, function, outcome),
			took:  m.duration.WithLabelValues(binding, function),
		})
	}
	ic := c.(*invokedChildren)
	ic.count.Inc()
	ic.took.Observe(took.Seconds())
}

// Retried counts a retry (triggers.Observer).
func (m *Metrics) Retried(binding, function string) {
	m.retries.WithLabelValues(binding, function).Inc()
}

// DeadLettered counts a dead letter (triggers.Observer).
func (m *Metrics) DeadLettered(binding, function string) {
	m.deadLetters.WithLabelValues(binding, function).Inc()
}

// NotStored counts a publish not stored (triggers.Observer).
func (m *Metrics) NotStored(binding, function, what string) {
	m.notStored.WithLabelValues(binding, function, what).Inc()
}

// Deduplicated counts an event not run again (triggers.Observer).
func (m *Metrics) Deduplicated(binding, function string) {
	m.deduplicated.WithLabelValues(binding, function).Inc()
}

// ReplyDropped counts a refused Sluice-Reply (triggers.ReplyObserver).
func (m *Metrics) ReplyDropped(binding, reason string) {
	m.repliesDropped.WithLabelValues(binding, reason).Inc()
}

// LogLineDropped counts a guest log line not streamed.
func (m *Metrics) LogLineDropped(function string) {
	m.logLinesDropped.WithLabelValues(function).Inc()
}

// WorkerStarted counts a worker start (functions.Observer).
func (m *Metrics) WorkerStarted(function string) {
	m.workerStarts.WithLabelValues(function).Inc()
	m.workers.WithLabelValues(function).Inc()
}

// WorkerDied counts a worker that ended abnormally (functions.Observer).
func (m *Metrics) WorkerDied(function, reason string) {
	m.workerCrashes.WithLabelValues(function, reason).Inc()
}

// WorkerStopped counts a worker's end (functions.Observer).
func (m *Metrics) WorkerStopped(function string) {
	m.workers.WithLabelValues(function).Dec()
}

// ColdStart counts a cold start and its duration (functions.Observer).
func (m *Metrics) ColdStart(function string, took time.Duration) {
	m.coldStarts.WithLabelValues(function).Inc()
	m.coldStartDuration.WithLabelValues(function).Observe(took.Seconds())
}

// Compiled counts a compile cache hit or miss (functions.Observer).
func (m *Metrics) Compiled(function string, cacheHit bool) {
	if cacheHit {
		m.cacheHits.WithLabelValues(function).Inc()
	} else {
		m.cacheMisses.WithLabelValues(function).Inc()
	}
}

type nodeSource struct {
	name  string
	loads func() map[string]triggers.Load
}

// WatchNode makes scrapes report this node's name and its in-flight
// events per binding, read from loads.
func (m *Metrics) WatchNode(name string, loads func() map[string]triggers.Load) {
	m.node.Store(&nodeSource{name: name, loads: loads})
}

var (
	nodeInfoDesc = prometheus.NewDesc("sluice_node_info",
		"Always 1; names the node this endpoint belongs to.",
		[]string{"node"}, nil)
	nodeInFlightDesc = prometheus.NewDesc("sluice_node_in_flight",
		"Events this node took from JetStream for the binding and has not settled (running, or waiting for a slot or the rate limit).",
		[]string{"node", "binding"}, nil)
)

// nodeCollector reports the node's own work (sluice_binding_in_flight is
// the whole cluster's, read from the consumer).
type nodeCollector struct{ m *Metrics }

func (nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nodeInfoDesc
	ch <- nodeInFlightDesc
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.m.node.Load()
	if src == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(nodeInfoDesc, prometheus.GaugeValue, 1, src.name)
	for binding, l := range src.loads() {
		ch <- prometheus.MustNewConstMetric(nodeInFlightDesc, prometheus.GaugeValue, float64(l.InFlight), src.name, binding)
	}
}

type backlogSource struct {
	js       jetstream.JetStream
	bindings []config.Binding
}

var (
	pendingDesc = prometheus.NewDesc("sluice_binding_pending",
		"Events in the binding's stream not yet delivered to it (its consumer's pending count).",
		[]string{"binding"}, nil)
	inFlightDesc = prometheus.NewDesc("sluice_binding_in_flight",
		"Events delivered to the binding and not yet settled (running, prefetched, or waiting for a retry).",
		[]string{"binding"}, nil)
	redeliveredDesc = prometheus.NewDesc("sluice_binding_redelivered",
		"Unsettled events of the binding that were delivered more than once.",
		[]string{"binding"}, nil)
	deadLetterMsgsDesc = prometheus.NewDesc("sluice_dead_letter_messages",
		"Messages in the binding's dead-letter stream.",
		[]string{"binding"}, nil)
)

// maxScrapeRequests bounds the JetStream requests one scrape has in flight.
const maxScrapeRequests = 8

// backlogCollector reads every watched binding's consumer and dead-letter
// stream at scrape time.
type backlogCollector struct{ m *Metrics }

func (backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- inFlightDesc
	ch <- redeliveredDesc
	ch <- deadLetterMsgsDesc
}

func (c backlogCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.m.backlog.Load()
	if src == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	sem := make(chan struct{}, maxScrapeRequests)
	var wg sync.WaitGroup
	for _, b := range src.bindings {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if cons, err := src.js.Consumer(ctx, triggers.StreamName(b), triggers.ConsumerName(b)); err == nil {
				info := cons.CachedInfo()
				pending, inFlight, redelivered := info.NumPending, info.NumAckPending, info.NumRedelivered
				// Replayed dead letters wait in the binding's replay stream.
				if rc, err := src.js.Consumer(ctx, triggers.ReplayStreamName(b.Name), triggers.ReplayConsumerName(b.Name)); err == nil {
					ri := rc.CachedInfo()
					pending, inFlight, redelivered = pending+ri.NumPending, inFlight+ri.NumAckPending, redelivered+ri.NumRedelivered
				}
				ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(pending), b.Name)
				ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(inFlight), b.Name)
				ch <- prometheus.MustNewConstMetric(redeliveredDesc, prometheus.GaugeValue, float64(redelivered), b.Name)
			}
			if s, err := src.js.Stream(ctx, triggers.DeadLetterStreamName(b.Name)); err == nil {
				ch <- prometheus.MustNewConstMetric(deadLetterMsgsDesc, prometheus.GaugeValue, float64(s.CachedInfo().State.Msgs), b.Name)
			}
		})
	}
	wg.Wait()
}
