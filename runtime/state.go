package runtime

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/jsx"
)

// The runtime records its effective config in JetStream, so that any
// client, on any node, learns what runs: `sluice plan` diffs a file
// against it.
const (
	// StateBucket is the KV bucket of the runtime's own state (file
	// storage, the last 5 revisions of each key kept).
	StateBucket = client.StateBucket
	// ConfigKey holds the effective config as JSON: a config.Effective.
	ConfigKey = client.ConfigKey
)

// publishConfig writes the config the runtime runs (with the version of
// every loaded module) to StateBucket/ConfigKey. Start calls it once the
// bindings are laid out; a reload calls it again with the new config.
func (r *Runtime) publishConfig(ctx context.Context) error {
	kv, err := jsx.KeyValue(ctx, r.js, jetstream.KeyValueConfig{
		Bucket: StateBucket, Description: "sluice: the runtime's effective config",
		History: 5, Storage: jetstream.FileStorage, Replicas: r.cfg.NATS.Replicas,
	})
	if err != nil {
		return fmt.Errorf("state bucket %s: %w", StateBucket, err)
	}
	eff := config.EffectiveOf(r.cfg, func(name string) string {
		if r.fns == nil {
			return ""
		}
		v, _, _ := r.fns.Version(name)
		return v
	})
	b, err := json.Marshal(eff)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, ConfigKey, b); err != nil {
		return fmt.Errorf("record the effective config: %w", err)
	}
	return nil
}
