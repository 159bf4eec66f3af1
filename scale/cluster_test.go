package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
	sluiceruntime "github.com/sluice-run/sluice/runtime"
)

// clusterSync is the fast durability setting: in a cluster every write is
// on a majority of the nodes before it is acknowledged, which is what
// survives losing a node; syncing each write to disk as well (the default)
// makes these runs about three times longer on this test's one shared
// disk (measured: 75 s instead of 26 s for the first run).
const clusterSync = `  sync = "1s"`

// clusterBody is the runtime.hcl of every node, without its nats block.
// The functions are one module told apart by their environment: each
// records its effect in the EFFECTS stream, with the event's id.
const clusterBody = `
metrics {
  listen = "127.0.0.1:0"
}

function "q_fn" {
  module  = "effect.wasm"
  timeout = "2s"
  publish = ["effects.>"]
  env     = { EFFECT_SUBJECT = "effects.q", EFFECT_BY = "q" }
}

function "a_fn" {
  module  = "effect.wasm"
  timeout = "2s"
  publish = ["effects.>"]
  env     = { EFFECT_SUBJECT = "effects.t.a", EFFECT_BY = "a" }
}

function "b_fn" {
  module  = "effect.wasm"
  timeout = "2s"
  publish = ["effects.>"]
  env     = { EFFECT_SUBJECT = "effects.t.b", EFFECT_BY = "b" }
}

# Publishes where it may not: every invocation fails.
function "denied" {
  module  = "effect.wasm"
  timeout = "2s"
  publish = ["effects.>"]
  env     = { EFFECT_SUBJECT = "forbidden.x" }
}

queue "q" {
  subject     = "work.q"
  function    = "q_fn"
  concurrency = 4
}

# Its rate is the cluster's: each of three nodes takes a third.
queue "paced" {
  subject     = "work.paced"
  function    = "q_fn"
  concurrency = 2
  rate        = "300/s"
}

queue "bad" {
  subject  = "work.bad"
  function = "denied"
  retry {
    max_attempts = 2
    initial      = "100ms"
  }
}

topic "t" {
  subject = "news.t"
  subscriber "a" {
    function    = "a_fn"
    concurrency = 2
  }
  subscriber "b" {
    function    = "b_fn"
    concurrency = 2
  }
}
`

// readEffects reads the EFFECTS stream: effect counts by subject, then id.
func readEffects(t *testing.T, js jetstream.JetStream) map[string]map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, "EFFECTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	out := map[string]map[string]int{}
	for read := uint64(0); read < info.State.Msgs; read++ {
		m, err := it.Next()
		if err != nil {
			t.Fatalf("read effect %d of %d: %v", read+1, info.State.Msgs, err)
		}
		var v struct{ ID string }
		if err := json.Unmarshal(m.Data(), &v); err != nil || v.ID == "" {
			t.Fatalf("effect without an id on %s: %q", m.Subject(), m.Data())
		}
		if out[m.Subject()] == nil {
			out[m.Subject()] = map[string]int{}
		}
		out[m.Subject()][v.ID]++
	}
	return out
}

// publishAll publishes count events {"id": prefix+N} to subject and waits
// for every PubAck. A publish that fails (a stream leader moving after a
// node died) is sent again: its message id makes that safe.
func publishAll(t *testing.T, js jetstream.JetStream, subject, prefix string, count int) {
	t.Helper()
	var mu sync.Mutex
	var failed []*nats.Msg
	ajs, err := jetstream.New(js.Conn(),
		jetstream.WithPublishAsyncMaxPending(2048),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			mu.Lock()
			failed = append(failed, m)
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range count {
		id := fmt.Sprintf("%s%05d", prefix, i)
		m := &nats.Msg{Subject: subject, Data: fmt.Appendf(nil, `{"id":%q}`, id)}
		if _, err := ajs.PublishMsgAsync(m, jetstream.WithMsgID(id), jetstream.WithStallWait(time.Minute)); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
	}
	select {
	case <-ajs.PublishAsyncComplete():
	case <-time.After(3 * time.Minute):
		t.Fatalf("PubAcks still pending after 3m: %d", ajs.PublishAsyncPending())
	}
	ctx := context.Background()
	for _, m := range failed {
		if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(m.Header.Get(nats.MsgIdHdr)), jetstream.WithRetryAttempts(20)); err != nil {
			t.Fatalf("publish %s again: %v", m.Header.Get(nats.MsgIdHdr), err)
		}
	}
}

// nodeWork reads what every live node last announced: invocations of
// binding, by node name.
func nodeWork(t *testing.T, js jetstream.JetStream, binding string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, sluiceruntime.NodesBucket)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var st sluiceruntime.NodeState
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			t.Fatal(err)
		}
		out[st.Name] = st.Bindings[binding].Invocations
	}
	return out
}

// sluiceCLI runs the sluice CLI against server and returns its stdout.
func sluiceCLI(t *testing.T, server string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.SluiceBinary(t), append(args, "--server", server)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sluice %s --server %s: %v\n%s%s", strings.Join(args, " "), server, err, out, stderr.String())
	}
	return string(out)
}

// TestCluster runs three nodes as a NATS cluster with every stream
// replicated three times. A queue's 30,000 events are each handled once
// across the nodes, all of which take a share; each of a topic's two
// subscribers handles each event once in total; the CLI works through any
// node. Then a node is killed with SIGKILL in the middle of another 30,000
// events: none is lost, the survivors take its share, and the duplicates
// (events whose invocation ran on the dead node but whose ack never
// arrived) are counted.
func TestCluster(t *testing.T) {
	const (
		queueEvents = 30_000
		topicEvents = 3_000
	)
	wasm, err := os.ReadFile(testenv.Guest(t, "internal/testguests/effect"))
	if err != nil {
		t.Fatal(err)
	}
	// The module file sits beside the config of the first two nodes only:
	// the third must fetch it from the module store.
	start := time.Now()
	c := testenv.StartCluster(t, testenv.ClusterSpec{
		Nodes: 3, Body: clusterBody, NATS: clusterSync,
		Files: map[string][]byte{"effect.wasm": wasm}, FilesOn: 2,
		Args: []string{"--log-level", "warn"},
	})
	t.Logf("3 nodes ready after %s", time.Since(start).Round(time.Millisecond))
	_, js := testenv.Connect(t, strings.Join(c.URLs[:2], ","))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "EFFECTS", Subjects: []string{"effects.>"}, Storage: jetstream.FileStorage, Replicas: 3,
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"SLUICE_Q_q", "SLUICE_T_t", "KV_sluice_status", "OBJ_sluice_modules"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}

	// The CLI through any node: a dead letter made on whichever node,
	// seen through another; an outcome awaited through one node, its
	// status read through a third.
	var pub struct {
		ID       string
		Outcomes []struct{ Binding, State string }
	}
	out := sluiceCLI(t, c.URLs[1], "publish", "work.q", `{"id":"probe"}`, "--id", "probe", "--wait", "--json")
	if err := json.Unmarshal([]byte(out), &pub); err != nil || len(pub.Outcomes) != 1 || pub.Outcomes[0].State != "succeeded" {
		t.Fatalf("publish --wait through n2: %v\n%s", err, out)
	}
	if out := sluiceCLI(t, c.URLs[2], "status", "probe"); !strings.Contains(out, "succeeded") {
		t.Errorf("status through n3 does not say succeeded:\n%s", out)
	}
	sluiceCLI(t, c.URLs[0], "publish", "work.bad", `{"id":"bad"}`, "--id", "bad-1")
	testenv.Eventually(t, time.Minute, "the dead letter of bad-1 listed through n3", func() bool {
		return strings.Contains(sluiceCLI(t, c.URLs[2], "dlq", "ls", "bad"), "bad-1")
	})

	// A binding's rate holds across the cluster, not per node: once the
	// nodes know one another, each takes a third.
	testenv.Eventually(t, 30*time.Second, "the three nodes to announce themselves", func() bool {
		return len(nodeWork(t, js, "paced")) == 3
	})
	const pacedEvents = 3000
	start = time.Now()
	publishAll(t, js, "work.paced", "p-", pacedEvents)
	testenv.Eventually(t, 2*time.Minute, "the paced queue to drain", func() bool {
		s := streamState(ctx, js, "SLUICE_Q_paced")
		return s.LastSeq >= pacedEvents && s.Msgs == 0
	})
	paced := float64(pacedEvents) / time.Since(start).Seconds()
	if paced > 1.1*300 {
		t.Errorf("the paced queue drained at %.0f/s across three nodes, above its rate 300/s + 10%%", paced)
	}
	t.Logf("paced queue: %d events at %.0f/s across the cluster (rate 300/s)", pacedEvents, paced)

	// 1: every node takes a share; each event once.
	start = time.Now()
	publishAll(t, js, "work.q", "q1-", queueEvents)
	publishAll(t, js, "news.t", "t1-", topicEvents)
	published := time.Since(start)
	want := uint64(1 + pacedEvents + queueEvents + 2*topicEvents) // with the probe
	testenv.Eventually(t, 5*time.Minute, "every effect of the first run", func() bool {
		return streamState(ctx, js, "EFFECTS").Msgs >= want
	})
	took := time.Since(start)
	effects := readEffects(t, js)
	checkOnce(t, effects["effects.q"], "q1-", queueEvents)
	checkOnce(t, effects["effects.t.a"], "t1-", topicEvents)
	checkOnce(t, effects["effects.t.b"], "t1-", topicEvents)
	var work map[string]uint64
	testenv.Eventually(t, 30*time.Second, "the nodes to announce every invocation", func() bool {
		work = nodeWork(t, js, "q")
		var sum uint64
		for _, n := range work {
			sum += n
		}
		return sum >= queueEvents+1
	})
	for _, n := range []string{"n1", "n2", "n3"} {
		if work[n] == 0 {
			t.Errorf("node %s did no work on queue q: %v", n, work)
		}
	}
	var bindings []struct {
		Binding string
		Nodes   []struct{ Node string }
	}
	if err := json.Unmarshal([]byte(sluiceCLI(t, c.URLs[2], "bindings", "--json")), &bindings); err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings {
		if len(b.Nodes) != 3 {
			t.Errorf("sluice bindings shows %d nodes for %s, want 3", len(b.Nodes), b.Binding)
		}
	}
	var nodes []struct{ Name string }
	if err := json.Unmarshal([]byte(sluiceCLI(t, c.URLs[0], "nodes", "--json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 || nodes[0].Name != "n1" || nodes[1].Name != "n2" || nodes[2].Name != "n3" {
		t.Errorf("sluice nodes = %+v, want n1, n2, n3", nodes)
	}
	if out := sluiceCLI(t, c.URLs[1], "reload"); strings.Count(out, "reloaded n") != 3 {
		t.Errorf("sluice reload through n2 did not reach the three nodes:\n%s", out)
	}
	t.Logf("run 1: published %d queue + %d topic events in %s; all effects after %s (%.0f invocations/s); queue invocations by node: %v",
		queueEvents, topicEvents, published.Round(time.Millisecond), took.Round(time.Millisecond),
		float64(queueEvents+2*topicEvents)/took.Seconds(), work)

	// 2: kill -9 the third node once a third of the run is done.
	before := streamState(ctx, js, "EFFECTS").Msgs
	start = time.Now()
	publishAll(t, js, "work.q", "q2-", queueEvents)
	testenv.Eventually(t, 5*time.Minute, "a third of the second run", func() bool {
		return streamState(ctx, js, "EFFECTS").Msgs >= before+queueEvents/3
	})
	atKill := nodeWork(t, js, "q")
	killedAt := streamState(ctx, js, "EFFECTS").Msgs - before
	c.Nodes[2].Kill9(t)
	testenv.Eventually(t, 5*time.Minute, "every event of the second run handled or dead-lettered", func() bool {
		return streamState(ctx, js, "EFFECTS").Msgs+streamState(ctx, js, "SLUICE_DLQ_q").Msgs >= before+queueEvents
	})
	// Counting effects is not counting events: wait until the queue is
	// empty, so that every event has been settled.
	testenv.Eventually(t, 2*time.Minute, "the queue to empty", func() bool {
		return streamState(ctx, js, "SLUICE_Q_q").Msgs == 0
	})
	took = time.Since(start)
	effects = readEffects(t, js)
	deadLetters := streamState(ctx, js, "SLUICE_DLQ_q").Msgs
	var lost, duplicates []string
	for i := range queueEvents {
		id := fmt.Sprintf("q2-%05d", i)
		switch n := effects["effects.q"][id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			duplicates = append(duplicates, fmt.Sprintf("%s×%d", id, n))
		}
	}
	if len(lost) > int(deadLetters) {
		t.Errorf("%d events of the second run had no effect and only %d were dead-lettered; first: %v", len(lost), deadLetters, lost[:min(len(lost), 10)])
	}
	end := nodeWork(t, js, "q")
	for _, n := range []string{"n1", "n2"} {
		if end[n] <= atKill[n] {
			t.Errorf("survivor %s did no work after the kill: %d invocations then, %d at the end", n, atKill[n], end[n])
		}
	}
	if _, ok := end["n3"]; ok {
		t.Errorf("the killed node n3 is still announced: %v", end)
	}
	slices.Sort(duplicates)
	t.Logf("run 2: n3 killed after %d of %d effects; all events settled after %s; %d dead letters; %d duplicate effects %v; queue invocations by node at the kill %v, at the end %v",
		killedAt, queueEvents, took.Round(time.Millisecond), deadLetters, len(duplicates), duplicates[:min(len(duplicates), 20)], atKill, end)
}

// checkOnce fails the test unless each of the count ids prefix+N has
// exactly one effect.
func checkOnce(t *testing.T, effects map[string]int, prefix string, count int) {
	t.Helper()
	var missing, twice []string
	for i := range count {
		id := fmt.Sprintf("%s%05d", prefix, i)
		switch n := effects[id]; {
		case n == 0:
			missing = append(missing, id)
		case n > 1:
			twice = append(twice, fmt.Sprintf("%s×%d", id, n))
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Errorf("%s: %d of %d events without an effect (first %v), %d with more than one (first %v)",
			prefix, len(missing), count, missing[:min(len(missing), 10)], len(twice), twice[:min(len(twice), 10)])
	}
}
