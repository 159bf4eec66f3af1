package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
)

// node is one sluice node that the harness kills and starts again with
// the same config, data directory and ports.
type node struct {
	name    string
	cfgPath string
	args    []string
	url     string // its NATS client URL
	metrics string // host:port of its /readyz
	proc    *testenv.Node
}

// ensemble is the nodes of one scenario: one node alone, or the nodes of
// an embedded NATS cluster.
type ensemble struct {
	nodes []*node
}

// readyTimeout bounds a node's start; a first start builds nothing (the
// guest is built before), so a longer one is a hang.
const readyTimeout = 3 * time.Minute

// startEnsemble writes each node's config (body below a nats block made of
// natsLines and, for more than one node, a cluster block) and starts them
// all, returning once each answers /readyz.
func startEnsemble(t *testing.T, count int, natsLines, body string) *ensemble {
	t.Helper()
	type ports struct{ client, route, metrics int }
	ps := make([]ports, count)
	var routes []string
	for i := range ps {
		ps[i] = ports{testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)}
		routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats://127.0.0.1:%d", ps[i].route)))
	}
	e := &ensemble{}
	for i, p := range ps {
		cluster := ""
		if count > 1 {
			cluster = fmt.Sprintf("  cluster {\n    listen = \"127.0.0.1:%d\"\n    routes = [%s]\n  }\n", p.route, strings.Join(routes, ", "))
		}
		hcl := fmt.Sprintf("nats {\n  listen = \"127.0.0.1:%d\"\n%s\n%s}\n%s", p.client, natsLines, cluster, body)
		dir := t.TempDir()
		cfgPath := filepath.Join(dir, "runtime.hcl")
		if err := os.WriteFile(cfgPath, []byte(hcl), 0o644); err != nil {
			t.Fatal(err)
		}
		n := &node{
			name: fmt.Sprintf("n%d", i+1), cfgPath: cfgPath,
			url:     fmt.Sprintf("nats://127.0.0.1:%d", p.client),
			metrics: fmt.Sprintf("127.0.0.1:%d", p.metrics),
		}
		n.args = []string{"--name", n.name, "--data", filepath.Join(dir, "data"),
			"--listen", fmt.Sprintf("127.0.0.1:%d", p.client), "--metrics-listen", n.metrics,
			"--log-level", "info", "--no-watch"}
		if count > 1 {
			n.args = append(n.args, "--cluster-listen", fmt.Sprintf("127.0.0.1:%d", p.route))
		}
		e.nodes = append(e.nodes, n)
	}
	// The nodes of a cluster wait for one another: launch all, then wait.
	for _, n := range e.nodes {
		n.launch(t)
	}
	for _, n := range e.nodes {
		n.waitReady(t, time.Now())
	}
	return e
}

func (n *node) launch(t *testing.T) {
	n.proc = testenv.LaunchNode(t, n.name, n.cfgPath, n.args...)
}

// waitReady polls /readyz until it answers 200 and returns how long that
// took from since. It fails the test if the node exits or is not ready
// within readyTimeout.
func (n *node) waitReady(t *testing.T, since time.Time) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get("http://" + n.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(since)
			}
		}
		if n.proc.Exited() {
			t.Fatalf("node %s exited before it was ready:\n%s", n.name, n.proc.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not ready after %s:\n%s", n.name, readyTimeout, n.proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart is one kill -9 and the node's way back.
type restart struct {
	node  string
	role  string        // what the node led when it was killed
	took  time.Duration // kill -> /readyz answers 200
	steps []step        // the start's steps, from its log
	// caughtUp is how long after that every replica was current again
	// (clusters only).
	caughtUp time.Duration
}

// kill9 kills the node (and its workers) with SIGKILL, starts it again on
// the same data, and measures how long it takes until /readyz answers 200.
func (n *node) kill9(t *testing.T, role string) restart {
	t.Helper()
	n.proc.Kill9(t)
	killed := time.Now()
	n.launch(t)
	took := n.waitReady(t, killed)
	return restart{node: n.name, role: role, took: took, steps: startSteps(n.proc.Output())}
}

// step is one step of a runtime's start, as its log reports it.
type step struct {
	name string
	took time.Duration
}

var stepLine = regexp.MustCompile(`msg="start step" .*step="([^"]*)" took=(\S+)`)

// startSteps reads the "start step" lines of a node's log.
func startSteps(out string) []step {
	var steps []step
	for _, m := range stepLine.FindAllStringSubmatch(out, -1) {
		d, err := time.ParseDuration(m[2])
		if err != nil {
			continue
		}
		steps = append(steps, step{name: m[1], took: d})
	}
	return steps
}

// slowest is the restart's slowest step, for the report.
func (r restart) slowest() string {
	var s step
	for _, x := range r.steps {
		if x.took > s.took {
			s = x
		}
	}
	if s.name == "" {
		return "-"
	}
	return fmt.Sprintf("%s %s", s.name, s.took.Round(10*time.Millisecond))
}

// byName returns the node called name.
func (e *ensemble) byName(name string) *node {
	for _, n := range e.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// urls is every node's client URL, for a client that fails over.
func (e *ensemble) urls() string {
	var out []string
	for _, n := range e.nodes {
		out = append(out, n.url)
	}
	return strings.Join(out, ",")
}

// leader is the node that leads stream name's replicas, asked again until
// the stream has one or timeout passes.
func leader(t *testing.T, js jetstream.JetStream, name string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, name)
		cancel()
		if err == nil {
			if c := s.CachedInfo().Cluster; c != nil && c.Leader != "" {
				return c.Leader
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has no leader after %s (last error: %v)", name, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCurrent waits until each stream has a leader and every other
// replica is current: killing a node before a restarted one caught up
// would take two of three replicas away.
func waitCurrent(t *testing.T, js jetstream.JetStream, streams []string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for _, name := range streams {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s, err := js.Stream(ctx, name)
			cancel()
			if err == nil && current(s.CachedInfo().Cluster) {
				break
			}
			if time.Now().After(deadline) {
				info := "no answer"
				if err == nil {
					info = fmt.Sprintf("%+v", s.CachedInfo().Cluster)
				}
				t.Fatalf("stream %s not current on every node after %s: %s (error %v)", name, timeout, info, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return time.Since(start)
}

func current(c *jetstream.ClusterInfo) bool {
	if c == nil || c.Leader == "" {
		return false
	}
	for _, p := range c.Replicas {
		if !p.Current || p.Offline {
			return false
		}
	}
	return true
}
