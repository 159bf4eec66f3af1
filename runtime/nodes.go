package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/internal/jsx"
	"github.com/sluice-run/sluice/triggers"
)

// Every node announces itself and its work in a KV bucket, so that any
// client, through any node, sees who runs what: `sluice bindings` shows
// each node's in-flight events from it.
const (
	// NodesBucket holds a NodeState per running node, keyed by node name
	// (memory storage: it describes the present only).
	NodesBucket = client.NodesBucket
	// NodeHeartbeat is how often a node rewrites its state.
	NodeHeartbeat = 2 * time.Second
	// NodeTTL is how long a node's state outlives its last heartbeat: a
	// node that died without saying so disappears after it.
	NodeTTL = 5 * NodeHeartbeat
)

// NodeState is what a node says about itself.
type NodeState = client.NodeState

// announce writes this node's state every NodeHeartbeat until stop is
// closed (the bindings drained), then deletes it: a node that stops cleanly
// leaves at once. Meanwhile it follows the other nodes' states, to give
// each binding's rate limit this node's share: a binding's rate is the
// cluster's, not each node's.
func (r *Runtime) announce(kv jetstream.KeyValue, runner *triggers.Runner, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := time.Now().UTC()
	put := func() {
		st := NodeState{Name: r.node, URL: r.clientURL, Started: started, Updated: time.Now().UTC(), Bindings: runner.Loads()}
		b, err := json.Marshal(st)
		if err != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, NodeHeartbeat)
		defer cancel()
		if _, err := kv.Put(pctx, r.node, b); err != nil {
			r.log.Debug("node heartbeat", "error", err)
		}
	}
	// peers are the other nodes, their bindings and when this node last
	// heard of them (its own clock: theirs may differ).
	type peer struct {
		bindings map[string]triggers.Load
		heard    time.Time
	}
	peers := map[string]peer{}
	var updates <-chan jetstream.KeyValueEntry
	if w, err := kv.WatchAll(ctx); err != nil {
		r.log.Warn("not following the other nodes; each node applies the whole rate", "error", err)
	} else {
		defer func() { _ = w.Stop() }()
		updates = w.Updates()
	}
	// share recomputes each binding's share of its rate: at every
	// heartbeat (peers age out) and as soon as a peer appears or leaves,
	// so that nodes started together agree within moments, not a
	// heartbeat later.
	share := func() {
		shares := map[string]int{}
		for _, b := range runner.Bindings() {
			name := b.Name
			shares[name] = 1
			for _, p := range peers {
				if _, ok := p.bindings[name]; ok && time.Since(p.heard) < NodeTTL {
					shares[name]++
				}
			}
		}
		runner.SetShares(shares)
	}
	tick := time.NewTicker(NodeHeartbeat)
	defer tick.Stop()
	put()
	for {
		select {
		case <-stop:
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = kv.Delete(dctx, r.node)
			cancel()
			return
		case e, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			if e == nil || e.Key() == r.node {
				continue // nil: the watcher caught up with the bucket
			}
			var st NodeState
			_, known := peers[e.Key()]
			if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &st) != nil {
				delete(peers, e.Key())
				share()
				continue
			}
			peers[e.Key()] = peer{bindings: st.Bindings, heard: time.Now()}
			if !known {
				share()
			}
		case <-tick.C:
			put()
			share()
		}
	}
}

// nodesBucket creates (or updates) NodesBucket.
func (r *Runtime) nodesBucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := jsx.KeyValue(ctx, r.js, jetstream.KeyValueConfig{
		Bucket: NodesBucket, Description: "sluice: the running nodes and their work",
		History: 1, TTL: NodeTTL, Storage: jetstream.MemoryStorage, Replicas: r.replicas(),
	})
	if err != nil {
		return nil, fmt.Errorf("nodes bucket %s: %w", NodesBucket, err)
	}
	return kv, nil
}
