package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// Binding is a queue or topic binding's state, read from its consumer.
type Binding struct {
	Name        string  `json:"binding"`
	Kind        string  `json:"kind"`
	Subject     string  `json:"subject"`
	Function    string  `json:"function"`
	Pending     uint64  `json:"pending"`
	InFlight    int     `json:"in_flight"`
	Retrying    int     `json:"retrying"`
	DeadLetters uint64  `json:"dead_letters"`
	Rate        float64 `json:"rate,omitempty"`
	Paused      bool    `json:"paused"`
	PausedFor   string  `json:"paused_for,omitempty"`
	// Nodes is each running node's share of the work; nil when the nodes
	// could not be read (the publish role may not).
	Nodes []NodeWork `json:"nodes"`
}

// Load is a node's work on one binding.
type Load struct {
	// InFlight counts events the node took and has not settled.
	InFlight int `json:"in_flight"`
	// Invocations counts invocations started since the node started.
	Invocations uint64 `json:"invocations"`
	// Succeeded counts events the node settled as succeeded.
	Succeeded uint64 `json:"succeeded"`
}

// NodeWork is one node's work on one binding.
type NodeWork struct {
	Node string `json:"node"`
	Load
}

// NodeState is what a running node says about itself in NodesBucket.
type NodeState struct {
	Name     string          `json:"name"`
	URL      string          `json:"url"`
	Started  time.Time       `json:"started"`
	Updated  time.Time       `json:"updated"`
	Bindings map[string]Load `json:"bindings"`
}

// Nodes returns every running node's state, by name (none when no runtime
// made the bucket).
func (c *Client) Nodes(ctx context.Context) ([]NodeState, error) {
	kv, err := c.js.KeyValue(ctx, NodesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	var out []NodeState
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // left meanwhile
		}
		var st NodeState
		if json.Unmarshal(e.Value(), &st) == nil {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b NodeState) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Bindings returns every binding's state, by name.
func (c *Client) Bindings(ctx context.Context) ([]Binding, error) {
	var out []Binding
	streams := c.js.ListStreams(ctx)
	for si := range streams.Info() {
		kind := bindingKind(si.Config.Name)
		if kind == "" {
			continue
		}
		s, err := c.js.Stream(ctx, si.Config.Name)
		if err != nil {
			return nil, err
		}
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			md := ci.Config.Metadata
			if md[MetaBinding] == "" {
				continue
			}
			v := Binding{
				Name: md[MetaBinding], Kind: kind, Subject: strings.Join(si.Config.Subjects, ","),
				Function: md[MetaFunction], Pending: ci.NumPending,
				InFlight: ci.NumAckPending - ci.NumRedelivered, Retrying: ci.NumRedelivered,
				Paused: ci.Paused,
			}
			if ci.Paused {
				v.PausedFor = ci.PauseRemaining.Round(time.Second).String()
			}
			v.Rate, _ = strconv.ParseFloat(md[MetaRate], 64)
			v.DeadLetters = c.streamMsgs(ctx, DeadLetterStreamName(v.Name))
			v.Pending += c.streamMsgs(ctx, ReplayStreamName(v.Name))
			out = append(out, v)
		}
		if err := consumers.Err(); err != nil {
			return nil, err
		}
	}
	if err := streams.Err(); err != nil {
		return nil, err
	}
	nodes, err := c.Nodes(ctx)
	for i := range out {
		if err != nil {
			break
		}
		out[i].Nodes = []NodeWork{}
		for _, n := range nodes {
			if l, ok := n.Bindings[out[i].Name]; ok {
				out[i].Nodes = append(out[i].Nodes, NodeWork{Node: n.Name, Load: l})
			}
		}
	}
	slices.SortFunc(out, func(a, b Binding) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// streamMsgs is a stream's message count, 0 when it cannot be read.
func (c *Client) streamMsgs(ctx context.Context, name string) uint64 {
	s, err := c.js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// Pause stops delivering a binding's events and replays until until.
func (c *Client) Pause(ctx context.Context, binding string, until time.Time) error {
	return c.setPaused(ctx, binding, &until)
}

// Resume delivers a paused binding's events again.
func (c *Client) Resume(ctx context.Context, binding string) error {
	return c.setPaused(ctx, binding, nil)
}

func (c *Client) setPaused(ctx context.Context, binding string, until *time.Time) error {
	targets := [][2]string{
		{BindingStreamName(binding), BindingConsumerName(binding)},
		{ReplayStreamName(binding), ReplayConsumerName(binding)},
	}
	for i, t := range targets {
		var err error
		if until != nil {
			_, err = c.js.PauseConsumer(ctx, t[0], t[1], *until)
		} else {
			err = c.resume(ctx, t[0], t[1])
		}
		if err != nil {
			if i == 0 {
				return fmt.Errorf("binding %s: %w", binding, err)
			}
			return fmt.Errorf("binding %s replays: %w", binding, err)
		}
	}
	return nil
}

// resumeLead is how far ahead Resume first sets the pause's end;
// maxResumeLead bounds how far it moves it when the server applied the
// change too late.
const (
	resumeLead    = 100 * time.Millisecond
	maxResumeLead = 2 * time.Second
)

// resume ends a consumer's pause. Not with ResumeConsumer: nats-server
// 2.15.2 wakes a paused consumer's waiting pull requests only from the
// timer it arms for a pause deadline still ahead, so after ResumeConsumer
// the backlog waited for the client's next pull request (measured: 15 s;
// chaos.TestUpstreamResumeWakesNoWaitingPull reproduces it). A deadline
// that had passed when the server applied it arms no timer either; a
// server that says the consumer is not paused any more has done just
// that, so the deadline is moved further ahead and set again. (A cluster
// answers before the consumer's leader applies the change; there the
// runtime's short pull expiry bounds the wait.)
func (c *Client) resume(ctx context.Context, stream, consumer string) error {
	for lead := resumeLead; ; lead *= 2 {
		resp, err := c.js.PauseConsumer(ctx, stream, consumer, time.Now().Add(lead))
		if err != nil || resp.Paused || lead >= maxResumeLead {
			return err
		}
	}
}

// FunctionRecord is a function's versions, oldest first, and which one is
// live (the value in FunctionsBucket).
type FunctionRecord struct {
	Name          string        `json:"name"`
	Live          string        `json:"live"`
	ConfigVersion string        `json:"config_version"`
	Versions      []VersionInfo `json:"versions"`
}

// VersionInfo describes one version of a function.
type VersionInfo struct {
	Version    string    `json:"version"`
	Size       int64     `json:"size"`
	DeployedAt time.Time `json:"deployed_at"`
	DeployedBy string    `json:"deployed_by,omitempty"`
	Source     string    `json:"source"`
}

// Functions returns every function's record, by name.
func (c *Client) Functions(ctx context.Context) ([]FunctionRecord, error) {
	kv, err := c.js.KeyValue(ctx, FunctionsBucket)
	if err != nil {
		return nil, fmt.Errorf("function versions (has a runtime started on this server?): %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []FunctionRecord
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var r FunctionRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return nil, fmt.Errorf("function %s record: %w", k, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b FunctionRecord) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeployRequest asks the admin service to make a version live.
type DeployRequest struct {
	Function string `json:"function"`
	// Version is a version in the module store; for a rollback, empty
	// means the version before the live one.
	Version string `json:"version"`
	By      string `json:"by,omitempty"`
}

// VersionChange is what a deploy or rollback changed.
type VersionChange struct {
	Function string `json:"function"`
	Version  string `json:"version"`
	Previous string `json:"previous"`
}

// Identity names who deploys, for a version record: the user and host of
// this process, "unknown" when the user is not known.
func Identity() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil {
		name += "@" + host
	}
	return name
}

// ModuleVersion is the version of a module: the hex sha256 of its bytes.
func ModuleVersion(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return hex.EncodeToString(sum[:])
}

// Deploy stores wasm in the module store (once per version) and has the
// runtime validate, compile and swap it in as function's live version.
// by names who deploys, for the version record.
func (c *Client) Deploy(ctx context.Context, function string, wasm []byte, by string, timeout time.Duration) (VersionChange, error) {
	obj, err := c.js.ObjectStore(ctx, ModulesBucket)
	if err != nil {
		return VersionChange{}, fmt.Errorf("module store (has a runtime started on this server?): %w", err)
	}
	v := ModuleVersion(wasm)
	if _, err := obj.GetInfo(ctx, v); err != nil {
		if _, err := obj.PutBytes(ctx, v, wasm); err != nil {
			return VersionChange{}, fmt.Errorf("store module %s: %w", v[:12], err)
		}
	}
	var out VersionChange
	err = c.call(ctx, AdminSubjectPrefix+".deploy", DeployRequest{Function: function, Version: v, By: by}, &out, timeout)
	return out, err
}

// Rollback makes version (a prefix will do; empty: the one before the live
// one) function's live version again.
func (c *Client) Rollback(ctx context.Context, function, version, by string, timeout time.Duration) (VersionChange, error) {
	var out VersionChange
	err := c.call(ctx, AdminSubjectPrefix+".rollback", DeployRequest{Function: function, Version: version, By: by}, &out, timeout)
	return out, err
}

// NodeReload is one node's answer to a reload.
type NodeReload struct {
	Node     string `json:"node"`
	Reloaded bool   `json:"reloaded"`
	// Error holds the diagnostics, with their line breaks, when the node
	// kept its running config.
	Error string `json:"error,omitempty"`
}

// ReloadError is nil when every node reloaded and err is nil; else it
// names each node that kept its running config, with its diagnostics,
// then err.
func ReloadError(nodes []NodeReload, err error) error {
	var problems []string
	for _, n := range nodes {
		if !n.Reloaded {
			problems = append(problems, fmt.Sprintf("%s: not reloaded; its running config stays:\n%s", n.Node, n.Error))
		}
	}
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "\n"))
}

// Reload asks every running node to re-read its config file, and returns
// each node's answer. It waits for as many answers as nodes announce
// themselves (one, when they cannot be read) until ctx ends; fewer
// answers come with an error.
func (c *Client) Reload(ctx context.Context) ([]NodeReload, error) {
	expect := 1
	if nodes, err := c.Nodes(ctx); err == nil && len(nodes) > 0 {
		expect = len(nodes)
	}
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.nc.PublishRequest(AdminSubjectPrefix+".reload", inbox, nil); err != nil {
		return nil, err
	}
	out := []NodeReload{}
	for len(out) < expect {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if len(out) == 0 {
				return nil, fmt.Errorf("no runtime answered: %w", err)
			}
			return out, fmt.Errorf("only %d of %d nodes answered: %w", len(out), expect, err)
		}
		if msg.Header.Get("Status") == "503" {
			return nil, ErrNoRuntime
		}
		out = append(out, reloadAnswer(msg))
	}
	return out, nil
}

func reloadAnswer(msg *nats.Msg) NodeReload {
	n := NodeReload{Node: msg.Header.Get(HdrNode), Reloaded: true}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		// The body has the diagnostics with their line breaks; a header
		// cannot.
		n.Reloaded, n.Error = false, desc
		if len(msg.Data) > 0 {
			n.Error = string(msg.Data)
		}
	}
	return n
}

// Pending is a binding's backlog: its consumer's undelivered and
// unacknowledged events, and its waiting replays; ok is false when the
// binding has no consumer here.
func (c *Client) Pending(ctx context.Context, binding string) (n uint64, ok bool) {
	for _, t := range [][2]string{
		{BindingStreamName(binding), BindingConsumerName(binding)},
		{ReplayStreamName(binding), ReplayConsumerName(binding)},
	} {
		cons, err := c.js.Consumer(ctx, t[0], t[1])
		if err != nil {
			continue
		}
		info := cons.CachedInfo()
		n += info.NumPending + uint64(info.NumAckPending)
		ok = true
	}
	return n, ok
}

// ErrNoRunningConfig: no runtime recorded its config on this server.
var ErrNoRunningConfig = errors.New("the runtime has not recorded its config (KV bucket " + StateBucket + " is missing): is it a sluice older than this client?")

// RunningConfig is the effective config the runtime records (the JSON of
// a config.Effective, which the client leaves to its caller to decode, so
// that producers do not link the config parser).
func (c *Client) RunningConfig(ctx context.Context) (json.RawMessage, error) {
	kv, err := c.js.KeyValue(ctx, StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, ErrNoRunningConfig
	}
	if err != nil {
		return nil, fmt.Errorf("read the running config: %w", err)
	}
	e, err := kv.Get(ctx, ConfigKey)
	if err != nil {
		return nil, fmt.Errorf("read the running config (%s/%s): %w", StateBucket, ConfigKey, err)
	}
	return e.Value(), nil
}
