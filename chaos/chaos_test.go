package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

var (
	long        = flag.Bool("chaos.long", os.Getenv("SLUICE_CHAOS_LONG") != "", "the long run: 20 kills of a durable node, 10 of a fast one, 6 in a cluster (also SLUICE_CHAOS_LONG=1)")
	markdown    = flag.Bool("chaos.markdown", false, "print the results as the Markdown table the README quotes")
	publishRate = flag.Int("chaos.rate", 0, "events published per second (default 500, 2000 with -chaos.long): more are in flight at each kill")
)

// scenario is one chaos run: nodes started with nats lines, events
// published while kills nodes are killed one after another.
type scenario struct {
	name   string
	nodes  int
	nats   string
	events int
	kills  int
	perSec int
}

// The streams whose leaders a cluster run kills, in turn.
var (
	queueStream  = "SLUICE_Q_" + binding
	deadLetters  = triggers.DeadLetterStreamName(binding)
	statusStream = "KV_" + triggers.StatusBucket
	roles        = []struct{ role, stream string }{
		{"queue leader", queueStream},
		{"dead-letter leader", deadLetters},
		{"status leader", statusStream},
	}
)

const (
	binding = "work"
	subject = "work.in"
	// body is every node's config below its nats block: one queue whose
	// function records an effect per event, and fails the events that ask
	// to, which are dead-lettered after two attempts.
	body = `
function "fx" {
  module  = %q
  timeout = "2s"
  publish = ["effects.>"]
  env     = { EFFECT_SUBJECT = "effects.work", EFFECT_BY = "fx" }
}

queue "work" {
  subject     = "work.in"
  function    = "fx"
  concurrency = 4
  retry {
    max_attempts = 2
    initial      = "100ms"
    max          = "200ms"
  }
}
`
)

func scenarios() []scenario {
	durable, fast, cluster := 3, 2, 3
	durableEvents, fastEvents, clusterEvents := 1500, 1000, 1500
	perSec := 500
	if *long {
		durable, fast, cluster = 20, 10, 6
		durableEvents, fastEvents, clusterEvents = 20_000, 10_000, 6000
		perSec = 2000
	}
	if *publishRate > 0 {
		perSec = *publishRate
	}
	return []scenario{
		{name: "single-durable", nodes: 1, nats: `  sync = "always"`, events: durableEvents, kills: durable, perSec: perSec},
		{name: "single-fast", nodes: 1, nats: `  sync = "1s"`, events: fastEvents, kills: fast, perSec: perSec},
		// In a cluster a write is on two of three nodes before its
		// acknowledgement, which is what survives a node's loss.
		{name: "cluster-r3", nodes: 3, nats: "  sync = \"1s\"\n  replicas = 3", events: clusterEvents, kills: cluster, perSec: perSec},
	}
}

// TestChaos kills nodes with SIGKILL while an outside publisher sends
// events (a tenth of which fail until they are dead-lettered) and checks,
// once everything drained, that no acknowledged event was lost (each has
// an effect or a dead letter), that every dead-lettered status has its
// dead letter, and that no status is left unfinished. Re-runs and restart
// times are reported, not asserted.
func TestChaos(t *testing.T) {
	wasm := testenv.Guest(t, "internal/testguests/effect")
	var results []result
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			res := run(t, sc, wasm)
			results = append(results, res)
			res.log(t)
			res.check(t)
		})
	}
	if len(results) > 0 {
		t.Log("\n" + table(results))
		if *markdown {
			t.Log("\n" + markdownTable(results))
		}
	}
}

func run(t *testing.T, sc scenario, wasm string) result {
	e := startEnsemble(t, sc.nodes, sc.nats, fmt.Sprintf(body, wasm))
	// The publisher reconnects as soon as a node is back: restart times are
	// measured, not the client's backoff.
	nc, err := nats.Connect(e.urls(), nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(int) time.Duration { return 50 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	makeEffectsStream(t, js, sc.nodes)

	res := result{scenario: sc}
	pub := publish(js, subject, sc.events, sc.perSec, 4)
	t.Cleanup(pub.stop)
	var killedAt []time.Time
	for k := range sc.kills {
		want := int64((k + 1) * sc.events / (sc.kills + 1))
		testenv.Eventually(t, 3*time.Minute, fmt.Sprintf("%d events acknowledged before kill %d", want, k+1), func() bool {
			return pub.acked.Load() >= want
		})
		target, role := e.nodes[0], "node"
		if sc.nodes > 1 {
			r := roles[k%len(roles)]
			role = r.role
			target = e.byName(leader(t, js, r.stream, time.Minute))
		}
		killedAt = append(killedAt, time.Now())
		rs := target.kill9(t, role)
		if sc.nodes > 1 {
			rs.caughtUp = waitCurrent(t, js, []string{queueStream, deadLetters, statusStream, effectsStream}, 2*time.Minute)
		}
		res.restarts = append(res.restarts, rs)
		t.Logf("kill %d: %s (%s) ready again after %s; slowest start step: %s", k+1, rs.node, rs.role, rs.took.Round(time.Millisecond), rs.slowest())
	}
	pub.wait(t, 3*time.Minute)
	res.published, res.acked, res.resends = int(pub.published.Load()), int(pub.acked.Load()), int(pub.resends.Load())
	acked := pub.acknowledged()

	effects, dls := drain(t, js, acked)
	res.count(acked, effects, dls, killedAt)
	res.statuses(t, js, dls)
	return res
}

// makeEffectsStream creates the stream the functions' effects go to,
// replicated on every node.
func makeEffectsStream(t *testing.T, js jetstream.JetStream, replicas int) {
	t.Helper()
	testenv.Eventually(t, time.Minute, "the effects stream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: effectsStream, Subjects: []string{"effects.>"}, Storage: jetstream.FileStorage, Replicas: replicas,
		})
		return err == nil || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse)
	})
}

// drainQuiet is how long the queue must stay empty, with events still
// unaccounted for, before they are counted as lost: longer than the
// consumer's AckWait, after which an unsettled event comes back.
const drainQuiet = 20 * time.Second

// drain waits until the queue is empty and every acknowledged event has
// an effect or a dead letter, or the queue stayed empty for drainQuiet
// without that, and returns the effects and dead letters.
func drain(t *testing.T, js jetstream.JetStream, acked map[string]bool) ([]effect, map[string]int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	var emptySince time.Time
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		effects, errE := readEffects(ctx, js)
		dls, errD := readDeadLetters(ctx, js, binding)
		s, errS := js.Stream(ctx, queueStream)
		cancel()
		if errE == nil && errD == nil && errS == nil {
			if s.CachedInfo().State.Msgs > 0 {
				emptySince = time.Time{}
			} else if emptySince.IsZero() {
				emptySince = time.Now()
			}
			done := map[string]bool{}
			for _, e := range effects {
				done[e.id] = true
			}
			missing := 0
			for id := range acked {
				if !done[id] && dls[id] == 0 {
					missing++
				}
			}
			if !emptySince.IsZero() && (missing == 0 || time.Since(emptySince) > drainQuiet) {
				return effects, dls
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained after 5m (errors: %v, %v, %v)", errE, errD, errS)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// result is what one scenario measured.
type result struct {
	scenario  scenario
	published int
	acked     int
	resends   int
	effected  int // events with at least one effect
	reruns    int // effects beyond an event's first
	// rerunsPerKill counts the re-runs stored after each kill (and before
	// the next); rerunsBefore those before the first kill.
	rerunsPerKill []int
	rerunsBefore  int
	deadLetters   int      // events with a dead letter
	unexpectedDL  int      // dead letters of events that did not ask to fail
	unexpectedIDs []string // their ids, and then their statuses' last errors
	lost          []string // acknowledged, neither effected nor dead-lettered
	lostFailing   int      // of those, events that asked to fail
	dlNoLetter    []string // statuses dead_lettered without a dead letter
	nonFinal      []string // statuses still queued, running or retrying
	statusCount   int
	restarts      []restart
}

// count compares what was acknowledged with the effects and dead letters.
func (r *result) count(acked map[string]bool, effects []effect, dls map[string]int, killedAt []time.Time) {
	seen := map[string]int{}
	r.rerunsPerKill = make([]int, len(killedAt))
	slices.SortFunc(effects, func(a, b effect) int { return a.at.Compare(b.at) })
	for _, e := range effects {
		seen[e.id]++
		if seen[e.id] == 1 {
			continue
		}
		r.reruns++
		k := -1
		for i, at := range killedAt {
			if !e.at.Before(at) {
				k = i
			}
		}
		if k < 0 {
			r.rerunsBefore++
		} else {
			r.rerunsPerKill[k]++
		}
	}
	r.effected = len(seen)
	for id, n := range dls {
		if n > 0 {
			r.deadLetters++
			if fail, ok := acked[id]; ok && !fail {
				r.unexpectedDL++
				r.unexpectedIDs = append(r.unexpectedIDs, id)
			}
		}
	}
	for id := range acked {
		if seen[id] == 0 && dls[id] == 0 {
			r.lost = append(r.lost, id)
			if acked[id] {
				r.lostFailing++
			}
		}
	}
	slices.Sort(r.lost)
}

// statuses reads the status bucket until no status is left unfinished,
// for at most 30 s (the last writes of a drain are asynchronous).
func (r *result) statuses(t *testing.T, js jetstream.JetStream, dls map[string]int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		sts, err := readStatuses(ctx, js)
		cancel()
		if err == nil {
			r.statusCount, r.nonFinal, r.dlNoLetter = len(sts), nil, nil
			for _, st := range sts {
				switch {
				case !st.Final():
					r.nonFinal = append(r.nonFinal, st.ID+" "+st.State)
				case st.State == triggers.StateDeadLettered && dls[st.ID] == 0:
					r.dlNoLetter = append(r.dlNoLetter, st.ID)
				}
				if i := slices.Index(r.unexpectedIDs, st.ID); i >= 0 {
					r.unexpectedIDs[i] = fmt.Sprintf("%s (%s: %s)", st.ID, st.ErrorKind, st.Error)
				}
			}
			if len(r.nonFinal) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Errorf("status bucket: %v", err)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (r result) log(t *testing.T) {
	t.Helper()
	var took []string
	for _, rs := range r.restarts {
		s := fmt.Sprintf("%s(%s) %s [%s]", rs.node, rs.role, rs.took.Round(time.Millisecond), rs.slowest())
		if rs.caughtUp > 0 {
			s += fmt.Sprintf(" +%s to catch up", rs.caughtUp.Round(time.Millisecond))
		}
		took = append(took, s)
	}
	t.Logf("%s: published %d (%d resends), acknowledged %d, effected %d, re-runs %d (before the first kill %d, per kill %v), dead letters %d (%d of events that did not ask to fail), lost %d, statuses %d (dead-lettered without a dead letter %d, non-final %d)\nrestarts: %s",
		r.scenario.name, r.published, r.resends, r.acked, r.effected, r.reruns, r.rerunsBefore, r.rerunsPerKill,
		r.deadLetters, r.unexpectedDL, len(r.lost), r.statusCount, len(r.dlNoLetter), len(r.nonFinal), strings.Join(took, "; "))
	if len(r.unexpectedIDs) > 0 {
		t.Logf("%s: dead-lettered though meant to succeed: %v", r.scenario.name, first(r.unexpectedIDs))
	}
}

// check turns the correctness numbers into test failures.
func (r result) check(t *testing.T) {
	t.Helper()
	if r.acked != r.scenario.events {
		t.Errorf("%d of %d events acknowledged", r.acked, r.scenario.events)
	}
	if len(r.lost) > 0 {
		t.Errorf("%d acknowledged events lost (no effect, no dead letter), %d of them events that asked to fail (their dead letter is missing): %v",
			len(r.lost), r.lostFailing, first(r.lost))
	}
	if len(r.dlNoLetter) > 0 {
		t.Errorf("%d statuses say dead_lettered with no dead letter stored: %v", len(r.dlNoLetter), first(r.dlNoLetter))
	}
	if len(r.nonFinal) > 0 {
		t.Errorf("%d statuses not final after the drain: %v", len(r.nonFinal), first(r.nonFinal))
	}
}

func first(s []string) []string { return s[:min(len(s), 10)] }

// restartStats are the median and largest restart times.
func (r result) restartStats() (p50, worst time.Duration) {
	var ds []time.Duration
	for _, rs := range r.restarts {
		ds = append(ds, rs.took)
	}
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)-1]
}

func (r result) maxRerunsPerKill() int {
	m := 0
	for _, n := range r.rerunsPerKill {
		m = max(m, n)
	}
	return m
}

var columns = []string{"scenario", "kills", "published", "acknowledged", "effected", "lost", "re-runs", "re-runs/kill (max)",
	"dead letters (of events meant to succeed)", "dead-lettered statuses without one", "non-final statuses", "restart p50", "restart max"}

func (r result) row() []string {
	p50, worst := r.restartStats()
	perKill := "-"
	if len(r.restarts) > 0 {
		perKill = fmt.Sprintf("%.1f (%d)", float64(r.reruns-r.rerunsBefore)/float64(len(r.restarts)), r.maxRerunsPerKill())
	}
	return []string{r.scenario.name, fmt.Sprint(len(r.restarts)), fmt.Sprint(r.published), fmt.Sprint(r.acked),
		fmt.Sprint(r.effected), fmt.Sprint(len(r.lost)), fmt.Sprint(r.reruns), perKill, fmt.Sprintf("%d (%d)", r.deadLetters, r.unexpectedDL),
		fmt.Sprint(len(r.dlNoLetter)), fmt.Sprint(len(r.nonFinal)),
		p50.Round(10 * time.Millisecond).String(), worst.Round(10 * time.Millisecond).String()}
}

func table(results []result) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(columns, "\t"))
	for _, r := range results {
		fmt.Fprintln(tw, strings.Join(r.row(), "\t"))
	}
	tw.Flush()
	return b.String()
}

func markdownTable(results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| %s |\n", strings.Join(columns, " | "))
	fmt.Fprintf(&b, "|%s\n", strings.Repeat(" --- |", len(columns)))
	for _, r := range results {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r.row(), " | "))
	}
	return b.String()
}
