package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ClusterSpec describes the nodes StartCluster runs.
type ClusterSpec struct {
	// Nodes is how many `sluice run` processes to start. With more than
	// one, their embedded servers form a NATS cluster.
	Nodes int
	// Body is every node's runtime.hcl without its nats block.
	Body string
	// NATS holds extra lines for the nats block, such as `sync = "1s"` or
	// `replicas = 1`.
	NATS string
	// Files are written beside the config of the first FilesOn nodes (all
	// of them when FilesOn is 0): a module that only some nodes have.
	Files   map[string][]byte
	FilesOn int
	// Args are extra flags for every node, such as --log-level.
	Args []string
}

// Cluster is the nodes StartCluster started, in order, and their client
// URLs.
type Cluster struct {
	Nodes []*Node
	URLs  []string
}

// FreePort returns a TCP port on loopback that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartCluster starts spec.Nodes nodes from one config text, the way the
// README runs three nodes on one machine: each node gets its own --name
// (n1, n2, …), --listen, --cluster-listen and --data. It returns once every
// node is ready.
func StartCluster(t testing.TB, spec ClusterSpec) *Cluster {
	t.Helper()
	n := spec.Nodes
	var clientPorts, routePorts []int
	var routes []string
	for range n {
		clientPorts, routePorts = append(clientPorts, FreePort(t)), append(routePorts, FreePort(t))
		routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats://127.0.0.1:%d", routePorts[len(routePorts)-1])))
	}
	clusterBlock := ""
	if n > 1 {
		clusterBlock = fmt.Sprintf("  cluster {\n    listen = \"127.0.0.1:%d\"\n    routes = [%s]\n  }\n", routePorts[0], strings.Join(routes, ", "))
	}
	hcl := fmt.Sprintf("nats {\n  listen = \"127.0.0.1:%d\"\n%s\n%s}\n%s", clientPorts[0], spec.NATS, clusterBlock, spec.Body)
	c := &Cluster{}
	for i := range n {
		dir := t.TempDir()
		cfgPath := filepath.Join(dir, "runtime.hcl")
		if err := os.WriteFile(cfgPath, []byte(hcl), 0o644); err != nil {
			t.Fatal(err)
		}
		if spec.FilesOn == 0 || i < spec.FilesOn {
			for name, data := range spec.Files {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		args := []string{"--name", name, "--data", filepath.Join(dir, "data"),
			"--listen", fmt.Sprintf("127.0.0.1:%d", clientPorts[i]), "--metrics-listen", "127.0.0.1:0"}
		if n > 1 {
			args = append(args, "--cluster-listen", fmt.Sprintf("127.0.0.1:%d", routePorts[i]))
		}
		c.Nodes = append(c.Nodes, LaunchNode(t, name, cfgPath, append(args, spec.Args...)...))
		c.URLs = append(c.URLs, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	// The nodes of a cluster wait for one another: launch all, then wait.
	for _, node := range c.Nodes {
		node.WaitReady(t, 3*time.Minute)
	}
	return c
}
