package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/runtime"
	"github.com/sluice-run/sluice/triggers"
)

// planChange is a config.Change with what it means for pending events.
type planChange struct {
	config.Change
	// Pending is the binding's backlog (events not yet delivered, delivered
	// and not yet settled, and replays waiting), for changes that concern
	// a binding that runs now.
	Pending *uint64 `json:"pending,omitempty"`
	Text    string  `json:"text"`
}

func planCmd(g *globals) *cobra.Command {
	var (
		cfgPath  string
		asJSON   bool
		detailed bool
	)
	cmd := &cobra.Command{
		Use:   "plan [-c FILE] [--json]",
		Short: "Show what applying a config file to the running runtime would change, and what it means for pending events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return failed(err)
			}
			nc, js, err := g.jetStream()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx := cmd.Context()
			running, err := runningConfig(ctx, js)
			if err != nil {
				return failed(err)
			}
			next := config.EffectiveOf(cfg, planModuleVersion(cfg))
			changes := []planChange{}
			for _, c := range config.Diff(running, next) {
				pc := planChange{Change: c}
				if c.Binding != "" && c.Op != config.OpAdd {
					if n, ok := pendingOf(ctx, js, c.Binding); ok {
						pc.Pending = &n
					}
				}
				pc.Text = planText(pc)
				changes = append(changes, pc)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, struct {
					Config  string       `json:"config"`
					Changes []planChange `json:"changes"`
				}{cfgPath, changes}); err != nil {
					return err
				}
			} else if len(changes) == 0 {
				fmt.Fprintln(out, "no changes")
			} else {
				for _, c := range changes {
					fmt.Fprintln(out, c.Text)
				}
				fmt.Fprintf(out, "%d %s; nothing was applied\n", len(changes), plural(len(changes), "change", "changes"))
			}
			if detailed && len(changes) > 0 {
				return &exitError{code: exitChanges, err: errSilent}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "runtime.hcl", "config file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	// With --detailed-exitcode 2 means changes only: every error,
	// a connection's too, exits 1.
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		err := run(cmd, args)
		var ee *exitError
		if detailed && errors.As(err, &ee) && ee.code == exitUsage && !errors.Is(err, errSilent) {
			return failed(ee.err)
		}
		return err
	}
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 0 without changes, 2 with changes, 1 on an error (as terraform plan does)")
	return cmd
}

// runningConfig reads the effective config the runtime recorded.
func runningConfig(ctx context.Context, js jetstream.JetStream) (*config.Effective, error) {
	kv, err := js.KeyValue(ctx, runtime.StateBucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("the runtime has not recorded its config (KV bucket %s is missing): is it a sluice older than this CLI?", runtime.StateBucket)
		}
		return nil, fmt.Errorf("read the running config: %w", err)
	}
	e, err := kv.Get(ctx, runtime.ConfigKey)
	if err != nil {
		return nil, fmt.Errorf("read the running config (%s/%s): %w", runtime.StateBucket, runtime.ConfigKey, err)
	}
	var eff config.Effective
	if err := json.Unmarshal(e.Value(), &eff); err != nil {
		return nil, fmt.Errorf("the running config (%s/%s) is not valid: %w", runtime.StateBucket, runtime.ConfigKey, err)
	}
	if eff.Schema != config.EffectiveSchema {
		return nil, fmt.Errorf("the running config has schema %d; this CLI reads schema %d", eff.Schema, config.EffectiveSchema)
	}
	return &eff, nil
}

// planModuleVersion hashes the module files of cfg the way the runtime does;
// a module not built yet has no version (only other changes are shown).
func planModuleVersion(cfg *config.Config) func(string) string {
	return func(name string) string {
		f, ok := cfg.Function(name)
		if !ok {
			return ""
		}
		b, err := functions.ReadModule(f.Module)
		if err != nil {
			return ""
		}
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:])
	}
}

// pendingOf is a binding's backlog: its consumer's undelivered and
// unacknowledged events, and its waiting replays.
func pendingOf(ctx context.Context, js jetstream.JetStream, binding string) (uint64, bool) {
	var n uint64
	ok := false
	for _, t := range [][2]string{
		{triggers.BindingStreamName(binding), triggers.BindingConsumerName(binding)},
		{triggers.ReplayStreamName(binding), triggers.ReplayConsumerName(binding)},
	} {
		c, err := js.Consumer(ctx, t[0], t[1])
		if err != nil {
			continue
		}
		info := c.CachedInfo()
		n += info.NumPending + uint64(info.NumAckPending)
		ok = true
	}
	return n, ok
}

func planText(c planChange) string {
	s := c.Change.String()
	if c.Pending == nil {
		return s
	}
	n := *c.Pending
	events := thousands(n) + " pending " + plural(int(min(n, 2)), "event", "events")
	switch c.Op {
	case config.OpRemove:
		if n == 0 {
			return s + ": no pending events"
		}
		what := "it"
		if c.Kind == "queue" {
			what = "a function (they stay in the stream)"
		}
		return fmt.Sprintf("%s: %s will no longer be delivered to %s", s, events, what)
	case config.OpChange:
		if n == 0 {
			return s
		}
		return fmt.Sprintf("%s; applies to %s", s, events)
	}
	return s
}

// thousands writes n with comma separators: 1,204.
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
