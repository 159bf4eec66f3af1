package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
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
			c, done, err := g.client()
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			running, err := runningConfig(ctx, c)
			if err != nil {
				return failed(err)
			}
			next := config.EffectiveOf(cfg, planModuleVersion(cfg))
			changes := []planChange{}
			for _, ch := range config.Diff(running, next) {
				pc := planChange{Change: ch}
				if ch.Binding != "" && ch.Op != config.OpAdd {
					if n, ok := c.Pending(ctx, ch.Binding); ok {
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
func runningConfig(ctx context.Context, c *client.Client) (*config.Effective, error) {
	raw, err := c.RunningConfig(ctx)
	if err != nil {
		return nil, err
	}
	var eff config.Effective
	if err := json.Unmarshal(raw, &eff); err != nil {
		return nil, fmt.Errorf("the running config is not valid: %w", err)
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
		return client.ModuleVersion(b)
	}
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
