package bench

import (
	"context"
	"flag"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// The scale section runs real `sluice run` processes (testenv.StartCluster),
// not the in-process runner of the other sections: adding nodes only means
// something with one broker and one runtime per process, as users run them.
var (
	scaleReps     = flag.Int("report.scale.reps", 3, "repetitions of each drain run of the scale section")
	scaleN        = flag.Int("report.scale.n", 50000, "events per drain run of the scale section, fast storage (spread evenly over the bindings)")
	scaleNDurable = flag.Int("report.scale.n.durable", 20000, "events per drain run of the scale section, durable storage (0 skips durable)")
	scaleR1       = flag.Bool("report.scale.r1", true, "also run 2 and 3 nodes with replicas = 1, to separate the replication cost from the extra consumers")
	peakN         = flag.Int("report.peak.n", 200000, "events of the peak-shaving run, fast storage (0 skips it)")
	peakNDurable  = flag.Int("report.peak.n.durable", 50000, "events of the peak-shaving run, durable storage (0 skips it)")
	peakReps      = flag.Int("report.peak.reps", 1, "repetitions of each peak-shaving run")
)

const (
	// peakRate and peakConcurrency are scale/peak_test.go's queue.
	peakRate        = 2000
	peakConcurrency = 4
	// peakRSSTarget is the bound on the node's own memory while the
	// backlog waits.
	peakRSSTarget = 200 << 20
	// nodeConcurrency is the queue's concurrency on every node in the
	// node-scaling runs (as in e2e-queue).
	nodeConcurrency = 4
	// scalePoll is how often a drain is polled: 1% of a 1 s drain.
	scalePoll = 10 * time.Millisecond
	// scaleStall is the shortest time without progress that counts as a
	// stall: a binding of the 100 may wait a few seconds for a worker to
	// start (100 take 6.6 s in the cold-start section), and the stalls
	// seen last about 30 s.
	scaleStall = 5 * time.Second
)

// drainCase is one configuration of a drain run.
type drainCase struct {
	durable     bool
	nodes       int
	replicas    int // nats.replicas; 0 leaves the default (1, or 3 in a cluster)
	bindings    int
	concurrency int // per binding and node
	events      int // in total, spread evenly over the bindings
}

func (c drainCase) storage() string {
	if c.durable {
		return "durable"
	}
	return "fast"
}

// drainResult is one drain run.
type drainResult struct {
	eventsPerSec float64
	drain        time.Duration // resume → every stream empty
	stalled      time.Duration // of drain, stalls (see waitEmpty)
	publish      time.Duration // publishing the backlog, consumers paused
	cpuPerEvent  time.Duration // every node and its workers, during the drain
	nodeRSS      int64         // the node processes after the drain, summed over nodes
	treeRSS      int64         // the same with their workers
	workers      int           // live worker processes after the drain, all nodes
}

// scaleBody is the runtime.hcl (without its nats block) of the scale runs:
// one no-op function shared by every binding, so that more bindings add
// consumers, streams and invocation slots and nothing else (the function's
// workers are shared: a binding takes one only while it invokes).
func scaleBody(module string, bindings, concurrency int, rate string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "function \"noop\" {\n  module = %q\n}\n", module)
	for _, name := range scaleBindings(bindings) {
		fmt.Fprintf(&b, "\nqueue %q {\n  subject     = %q\n  function    = \"noop\"\n  concurrency = %d\n", name, "scale."+name, concurrency)
		if rate != "" {
			fmt.Fprintf(&b, "  rate        = %q\n", rate)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func scaleBindings(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("q%d", i)
	}
	return names
}

func natsLines(durable bool, replicas int) string {
	s := ""
	if !durable {
		s += "  sync = \"1s\"\n"
	}
	if replicas > 0 {
		s += fmt.Sprintf("  replicas = %d\n", replicas)
	}
	return s
}

// drainRun starts c's nodes, pauses every binding's consumer, publishes the
// backlog, then resumes them all at one instant and times resume → every
// stream empty (a queue's stream is a work queue: an event leaves it when
// acknowledged).
// The backlog is published first so that the run measures consumption
// alone, not consumption competing with the publisher for the 2 cores.
func drainRun(t *testing.T, module string, c drainCase) drainResult {
	t.Helper()
	cl := testenv.StartCluster(t, testenv.ClusterSpec{
		Nodes: c.nodes, Body: scaleBody(module, c.bindings, c.concurrency, ""),
		NATS: natsLines(c.durable, c.replicas), Args: []string{"--log-level", "warn"},
	})
	ctx := context.Background()
	_, js := testenv.Connect(t, cl.URLs[0])
	names := scaleBindings(c.bindings)
	// `sluice pause`: a paused consumer keeps its events in the stream.
	for _, name := range names {
		if _, err := js.PauseConsumer(ctx, triggers.BindingStreamName(name), triggers.BindingConsumerName(name), time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("pause %s: %v", name, err)
		}
	}
	subjects := make([]string, len(names))
	for i, name := range names {
		subjects[i] = "scale." + name
	}
	publish := publishBacklog(t, cl.URLs[0], subjects, c.events)
	streams := make([]string, len(names))
	for i, name := range names {
		streams[i] = triggers.BindingStreamName(name)
	}
	if n := totalMsgs(ctx, js, streams); n != c.events {
		t.Fatalf("%d events stored with the consumers paused, want %d", n, c.events)
	}

	// Resume every consumer at one instant, by moving its pause deadline
	// there: the server's pause timer then wakes its delivery loop, all
	// bindings at once and without the requests in the timing. A resume
	// (`sluice resume`, ResumeConsumer) does not wake it: delivery then
	// waits for the next new message or pull request, which on an idle
	// stream is the client's pull expiry (measured: 12 s).
	start := time.Now().Add(500*time.Millisecond + time.Duration(len(names))*20*time.Millisecond)
	for _, name := range names {
		if _, err := js.PauseConsumer(ctx, triggers.BindingStreamName(name), triggers.BindingConsumerName(name), start); err != nil {
			t.Fatalf("pause %s until %s: %v", name, start, err)
		}
	}
	if late := time.Since(start); late >= 0 {
		t.Fatalf("setting the resume time of %d consumers took %s too long", len(names), late)
	}
	// The nodes idle until start: their CPU then is noise (< 0.1 µs/event).
	cpu0 := clusterCPU(cl)
	// Slower than 200 events/s is broken, not slow.
	stalls := waitEmpty(t, cl, js, streams, start, start.Add(time.Minute+time.Duration(c.events)*5*time.Millisecond))
	elapsed := time.Since(start)
	cpu := clusterCPU(cl) - cpu0
	var stalled time.Duration
	for _, d := range stalls {
		stalled += d
	}
	if len(stalls) > 0 {
		t.Logf("stalled: %v", stalls)
	}
	r := drainResult{
		// The consumers' speed: a stall is the pause's after-effect (see
		// waitEmpty), reported beside it.
		eventsPerSec: float64(c.events) / (elapsed - stalled).Seconds(),
		drain:        elapsed,
		stalled:      stalled,
		publish:      publish,
		cpuPerEvent:  cpu / time.Duration(c.events),
	}
	for _, n := range cl.Nodes {
		r.nodeRSS += n.RSS()
		r.treeRSS += n.TreeRSS()
		r.workers += len(testenv.Descendants(n.PID))
	}
	stopAll(t, cl)
	return r
}

// stopAll stops the nodes all at once. The cleanup that StartCluster
// registers stops them one after the other, and each node after the first
// then waits for the peers it lost (measured: 5.5 s for the second of two
// idle nodes, 0.3 s for three stopped together): time that only makes the
// report longer.
func stopAll(t *testing.T, cl *testenv.Cluster) {
	var wg sync.WaitGroup
	for _, n := range cl.Nodes {
		wg.Go(func() {
			if err := n.Stop(t); err != nil {
				t.Errorf("%s: graceful stop: %v", n, err)
			}
		})
	}
	wg.Wait()
}

// publishBacklog publishes `events` 128-byte events round-robin over
// subjects with async publish (4000 outstanding) and returns the time
// until the last PubAck. Events carry no message id, as in e2e-queue.
func publishBacklog(t *testing.T, url string, subjects []string, events int) time.Duration {
	t.Helper()
	nc, _ := testenv.Connect(t, url)
	var failed sync.Map
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			failed.Store(m, err)
		}))
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, payloadSize)
	start := time.Now()
	for i := range events {
		// The stall wait covers the fsyncs behind a full window on the
		// durable setting; the default (200ms) would fail the publish.
		if _, err := js.PublishAsync(subjects[i%len(subjects)], payload, jetstream.WithStallWait(time.Minute)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		t.Fatalf("PubAcks still pending after 5m: %d", js.PublishAsyncPending())
	}
	elapsed := time.Since(start)
	failed.Range(func(_, err any) bool {
		t.Fatalf("a publish failed: %v", err)
		return false
	})
	return elapsed
}

// waitEmpty polls the streams until each is empty, one at a time: they
// drain together, so the run ends when the last is empty, and one request
// in flight at a time keeps the polling's own load on the nodes small
// (100 streams polled every 10 ms would be 10,000 requests/s).
//
// It returns the stalls it saw after start: periods of at least
// scaleStall in which the polled stream held events and none left it.
// After a pause, the consumers sometimes stop pulling for about 30 s
// (the consumer then has no waiting pull request, its events pending and
// none in flight) until the client's pull expires: 3 of 16 trials of one
// node and 50,000 events, none in 8 trials without a pause.
func waitEmpty(t *testing.T, cl *testenv.Cluster, js jetstream.JetStream, streams []string, start, deadline time.Time) (stalls []time.Duration) {
	t.Helper()
	ctx := context.Background()
	for _, s := range streams {
		held, since := -1, start
		for {
			st, err := streamState(ctx, js, s)
			now := time.Now()
			if err == nil && int(st.Msgs) != held {
				if gap := now.Sub(since); held > 0 && gap >= scaleStall {
					stalls = append(stalls, gap)
				}
				held, since = int(st.Msgs), now
				if since.Before(start) { // not resumed yet
					since = start
				}
			}
			if err == nil && st.Msgs == 0 {
				break
			}
			for _, n := range cl.Nodes {
				if n.Exited() {
					t.Fatalf("%s exited during the drain:\n%s", n, n.Output())
				}
			}
			if now.After(deadline) {
				t.Fatalf("stream %s still holds %d events (%v) at the deadline; all streams: %d", s, st.Msgs, err, totalMsgs(ctx, js, streams))
			}
			time.Sleep(scalePoll) // the poll interval, bounded by the deadline above
		}
	}
	return stalls
}

func streamState(ctx context.Context, js jetstream.JetStream, name string) (jetstream.StreamState, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	return info.State, nil
}

// totalMsgs is the number of events in the streams (-1 if one cannot be
// read).
func totalMsgs(ctx context.Context, js jetstream.JetStream, streams []string) int {
	total := 0
	for _, s := range streams {
		st, err := streamState(ctx, js, s)
		if err != nil {
			return -1
		}
		total += int(st.Msgs)
	}
	return total
}

// clusterCPU is the CPU time of every node so far, workers included.
func clusterCPU(cl *testenv.Cluster) time.Duration {
	var d time.Duration
	for _, n := range cl.Nodes {
		d += treeCPU(n.PID)
	}
	return d
}

// treeCPU is the user+system CPU time of pid, of its children that exited
// and were waited for (cutime, cstime: retired workers), and of its live
// descendants (workers), at clock-tick resolution.
func treeCPU(pid int) time.Duration {
	ticks := func(p int, fields ...int) int64 {
		f := testenv.ProcStat(p)
		var n int64
		for _, i := range fields {
			if len(f) > i {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				n += v
			}
		}
		return n
	}
	total := ticks(pid, 14, 15, 16, 17)
	for _, p := range testenv.Descendants(pid) {
		total += ticks(p, 14, 15)
	}
	return time.Duration(total) * clockTick
}

// peakResult is one peak-shaving run.
type peakResult struct {
	publish      time.Duration // first publish → last PubAck
	backlog      int           // events still queued when publishing ended
	drain        time.Duration // first publish → queue empty
	overall      float64       // consumed/s, first consumption seen → queue empty
	after        float64       // consumed/s, publishing done → queue empty
	winLo, winHi float64       // consumed/s in full 10 s windows from the first consumption
	windows      int
	maxNode      int64
	maxTree      int64
	cpuPerEvent  time.Duration
}

// consumedSample is how many events had left the queue's stream at a time.
type consumedSample struct {
	at       time.Time
	consumed int
}

// peakRun publishes events as fast as JetStream takes them to one node's
// queue with rate = "2000/s" (scale/peak_test.go's setting, with the no-op
// guest) and samples, every 100 ms, how many have been consumed (the
// stream's last sequence minus what it holds) and the node's RSS.
func peakRun(t *testing.T, module string, durable bool, events int) peakResult {
	t.Helper()
	cl := testenv.StartCluster(t, testenv.ClusterSpec{
		Nodes: 1, Body: scaleBody(module, 1, peakConcurrency, fmt.Sprintf("%d/s", peakRate)),
		NATS: natsLines(durable, 0), Args: []string{"--log-level", "warn"},
	})
	node := cl.Nodes[0]
	stream := triggers.BindingStreamName("q0")
	_, js := testenv.Connect(t, cl.URLs[0])

	var mu sync.Mutex
	var samples []consumedSample
	var maxNode, maxTree int64
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			st, err := streamState(context.Background(), js, stream)
			now := time.Now()
			nodeRSS, treeRSS := node.RSS(), node.TreeRSS()
			mu.Lock()
			if err == nil {
				samples = append(samples, consumedSample{now, int(st.LastSeq - st.Msgs)})
			}
			maxNode, maxTree = max(maxNode, nodeRSS), max(maxTree, treeRSS)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() {
		select {
		case <-stopped:
		default:
			close(stop)
			<-stopped
		}
	}()

	cpu0 := treeCPU(node.PID)
	start := time.Now()
	publish := publishBacklog(t, cl.URLs[0], []string{"scale.q0"}, events)
	st, err := streamState(context.Background(), js, stream)
	if err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	r := peakResult{publish: publish, backlog: int(st.Msgs)}
	// Twice the paced drain time plus slack: the rate says whether it was
	// on pace.
	deadline := start.Add(2*time.Duration(events)*time.Second/peakRate + time.Minute)
	for {
		mu.Lock()
		done := len(samples) > 0 && samples[len(samples)-1].consumed >= events
		mu.Unlock()
		if done {
			break
		}
		if node.Exited() {
			t.Fatalf("%s exited during the peak:\n%s", node, node.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained after %s", time.Since(start).Round(time.Second))
		}
		time.Sleep(scalePoll) // the poll interval, bounded by the deadline above
	}
	close(stop)
	<-stopped
	r.cpuPerEvent = (treeCPU(node.PID) - cpu0) / time.Duration(events)
	r.maxNode, r.maxTree = maxNode, maxTree
	stopAll(t, cl)

	last := samples[len(samples)-1]
	r.drain = last.at.Sub(start)
	i := slices.IndexFunc(samples, func(s consumedSample) bool { return s.consumed > 0 })
	first := samples[i]
	r.overall = float64(last.consumed-first.consumed) / last.at.Sub(first.at).Seconds()
	// Without the publisher competing for the disk and the cores: what
	// the limiter alone lets through.
	r.after = float64(r.backlog) / last.at.Sub(published).Seconds()
	rates := windowRates(samples[i:], 10*time.Second)
	r.windows = len(rates)
	r.winLo, r.winHi = r.overall, r.overall
	if len(rates) > 0 {
		r.winLo, r.winHi = slices.Min(rates), slices.Max(rates)
	}
	return r
}

// windowRates is the consumption rate in each full window of length w from
// the first sample on, the counts at window edges interpolated between
// samples.
func windowRates(s []consumedSample, w time.Duration) []float64 {
	at := func(t time.Time) float64 {
		j := slices.IndexFunc(s, func(x consumedSample) bool { return !x.at.Before(t) })
		if j <= 0 {
			return float64(s[max(j, 0)].consumed)
		}
		a, b := s[j-1], s[j]
		f := float64(t.Sub(a.at)) / float64(b.at.Sub(a.at))
		return float64(a.consumed) + f*float64(b.consumed-a.consumed)
	}
	var rates []float64
	for t0 := s[0].at; !t0.Add(w).After(s[len(s)-1].at); t0 = t0.Add(w) {
		rates = append(rates, (at(t0.Add(w))-at(t0))/w.Seconds())
	}
	return rates
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// bar is one line of the section's chart.
type bar struct {
	label string
	value float64
}

// chart draws bars scaled to the largest, in a code block.
func chart(b *strings.Builder, bars []bar) {
	width := 0
	hi := 0.0
	for _, x := range bars {
		width = max(width, len([]rune(x.label)))
		if !math.IsNaN(x.value) { // every run of it failed
			hi = max(hi, x.value)
		}
	}
	b.WriteString("```\n")
	for _, x := range bars {
		if math.IsNaN(x.value) {
			fmt.Fprintf(b, "%-*s –\n", width, x.label)
			continue
		}
		n := 0
		if hi > 0 {
			n = int(x.value/hi*48 + 0.5)
		}
		fmt.Fprintf(b, "%-*s %s %.0f\n", width, x.label, strings.Repeat("█", n), x.value)
	}
	b.WriteString("```\n")
}

// reportScale is the scale section: drain rate for 1, 2 and 3 nodes on this
// machine, for 1, 10 and 100 bindings on one node, and peak shaving.
func reportScale(t *testing.T, b *strings.Builder, module string) {
	load0 := loadavg()
	started := time.Now()
	busy0, cpu0 := machineBusy(), cpuTime()
	fmt.Fprintf(b, "\n## (e) Scaling: nodes, bindings, peak shaving\n\n")
	fmt.Fprintf(b, "Every run starts fresh `sluice run` processes (non-race build, `--log-level warn`, temporary data directories; "+
		"`testenv.StartCluster`, several nodes form a NATS cluster on 127.0.0.1), all on this one machine, with the no-op guest "+
		"shared by every binding. Drain runs: pause every binding's consumer (as `sluice pause` does), publish the backlog of "+
		"%d-byte events (async, 4000 outstanding), resume every consumer at one instant (its pause deadline moved there) and time that "+
		"instant → every queue stream empty (polled every %s): drain s. Stalls: periods of %s or more in which a stream held "+
		"events and none left it. After a pause the consumers sometimes stop pulling for about 30 s, with no pull request "+
		"waiting at the consumer, until the client's pull expires; seen in 3 of 16 trials with a pause and none of 8 without. "+
		"That is the pause's after-effect, not the drain rate: events/s = backlog / (drain s − stalls). CPU = user+sys of the node processes and their workers during the drain, / events. "+
		"RSS = the node processes (and their workers) after the drain, summed over nodes. Fast = `sync = \"1s\"`, durable = "+
		"`sync = \"always\"` (default). The publisher and the poller are this test process (not in the CPU figures). "+
		"%d repetitions per point, the cases of a table interleaved and their order rotated each repetition; median (min–max). "+
		"(Resuming with `sluice resume` instead would time nats-server rather than sluice: a resume does not wake a paused pull "+
		"consumer, whose backlog then waits for the next new event or pull request — 12 s in a trial here.)\n",
		payloadSize, scalePoll, scaleStall, *scaleReps)

	var bars []bar
	storageCases := []bool{false}
	if *scaleNDurable > 0 {
		storageCases = append(storageCases, true)
	}

	// Nodes.
	var nodeFailed []string
	fmt.Fprintf(b, "\n### Nodes: one queue, concurrency %d on every node\n\n", nodeConcurrency)
	fmt.Fprintf(b, "Backlog %d events (fast), %d (durable). Replicas = nodes unless stated; with replicas = 1 the stream "+
		"lives on one node and the others only add consumers. Every node shares this machine's %d cores: more nodes here "+
		"measure what clustering costs (replication, routing, more processes), not added capacity. Durable with replicas > 1: "+
		"nats-server then fsyncs the stream's raft log, a batch of writes at a time, instead of every write to the stream's "+
		"store (SyncOnFlush), hence the much faster durable publish on 2–3 nodes.\n\n", *scaleN, *scaleNDurable, runtime.NumCPU())
	fmt.Fprintf(b, "| storage | nodes | replicas | invocation slots | events/s | × 1 node | drain s | stalls | CPU µs/event | publish backlog s | RSS MiB nodes / with workers | workers |\n")
	fmt.Fprintf(b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, durable := range storageCases {
		events := *scaleN
		if durable {
			events = *scaleNDurable
		}
		cases := []drainCase{}
		for n := 1; n <= 3; n++ {
			cases = append(cases, drainCase{durable: durable, nodes: n, replicas: n, bindings: 1, concurrency: nodeConcurrency, events: events})
		}
		if *scaleR1 && !durable {
			for n := 2; n <= 3; n++ {
				cases = append(cases, drainCase{durable: durable, nodes: n, replicas: 1, bindings: 1, concurrency: nodeConcurrency, events: events})
			}
		}
		res, failed := runDrains(t, module, cases)
		nodeFailed = append(nodeFailed, failed...)
		for i, c := range cases {
			eps := drainStats(res[i], func(r drainResult) float64 { return r.eventsPerSec })
			fmt.Fprintf(b, "| %s | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.storage(), c.nodes, c.replicas,
				c.nodes*c.concurrency, summarize(eps).fmt("%.0f"), summarize(drainRatios(res[i], res[0])).fmt("%.2f"),
				summarize(drainStats(res[i], func(r drainResult) float64 { return r.drain.Seconds() })).fmt("%.1f"),
				stallNote(res[i]),
				summarize(drainStats(res[i], func(r drainResult) float64 { return us(r.cpuPerEvent) })).fmt("%.0f"),
				summarize(drainStats(res[i], func(r drainResult) float64 { return r.publish.Seconds() })).fmt("%.1f"),
				summarize(drainStats(res[i], func(r drainResult) float64 { return mib(r.nodeRSS) })).fmt("%.0f")+" / "+
					summarize(drainStats(res[i], func(r drainResult) float64 { return mib(r.treeRSS) })).fmt("%.0f"),
				summarize(drainStats(res[i], func(r drainResult) float64 { return float64(r.workers) })).fmt("%.0f"))
			bars = append(bars, bar{fmt.Sprintf("%s, %s, R%d", c.storage(), plural(c.nodes, "node"), c.replicas), summarize(eps).med})
		}
	}

	fmt.Fprint(b, failedNote(nodeFailed))

	// Bindings.
	fmt.Fprintf(b, "\n### Bindings: one node, B queues of concurrency 1\n\n")
	fmt.Fprintf(b, "Each queue has its own subject, stream and consumer and invokes the one shared no-op function; the backlog of "+
		"%d events (fast storage) is spread evenly over the queues. A node starts with one worker per function; more start "+
		"when bindings invoke at once, up to one per binding (each a process with the module loaded), and starting them is "+
		"inside the timed drain.\n\n", *scaleN)
	fmt.Fprintf(b, "| bindings | events per binding | events/s | × 1 binding | drain s | stalls | CPU µs/event | RSS MiB node | RSS MiB node + workers | workers |\n")
	fmt.Fprintf(b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	var bcases []drainCase
	for _, n := range []int{1, 10, 100} {
		bcases = append(bcases, drainCase{nodes: 1, bindings: n, concurrency: 1, events: *scaleN / n * n})
	}
	bres, bfailed := runDrains(t, module, bcases)
	for i, c := range bcases {
		eps := drainStats(bres[i], func(r drainResult) float64 { return r.eventsPerSec })
		fmt.Fprintf(b, "| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.bindings, c.events/c.bindings,
			summarize(eps).fmt("%.0f"), summarize(drainRatios(bres[i], bres[0])).fmt("%.2f"),
			summarize(drainStats(bres[i], func(r drainResult) float64 { return r.drain.Seconds() })).fmt("%.1f"),
			stallNote(bres[i]),
			summarize(drainStats(bres[i], func(r drainResult) float64 { return us(r.cpuPerEvent) })).fmt("%.0f"),
			summarize(drainStats(bres[i], func(r drainResult) float64 { return mib(r.nodeRSS) })).fmt("%.0f"),
			summarize(drainStats(bres[i], func(r drainResult) float64 { return mib(r.treeRSS) })).fmt("%.0f"),
			summarize(drainStats(bres[i], func(r drainResult) float64 { return float64(r.workers) })).fmt("%.0f"))
		bars = append(bars, bar{fmt.Sprintf("fast, 1 node, %s", plural(c.bindings, "binding")), summarize(eps).med})
	}
	fmt.Fprint(b, failedNote(bfailed))

	if *peakN > 0 || *peakNDurable > 0 {
		bars = append(bars, reportPeak(t, b, module)...)
	}

	fmt.Fprintf(b, "\n### events/s per configuration (medians)\n\n")
	chart(b, bars)
	wall := time.Since(started)
	// cpuTime counts the nodes once they exited and were waited for, with
	// the workers they waited for: every run's nodes are stopped by then.
	others := max(0, machineBusy()-busy0-(cpuTime()-cpu0))
	fmt.Fprintf(b, "\nScale section: %s; load average at start %s, at end %s; CPU used by other processes on the machine "+
		"meanwhile: %.0f core-seconds (%.0f%% of %d cores).\n", wall.Round(time.Second), load0, loadavg(),
		others.Seconds(), 100*others.Seconds()/wall.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU())
}

// reportPeak is the peak-shaving part of the scale section; it returns its
// bars for the chart.
func reportPeak(t *testing.T, b *strings.Builder, module string) []bar {
	var bars []bar
	fmt.Fprintf(b, "\n### Peak shaving: one node, a queue with rate = \"%d/s\", concurrency %d\n\n", peakRate, peakConcurrency)
	fmt.Fprintf(b, "The whole burst is published as fast as JetStream takes it (async, 4000 outstanding) while the queue "+
		"consumes at its rate (scale/peak_test.go's setting, with the no-op guest). Consumed = the stream's last sequence − "+
		"what it holds, sampled every 100 ms with the node's RSS (node, and node + workers). Rate = consumed from the first "+
		"sample with any consumed to the queue empty; \"after publishing\" = what was still queued when the last PubAck came, "+
		"over the time from then to the queue empty (the limiter alone, without the publisher competing for the disk and the "+
		"cores); windows = every full 10 s from the first consumption. Events: %d fast, %d durable. %d run(s) per storage; "+
		"with one run the windows show the spread.\n\n", *peakN, *peakNDurable, *peakReps)
	fmt.Fprintf(b, "| storage | events | publish s | publish events/s | still queued after publishing | drained s | consumed/s | consumed/s after publishing | 10 s windows min–max | max RSS MiB node | max RSS MiB + workers | CPU µs/event | target |\n")
	fmt.Fprintf(b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, durable := range []bool{false, true} {
		events := *peakN
		if durable {
			events = *peakNDurable
		}
		if events <= 0 {
			continue
		}
		st := "fast"
		if durable {
			st = "durable"
		}
		var rs []peakResult
		for rep := range *peakReps {
			t.Run(fmt.Sprintf("peak/%s/%d", st, rep), func(t *testing.T) {
				r := peakRun(t, module, durable, events)
				t.Logf("peak %s: %+v", st, r)
				rs = append(rs, r)
			})
		}
		if len(rs) == 0 {
			fmt.Fprintf(b, "| %s | %d | failed (see the test log) | | | | | | | | | | |\n", st, events)
			continue
		}
		rate := summarize(pick(rs, func(r peakResult) float64 { return r.overall }))
		maxNode := summarize(pick(rs, func(r peakResult) float64 { return mib(r.maxNode) }))
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "missed"
		}
		target := fmt.Sprintf("%d/s ± 10%%: **%s**; node < %d MiB: **%s**", peakRate,
			verdict(rate.lo >= 0.9*peakRate && rate.hi <= 1.1*peakRate), peakRSSTarget>>20, verdict(maxNode.hi < mib(peakRSSTarget)))
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s – %s | %s | %s | %s | %s |\n", st, events,
			summarize(pick(rs, func(r peakResult) float64 { return r.publish.Seconds() })).fmt("%.1f"),
			summarize(pick(rs, func(r peakResult) float64 { return float64(events) / r.publish.Seconds() })).fmt("%.0f"),
			summarize(pick(rs, func(r peakResult) float64 { return float64(r.backlog) })).fmt("%.0f"),
			summarize(pick(rs, func(r peakResult) float64 { return r.drain.Seconds() })).fmt("%.1f"),
			rate.fmt("%.0f"),
			summarize(pick(rs, func(r peakResult) float64 { return r.after })).fmt("%.0f"),
			summarize(pick(rs, func(r peakResult) float64 { return r.winLo })).fmt("%.0f"),
			summarize(pick(rs, func(r peakResult) float64 { return r.winHi })).fmt("%.0f"),
			maxNode.fmt("%.0f"),
			summarize(pick(rs, func(r peakResult) float64 { return mib(r.maxTree) })).fmt("%.0f"),
			summarize(pick(rs, func(r peakResult) float64 { return us(r.cpuPerEvent) })).fmt("%.0f"),
			target)
		bars = append(bars, bar{fmt.Sprintf("%s, peak shaving (rate %d/s)", st, peakRate), rate.med})
	}
	return bars
}

// runDrains runs every case *scaleReps times, the cases interleaved and
// their order rotated each repetition (as the other sections do, so that a
// change in the machine's load spreads over all of them). Each run is a
// subtest, so that its nodes are stopped and its directories removed
// before the next starts. A run that fails (a node that does not start
// on a loaded machine) is run once more so that the table keeps its
// repetitions; it still fails the test, and the report names it.
// res[case][rep] is nil where both tries failed.
func runDrains(t *testing.T, module string, cases []drainCase) (res [][]*drainResult, failed []string) {
	res = make([][]*drainResult, len(cases))
	for i := range res {
		res[i] = make([]*drainResult, *scaleReps)
	}
	for rep := range *scaleReps {
		for k := range cases {
			i := (k + rep) % len(cases)
			c := cases[i]
			name := fmt.Sprintf("scale/%s/nodes=%d/R%d/bindings=%d/%d", c.storage(), c.nodes, c.replicas, c.bindings, rep)
			run := func(t *testing.T) {
				r := drainRun(t, module, c)
				t.Logf("%s: %.0f events/s, publish %s, CPU %s/event, RSS %.0f / %.0f MiB, %d workers", name, r.eventsPerSec,
					r.publish.Round(time.Millisecond), r.cpuPerEvent, mib(r.nodeRSS), mib(r.treeRSS), r.workers)
				res[i][rep] = &r
			}
			if !t.Run(name, run) {
				again := "passed when run again"
				if !t.Run(name+"/again", run) {
					again = "failed again: the row has one run fewer"
				}
				failed = append(failed, name+" ("+again+")")
			}
		}
	}
	return res, failed
}

// drainStats picks f of the runs that completed.
func drainStats(rs []*drainResult, f func(drainResult) float64) []float64 {
	var out []float64
	for _, r := range rs {
		if r != nil {
			out = append(out, f(*r))
		}
	}
	return out
}

// drainRatios is events/s of rs over base's, paired by repetition.
func drainRatios(rs, base []*drainResult) []float64 {
	var out []float64
	for rep := range min(len(rs), len(base)) {
		if rs[rep] != nil && base[rep] != nil {
			out = append(out, rs[rep].eventsPerSec/base[rep].eventsPerSec)
		}
	}
	return out
}

// stallNote says how many runs stalled and for how long.
func stallNote(rs []*drainResult) string {
	runs := 0
	var stalled []string
	for _, r := range rs {
		if r == nil {
			continue
		}
		runs++
		if r.stalled > 0 {
			stalled = append(stalled, fmt.Sprintf("%.0f s", r.stalled.Seconds()))
		}
	}
	if len(stalled) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d of %d runs: %s", len(stalled), runs, strings.Join(stalled, ", "))
}

// failedNote is a line that names the runs that failed, if any.
func failedNote(failed []string) string {
	if len(failed) == 0 {
		return ""
	}
	return fmt.Sprintf("\nRuns that failed (the test log has the nodes' output): %s.\n", strings.Join(failed, "; "))
}
