package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/runtime"
	"github.com/sluice-run/sluice/triggers"
)

// versionChange is what deploy and rollback changed, for --json.
type versionChange struct {
	Function string `json:"function"`
	Version  string `json:"version"`
	Previous string `json:"previous"`
}

func deployCmd(g *globals) *cobra.Command {
	var (
		timeout time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "deploy NAME FILE.wasm",
		Short: "Deploy a new version of a function to the running runtime, without dropping an event",
		Long: "Store the module in JetStream (every node sees it), have the runtime validate and compile it,\n" +
			"then swap it in: invocations in flight finish on the old version, the next ones use the new.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, file := args[0], args[1]
			// A regular file within the module size limit: /dev/zero is
			// an error, not an endless read.
			wasm, err := functions.ReadModule(file)
			if err != nil {
				return failed(fmt.Errorf("deploy %s: %w", name, err))
			}
			// The cheap checks here, with the runtime's own words; the
			// runtime validates the rest (exports, imports) when compiling.
			if _, err := sandbox.CapMemory(wasm, 4<<30); err != nil {
				return failed(fmt.Errorf("deploy %s: %s: %w", name, file, err))
			}
			nc, js, err := g.jetStream()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx := cmd.Context()
			store, err := functions.OpenStore(ctx, js, 0)
			if err != nil {
				return failed(err)
			}
			version, err := store.PutModule(ctx, wasm)
			if err != nil {
				return failed(err)
			}
			rep, err := adminRequest(ctx, nc, "deploy", runtime.DeployRequest{Function: name, Version: version, By: g.identity()}, timeout)
			if err != nil {
				// The runtime knows the module by its stored copy: name the
				// file the user gave.
				return failed(fmt.Errorf("deploy %s: %s: %w", name, file, err))
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), versionChange{name, rep.Version, rep.Previous})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployed %s version %s (was %s)\n", name, shortVersion(rep.Version), shortVersion(rep.Previous))
			return nil
		},
		ValidArgsFunction: completeFunctions(g, 1),
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for validation, compilation and the swap")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: function, version, previous")
	return cmd
}

func rollbackCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rollback NAME [VERSION]",
		Short: "Make an earlier version of a function live again (default: the one before the live one)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := runtime.DeployRequest{Function: args[0], By: g.identity()}
			if len(args) == 2 {
				req.Version = args[1]
			}
			nc, err := g.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			rep, err := adminRequest(cmd.Context(), nc, "rollback", req, 3*time.Minute)
			if err != nil {
				return failed(fmt.Errorf("rollback %s: %w", args[0], err))
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), versionChange{args[0], rep.Version, rep.Previous})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rolled %s back to version %s (was %s)\n", args[0], shortVersion(rep.Version), shortVersion(rep.Previous))
			return nil
		},
		ValidArgsFunction: completeFunctions(g, 1),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: function, version, previous")
	return cmd
}

// adminRequest calls an endpoint of the runtime's admin service.
func adminRequest(ctx context.Context, nc *nats.Conn, endpoint string, req runtime.DeployRequest, timeout time.Duration) (runtime.DeployReply, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return runtime.DeployReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, runtime.AdminSubjectPrefix+"."+endpoint, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return runtime.DeployReply{}, errors.New("no runtime answers (is `sluice run` running, and are you connected to it?)")
	}
	if err != nil {
		return runtime.DeployReply{}, err
	}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		return runtime.DeployReply{}, errors.New(desc)
	}
	var rep runtime.DeployReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return runtime.DeployReply{}, fmt.Errorf("bad reply: %w", err)
	}
	return rep, nil
}

// identity names who deploys, for the version record.
func (g *globals) identity() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil {
		name += "@" + host
	}
	return name
}

func functionsCmd(g *globals) *cobra.Command {
	return listCmd(g, "functions", "List functions with their versions and which one is live",
		"FUNCTION\tVERSION\tLIVE\tSIZE\tDEPLOYED AT\tBY\tFROM",
		func(ctx context.Context, js jetstream.JetStream) ([]functions.Record, error) {
			store, err := functions.OpenStore(ctx, js, 0)
			if err != nil {
				return nil, err
			}
			recs, err := store.Records(ctx)
			slices.SortFunc(recs, func(a, b functions.Record) int { return strings.Compare(a.Name, b.Name) })
			return recs, err
		}, func(w io.Writer, r functions.Record) {
			for _, v := range r.Versions {
				live := ""
				if v.Version == r.Live {
					live = "*"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Name, shortVersion(v.Version), live, v.Size,
					v.DeployedAt.Local().Format(time.DateTime), v.DeployedBy, v.Source)
			}
		})
}

// nodeReload is one node's answer to reload, for --json.
type nodeReload struct {
	Node     string `json:"node"`
	Reloaded bool   `json:"reloaded"`
	Error    string `json:"error,omitempty"`
}

func reloadCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make every running node read its config file again and apply what changed",
		Long: "Ask every running node to re-read its runtime.hcl (as on a file change or SIGHUP),\n" +
			"and print each node's answer. An invalid file is reported, with every diagnostic,\n" +
			"and that node's running config stays.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, js, err := g.jetStream()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			// Every node answers; how many to wait for is how many
			// announce themselves (one, if that cannot be read).
			expect := 1
			if nodes, err := readNodes(ctx, js); err == nil && len(nodes) > 0 {
				expect = len(nodes)
			}
			inbox := nc.NewRespInbox()
			sub, err := nc.SubscribeSync(inbox)
			if err != nil {
				return failed(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := nc.PublishRequest(runtime.AdminSubjectPrefix+".reload", inbox, nil); err != nil {
				return failed(err)
			}
			var problems []string
			nodes := []nodeReload{}
			for len(nodes) < expect {
				msg, err := sub.NextMsgWithContext(ctx)
				if err != nil {
					if len(nodes) == 0 {
						return failed(fmt.Errorf("no runtime answered: %w", err))
					}
					problems = append(problems, fmt.Sprintf("only %d of %d nodes answered: %v", len(nodes), expect, err))
					break
				}
				if msg.Header.Get("Status") == "503" {
					return failed(errors.New("no runtime answers (is `sluice run` running, and are you connected to it?)"))
				}
				n := nodeReload{Node: msg.Header.Get(triggers.HdrNode), Reloaded: true}
				if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
					// The body has the diagnostics with their line
					// breaks; a header cannot.
					n.Reloaded, n.Error = false, desc
					if len(msg.Data) > 0 {
						n.Error = string(msg.Data)
					}
					problems = append(problems, fmt.Sprintf("%s: not reloaded; its running config stays:\n%s", n.Node, n.Error))
				} else if !asJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "reloaded %s\n", n.Node)
				}
				nodes = append(nodes, n)
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), struct {
					Nodes []nodeReload `json:"nodes"`
				}{nodes}); err != nil {
					return err
				}
			}
			if len(problems) > 0 {
				return failed(errors.New(strings.Join(problems, "\n")))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: every node's answer (node, reloaded, error)")
	return cmd
}
