package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/internal/version"
	"github.com/sluice-run/sluice/runtime"
)

// scrape reads /metrics of the runtime at addr.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample is the sum of the series of a family whose labels include
// labels: a counter's or gauge's value, a histogram's count. It is -1 when
// no series matches.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	fam, ok := fams[name]
	if !ok {
		return -1
	}
	sum, found := 0.0, false
series:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue series
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	if !found {
		return -1
	}
	return sum
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// TestMetricsCountAKnownSequence runs every outcome through the runtime
// and checks that /metrics counts exactly what happened.
func TestMetricsCountAKnownSequence(t *testing.T) {
	for _, g := range []string{"noop", "fail", "permanent"} {
		testenv.Guest(t, "internal/testguests/"+g)
	}
	trap := testenv.WAT(t, `(module (memory (export "memory") 1)
		(func (export "handle") (result i32) (unreachable)))`)
	loop := testenv.WAT(t, `(module (memory (export "memory") 1)
		(func (export "handle") (result i32) (loop $forever (br $forever)) (i32.const 0)))`)
	grow := testenv.WAT(t, `(module (memory (export "memory") 1)
		(func (export "handle") (result i32)
		  (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
		  (unreachable)))`)
	cfg := testenv.Config(t, `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
function "fail" { module = "internal/testguests/fail/fail.wasm" }
function "permanent" { module = "internal/testguests/permanent/permanent.wasm" }
function "trap" { module = "`+trap+`" }
function "loop" {
  module  = "`+loop+`"
  timeout = "300ms"
}
function "grow" {
  module = "`+grow+`"
  memory = "16MiB"
}
queue "ok" {
  subject  = "m.ok"
  function = "noop"
}
queue "flaky" {
  subject  = "m.fail"
  function = "fail"
  retry {
    max_attempts = 3
    initial      = "10ms"
    max          = "50ms"
  }
}
queue "perm" {
  subject  = "m.perm"
  function = "permanent"
}
queue "traps" {
  subject  = "m.trap"
  function = "trap"
  retry { max_attempts = 1 }
}
queue "slow" {
  subject  = "m.loop"
  function = "loop"
  retry { max_attempts = 1 }
}
queue "big" {
  subject  = "m.grow"
  function = "grow"
  retry { max_attempts = 1 }
}`)
	rt := testenv.Start(t, cfg, "")
	addr := rt.MetricsAddr()
	if addr == "" {
		t.Fatal("no metrics address")
	}
	if code, body := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	_, js := testenv.Connect(t, rt.ClientURL())
	ctx := context.Background()
	publish := func(subject, id string) {
		t.Helper()
		if _, err := js.Publish(ctx, subject, []byte("x"), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		publish("m.ok", "ok-"+strconv.Itoa(i))
	}
	for _, s := range []string{"fail", "perm", "trap", "loop", "grow"} {
		publish("m."+s, s)
	}

	bindings := []string{"ok", "flaky", "perm", "traps", "slow", "big"}
	var fams map[string]*dto.MetricFamily
	testenv.Eventually(t, time.Minute, "every event to be settled", func() bool {
		fams = scrape(t, addr)
		if sample(fams, "sluice_invocations_total", "binding", "ok", "outcome", "succeeded") != 5 ||
			sample(fams, "sluice_dead_letter_messages") != 5 || sample(fams, "sluice_dead_letters_total") != 5 {
			return false
		}
		for _, b := range bindings {
			if sample(fams, "sluice_binding_pending", "binding", b) != 0 || sample(fams, "sluice_binding_in_flight", "binding", b) != 0 {
				return false
			}
		}
		return true
	})
	// Settled: scrape again, in case anything was still being counted.
	fams = scrape(t, addr)
	type want struct {
		name   string
		labels []string
		value  float64
	}
	wants := []want{
		{"sluice_invocations_total", []string{"binding", "ok", "function", "noop", "outcome", "succeeded"}, 5},
		{"sluice_invocations_total", []string{"binding", "flaky", "function", "fail", "outcome", "failed"}, 3},
		{"sluice_invocations_total", []string{"binding", "perm", "function", "permanent", "outcome", "permanent"}, 1},
		{"sluice_invocations_total", []string{"binding", "traps", "function", "trap", "outcome", "trap"}, 1},
		{"sluice_invocations_total", []string{"binding", "slow", "function", "loop", "outcome", "timeout"}, 1},
		{"sluice_invocations_total", []string{"binding", "big", "function", "grow", "outcome", "memory"}, 1},
		{"sluice_invocations_total", nil, 12},
		{"sluice_invocation_duration_seconds", []string{"binding", "ok", "function", "noop"}, 5},
		{"sluice_invocation_duration_seconds", []string{"binding", "flaky", "function", "fail"}, 3},
		{"sluice_invocation_duration_seconds", nil, 12},
		{"sluice_retries_total", []string{"binding", "flaky", "function", "fail"}, 2},
		{"sluice_retries_total", nil, 2},
		{"sluice_dead_letters_total", []string{"binding", "flaky", "function", "fail"}, 1},
		{"sluice_dead_letters_total", []string{"binding", "perm", "function", "permanent"}, 1},
		{"sluice_dead_letters_total", []string{"binding", "ok"}, 0},
		{"sluice_dead_letters_total", nil, 5},
		{"sluice_dead_letter_messages", []string{"binding", "flaky"}, 1},
		{"sluice_dead_letter_messages", []string{"binding", "perm"}, 1},
		{"sluice_dead_letter_messages", []string{"binding", "ok"}, 0},
		{"sluice_dead_letter_messages", nil, 5},
		{"sluice_binding_pending", nil, 0},
		{"sluice_binding_in_flight", nil, 0},
		{"sluice_binding_redelivered", nil, 0},
		// One worker per function, started by its first event; the
		// timed-out one was killed and not replaced (no event came after
		// it).
		{"sluice_worker_starts_total", []string{"function", "noop"}, 1},
		{"sluice_worker_starts_total", nil, 6},
		{"sluice_worker_crashes_total", []string{"function", "loop", "reason", "timeout"}, 1},
		{"sluice_worker_crashes_total", nil, 1},
		// Present at 0 from the start, so that rates are defined.
		{"sluice_worker_crashes_total", []string{"function", "noop", "reason", "crash"}, 0},
		{"sluice_worker_crashes_total", []string{"function", "noop", "reason", "load"}, 0},
		{"sluice_build_info", []string{"version", version.String(), "go_version", goruntime.Version()}, 1},
	}
	for _, w := range wants {
		if got := sample(fams, w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %g, want %g", w.name, w.labels, got, w.value)
		}
	}
	for _, b := range bindings {
		for _, name := range []string{"sluice_binding_pending", "sluice_binding_in_flight", "sluice_binding_redelivered", "sluice_dead_letter_messages"} {
			if sample(fams, name, "binding", b) < 0 {
				t.Errorf("%s{binding=%q} missing", name, b)
			}
		}
	}
	// The shared compile cache may or may not have a function yet: each
	// is either a hit or a miss, once.
	for _, f := range []string{"noop", "fail", "permanent", "trap", "loop", "grow"} {
		hits := sample(fams, "sluice_compile_cache_hits_total", "function", f)
		misses := sample(fams, "sluice_compile_cache_misses_total", "function", f)
		if hits+misses != 1 {
			t.Errorf("function %s: %g compile cache hits and %g misses, want one of them", f, hits, misses)
		}
	}
	if t.Failed() {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("/metrics:\n%s", body)
		}
	}
}

// TestReadyzFollowsStartAndShutdown: /readyz answers 503 until the streams
// and consumers exist and the bindings run, 200 then, 503 when a consumer
// goes missing and from the moment shutdown begins; /healthz answers 200
// throughout; after Shutdown nothing listens.
func TestReadyzFollowsStartAndShutdown(t *testing.T) {
	loop := testenv.WAT(t, `(module (memory (export "memory") 1)
		(func (export "handle") (result i32) (loop $forever (br $forever)) (i32.const 0)))`)
	cfg := testenv.Config(t, `
function "loop" {
  module  = "`+loop+`"
  timeout = "3s"
}
queue "work" {
  subject  = "r.work"
  function = "loop"
  retry { max_attempts = 1 }
}`)
	opts := testenv.RuntimeOptions(t, cfg, "")
	paused, release := make(chan *runtime.Runtime, 1), make(chan struct{})
	opts.BeforeEnsure = func(rt *runtime.Runtime) {
		paused <- rt
		<-release
	}
	type started struct {
		rt  *runtime.Runtime
		err error
	}
	done := make(chan started, 1)
	go func() {
		rt, err := runtime.Start(context.Background(), opts)
		done <- started{rt, err}
	}()
	var early *runtime.Runtime
	select {
	case early = <-paused:
	case s := <-done:
		t.Fatalf("Start returned before laying out streams: %v", s.err)
	case <-time.After(time.Minute):
		t.Fatal("Start did not reach the streams")
	}
	base := "http://" + early.MetricsAddr()
	_, js := testenv.Connect(t, early.ClientURL())
	if _, err := js.Stream(context.Background(), "SLUICE_Q_work"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream before Ensure: %v, want not found", err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "streams and consumers") {
		t.Errorf("/readyz before the streams exist: %d %q, want 503 saying what is missing", code, body)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while starting: %d %q", code, body)
	}
	if code, _ := get(t, base+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics while starting: %d", code)
	}
	close(release)
	s := <-done
	if s.err != nil {
		t.Fatal(s.err)
	}
	rt := s.rt
	t.Cleanup(func() { _ = rt.Shutdown() })
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || body != "ready" {
		t.Fatalf("/readyz after Start: %d %q", code, body)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok" {
		t.Fatalf("/healthz after Start: %d %q", code, body)
	}

	// A consumer deleted behind the runtime's back: not ready, naming it.
	ctx := context.Background()
	if err := js.DeleteConsumer(ctx, "SLUICE_Q_work", "sluice_work"); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "binding work") {
		t.Errorf("/readyz without the consumer: %d %q, want 503 naming the binding", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz without the consumer: %d", code)
	}
	if err := rt.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// Shutdown drains an invocation in flight; meanwhile, not ready.
	rt2 := testenv.Start(t, cfg, "")
	base2 := "http://" + rt2.MetricsAddr()
	_, js2 := testenv.Connect(t, rt2.ClientURL())
	if _, err := js2.Publish(ctx, "r.work", []byte("x")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the invocation to start", func() bool {
		return sample(scrape(t, rt2.MetricsAddr()), "sluice_binding_in_flight", "binding", "work") == 1
	})
	// The node's own view: this node holds that event.
	fams := scrape(t, rt2.MetricsAddr())
	if got := sample(fams, "sluice_node_in_flight", "node", rt2.Node(), "binding", "work"); got != 1 {
		t.Errorf("sluice_node_in_flight{node=%q,binding=work} = %v, want 1", rt2.Node(), got)
	}
	if got := sample(fams, "sluice_node_info", "node", rt2.Node()); got != 1 {
		t.Errorf("sluice_node_info{node=%q} = %v, want 1", rt2.Node(), got)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- rt2.Shutdown() }()
	testenv.Eventually(t, 10*time.Second, "/readyz to answer 503 while draining", func() bool {
		code, body := get(t, base2+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
	})
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{base, base2} {
		if _, err := http.Get(b + "/healthz"); err == nil {
			t.Errorf("%s still answers after Shutdown", b)
		}
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:goruntime.Stack(buf, true)]); strings.Contains(stacks, "serveEndpoints") {
		t.Errorf("the endpoints' goroutine outlived Shutdown:\n%s", stacks)
	}
}

// TestMetricsAddressInUse: a taken metrics address stops the start with a
// clear error, before anything else is started.
func TestMetricsAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	testenv.Guest(t, "internal/testguests/noop")
	cfg := testenv.Config(t, `function "noop" { module = "internal/testguests/noop/noop.wasm" }`)
	opts := testenv.RuntimeOptions(t, cfg, "")
	opts.MetricsListen = ln.Addr().String()
	rt, err := runtime.Start(context.Background(), opts)
	if err == nil {
		_ = rt.Shutdown()
		t.Fatal("started on a metrics address in use")
	}
	if want := fmt.Sprintf("metrics: %s is already in use", ln.Addr()); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want it to say %q", err, want)
	}
}

// TestMetricsDisabled: metrics { enabled = false } serves nothing.
func TestMetricsDisabled(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	cfg := testenv.Config(t, `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
metrics { enabled = false }`)
	opts := testenv.RuntimeOptions(t, cfg, "")
	opts.MetricsListen = ""
	rt, err := runtime.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown()
	if addr := rt.MetricsAddr(); addr != "" {
		t.Fatalf("metrics served on %s while disabled", addr)
	}
}
