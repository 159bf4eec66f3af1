package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EffectiveSchema is the version of the Effective JSON layout.
const EffectiveSchema = 1

// Effective is the config a runtime runs, in the form it records in
// JetStream (KV bucket "sluice_runtime", key "config") so that any client,
// on any node, can read it: `sluice plan` diffs a file against it. It holds
// what decides how events are handled, and never a secret: of a function's
// environment only the variable names are kept, not their values. Durations
// are Go duration strings ("30s"), sizes are bytes, rates events per second.
type Effective struct {
	Schema    int                 `json:"schema"`
	Functions []EffectiveFunction `json:"functions"`
	Topics    []EffectiveTopic    `json:"topics"`
	// Bindings are every queue, then every topic subscriber, in file order.
	Bindings []EffectiveBinding `json:"bindings"`
}

// EffectiveFunction is a function's module, limits and capabilities.
type EffectiveFunction struct {
	Name   string `json:"name"`
	Module string `json:"module"`
	// Version is the sha256 (hex) of the module file; "" when unknown.
	Version       string   `json:"version,omitempty"`
	Timeout       string   `json:"timeout"`
	IdleTimeout   string   `json:"idle_timeout,omitempty"`
	Memory        int64    `json:"memory"`
	MaxResultSize int64    `json:"max_result_size"`
	MaxLogSize    int64    `json:"max_log_size"`
	Instance      string   `json:"instance"` // "warm" or "fresh"
	Publish       []string `json:"publish"`
	AllowedHosts  []string `json:"allowed_hosts"`
	// EnvKeys are the names of the guest's environment variables, sorted.
	EnvKeys []string `json:"env_keys"`
	// EnvFromEnv are the keys of EnvKeys whose value is read from the
	// runtime's environment (env("NAME") in the file), sorted.
	EnvFromEnv []string `json:"env_from_env,omitempty"`
}

// EffectiveTopic is a topic's stream settings (its subscribers are
// bindings).
type EffectiveTopic struct {
	Name         string `json:"name"`
	Subject      string `json:"subject"`
	Retention    string `json:"retention"`
	MaxEventSize int64  `json:"max_event_size"`
}

// EffectiveRetry is a retry policy.
type EffectiveRetry struct {
	MaxAttempts int    `json:"max_attempts"`
	Initial     string `json:"initial"`
	Max         string `json:"max"`
}

// EffectiveBinding is a queue or topic subscriber with all its settings.
type EffectiveBinding struct {
	Name         string         `json:"name"` // queue name or TOPIC/SUBSCRIBER
	Kind         string         `json:"kind"` // "queue" or "topic"
	Source       string         `json:"source"`
	Subject      string         `json:"subject"`
	Function     string         `json:"function"`
	Concurrency  int            `json:"concurrency"`
	Rate         float64        `json:"rate"` // events per second, 0: unlimited
	Retry        EffectiveRetry `json:"retry"`
	DeadLetter   string         `json:"dead_letter"`
	OnSuccess    string         `json:"on_success,omitempty"`
	OnFailure    string         `json:"on_failure,omitempty"`
	Dedupe       string         `json:"dedupe,omitempty"`
	StartFrom    string         `json:"start_from,omitempty"`
	MaxEventSize int64          `json:"max_event_size"`
}

// EffectiveOf describes c. version returns a function's module version
// (nil or "" for unknown).
func EffectiveOf(c *Config, version func(function string) string) *Effective {
	e := &Effective{Schema: EffectiveSchema, Functions: []EffectiveFunction{}, Topics: []EffectiveTopic{}, Bindings: []EffectiveBinding{}}
	for _, f := range c.Functions {
		ef := EffectiveFunction{
			Name: f.Name, Module: f.Module, Timeout: f.Timeout.String(), IdleTimeout: f.IdleTimeout.String(), Memory: f.Memory,
			MaxResultSize: f.MaxResultSize, MaxLogSize: f.MaxLogSize, Instance: "warm",
			Publish: nonNil(f.Publish), AllowedHosts: nonNil(f.AllowedHosts), EnvKeys: []string{},
		}
		if f.FreshInstance {
			ef.Instance = "fresh"
		}
		if version != nil {
			ef.Version = version(f.Name)
		}
		for k := range f.Env {
			ef.EnvKeys = append(ef.EnvKeys, k)
		}
		sort.Strings(ef.EnvKeys)
		if len(f.EnvFromHost) > 0 {
			ef.EnvFromEnv = slices.Clone(f.EnvFromHost)
		}
		e.Functions = append(e.Functions, ef)
	}
	for _, t := range c.Topics {
		e.Topics = append(e.Topics, EffectiveTopic{
			Name: t.Name, Subject: t.Subject, Retention: t.Retention.String(), MaxEventSize: t.MaxEventSize,
		})
	}
	for _, b := range c.Bindings() {
		e.Bindings = append(e.Bindings, EffectiveBinding{
			Name: b.Name, Kind: b.Kind, Source: b.Source, Subject: b.Subject, Function: b.Function,
			Concurrency: b.Concurrency, Rate: b.Rate.PerSecond(),
			Retry: EffectiveRetry{
				MaxAttempts: b.Retry.MaxAttempts, Initial: b.Retry.Initial.String(), Max: b.Retry.Max.String(),
			},
			DeadLetter: b.DeadLetter, OnSuccess: b.OnSuccess, OnFailure: b.OnFailure,
			Dedupe: dedupeText(b.Dedupe), StartFrom: b.StartFrom, MaxEventSize: b.MaxEventSize,
		})
	}
	return e
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// Change operations.
const (
	OpAdd    = "add"
	OpRemove = "remove"
	OpChange = "change"
)

// Change is one difference between the running config and a planned one.
type Change struct {
	// Kind is what changes: "function", "queue", "topic" or "subscriber".
	Kind string `json:"kind"`
	// Name is the function's, queue's or topic's name; for a subscriber
	// its binding name, TOPIC/SUBSCRIBER.
	Name string `json:"name"`
	Op   string `json:"op"` // OpAdd, OpRemove or OpChange
	// Field is the setting that changes (OpChange only), such as "memory",
	// "retry max_attempts" or "publish".
	Field string `json:"field,omitempty"`
	// From and To are the old and new values of Field. For list settings
	// (publish, allowed_hosts, env) a change names one element: To is set
	// for an element added, From for one removed.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Binding is the binding whose pending events the change concerns, if
	// any: a queue or subscriber added, removed or changed.
	Binding string `json:"binding,omitempty"`
	// Note says what the change means where that is not obvious.
	Note string `json:"note,omitempty"`
}

// Subject is who the change is about: "function sender", "queue emails",
// "topic signup", "topic signup: subscriber crm".
func (c Change) Subject() string {
	if c.Kind == "subscriber" {
		topic, sub, _ := strings.Cut(c.Name, "/")
		return "topic " + topic + ": subscriber " + sub
	}
	return c.Kind + " " + c.Name
}

// String describes the change in one line, such as "queue emails: retry
// max_attempts 5 -> 8" or "function sender: publish + audit.*".
func (c Change) String() string {
	var s string
	switch c.Op {
	case OpAdd:
		if c.Kind == "subscriber" {
			topic, sub, _ := strings.Cut(c.Name, "/")
			s = "topic " + topic + ": new subscriber " + sub
		} else {
			s = c.Kind + " " + c.Name + " added"
		}
	case OpRemove:
		s = c.Subject() + " removed"
	default:
		switch {
		case isListField(c.Field) && c.To != "" && c.From == "":
			s = fmt.Sprintf("%s: %s + %s", c.Subject(), c.Field, c.To)
		case isListField(c.Field) && c.From != "" && c.To == "":
			s = fmt.Sprintf("%s: %s - %s", c.Subject(), c.Field, c.From)
		default:
			s = fmt.Sprintf("%s: %s %s -> %s", c.Subject(), c.Field, orNone(c.From), orNone(c.To))
		}
	}
	if c.Note != "" {
		s += " (" + c.Note + ")"
	}
	return s
}

func isListField(f string) bool { return f == "publish" || f == "allowed_hosts" || f == "env" }

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Diff returns what changes when the config running moves to next:
// functions first, then queues, then topics and their subscribers. Each
// group lists removals, then changes, then additions, by name. Equal
// configs give no changes. Module versions are compared only when both are
// known.
func Diff(running, next *Effective) []Change {
	var out []Change
	// Functions.
	rf, nf := byName(running.Functions, func(f EffectiveFunction) string { return f.Name }),
		byName(next.Functions, func(f EffectiveFunction) string { return f.Name })
	for _, name := range sortedKeys(rf) {
		if _, ok := nf[name]; !ok {
			out = append(out, Change{Kind: "function", Name: name, Op: OpRemove})
		}
	}
	for _, name := range sortedKeys(rf) {
		if n, ok := nf[name]; ok {
			out = append(out, diffFunction(rf[name], n)...)
		}
	}
	for _, name := range sortedKeys(nf) {
		if _, ok := rf[name]; !ok {
			out = append(out, Change{Kind: "function", Name: name, Op: OpAdd})
		}
	}
	// Queues, then topics with their subscribers.
	rb, nb := byName(running.Bindings, bindingName), byName(next.Bindings, bindingName)
	rt, nt := byName(running.Topics, topicName), byName(next.Topics, topicName)
	out = append(out, diffBindings(rb, nb, KindQueue, "")...)
	topics := map[string]bool{}
	for n := range rt {
		topics[n] = true
	}
	for n := range nt {
		topics[n] = true
	}
	for _, name := range sortedKeys(topics) {
		r, inR := rt[name]
		n, inN := nt[name]
		switch {
		case !inN:
			out = append(out, Change{Kind: "topic", Name: name, Op: OpRemove})
		case !inR:
			out = append(out, Change{Kind: "topic", Name: name, Op: OpAdd})
		default:
			field := func(f, from, to, note string) {
				if from != to {
					out = append(out, Change{Kind: "topic", Name: name, Op: OpChange, Field: f, From: from, To: to, Note: note})
				}
			}
			field("subject", r.Subject, n.Subject, "")
			field("retention", durationText(r.Retention), durationText(n.Retention), "")
			field("max_event_size", sizeText(r.MaxEventSize), sizeText(n.MaxEventSize), "")
		}
		out = append(out, diffBindings(rb, nb, KindTopic, name)...)
	}
	return out
}

func bindingName(b EffectiveBinding) string { return b.Name }
func topicName(t EffectiveTopic) string     { return t.Name }

// diffBindings diffs the bindings of kind (and, for topics, of source).
func diffBindings(running, next map[string]EffectiveBinding, kind, source string) []Change {
	var out []Change
	keep := func(b EffectiveBinding) bool {
		return b.Kind == kind && (kind == KindQueue || b.Source == source)
	}
	what := "queue"
	if kind == KindTopic {
		what = "subscriber"
	}
	names := map[string]bool{}
	for n, b := range running {
		if keep(b) {
			names[n] = true
		}
	}
	for n, b := range next {
		if keep(b) {
			names[n] = true
		}
	}
	sorted := sortedKeys(names)
	for _, name := range sorted {
		if r, ok := running[name]; ok && keep(r) {
			if n, ok := next[name]; !ok || !keep(n) {
				out = append(out, Change{Kind: what, Name: name, Op: OpRemove, Binding: name})
			}
		}
	}
	for _, name := range sorted {
		r, okR := running[name]
		n, okN := next[name]
		if okR && okN && keep(r) && keep(n) {
			out = append(out, diffBinding(what, r, n)...)
		}
	}
	for _, name := range sorted {
		if n, ok := next[name]; ok && keep(n) {
			if r, ok := running[name]; !ok || !keep(r) {
				c := Change{Kind: what, Name: name, Op: OpAdd, Binding: name}
				if kind == KindTopic {
					c.Note = "start_from " + n.StartFrom
				}
				out = append(out, c)
			}
		}
	}
	return out
}

func diffBinding(what string, r, n EffectiveBinding) []Change {
	var out []Change
	field := func(f, from, to, note string) {
		if from != to {
			out = append(out, Change{Kind: what, Name: r.Name, Op: OpChange, Field: f, From: from, To: to, Binding: r.Name, Note: note})
		}
	}
	if what == "queue" {
		field("subject", r.Subject, n.Subject, "")
		field("max_event_size", sizeText(r.MaxEventSize), sizeText(n.MaxEventSize), "")
	}
	field("function", r.Function, n.Function, "pending events go to the new function")
	field("concurrency", strconv.Itoa(r.Concurrency), strconv.Itoa(n.Concurrency), "")
	field("rate", rateText(r.Rate), rateText(n.Rate), "")
	field("retry max_attempts", strconv.Itoa(r.Retry.MaxAttempts), strconv.Itoa(n.Retry.MaxAttempts), "")
	field("retry initial", durationText(r.Retry.Initial), durationText(n.Retry.Initial), "")
	field("retry max", durationText(r.Retry.Max), durationText(n.Retry.Max), "")
	field("dead_letter", r.DeadLetter, n.DeadLetter, "dead letters so far stay where they are")
	field("on_success", r.OnSuccess, n.OnSuccess, "")
	field("on_failure", r.OnFailure, n.OnFailure, "")
	field("dedupe", orOff(r.Dedupe), orOff(n.Dedupe), "")
	field("start_from", r.StartFrom, n.StartFrom, "no effect: where a subscriber starts is fixed when it is created")
	return out
}

func diffFunction(r, n EffectiveFunction) []Change {
	var out []Change
	field := func(f, from, to string) {
		if from != to {
			out = append(out, Change{Kind: "function", Name: r.Name, Op: OpChange, Field: f, From: from, To: to})
		}
	}
	field("module", r.Module, n.Module)
	if r.Version != "" && n.Version != "" {
		field("version", short(r.Version), short(n.Version))
	}
	field("timeout", durationText(r.Timeout), durationText(n.Timeout))
	field("idle_timeout", durationText(r.IdleTimeout), durationText(n.IdleTimeout))
	field("memory", sizeText(r.Memory), sizeText(n.Memory))
	field("max_result_size", sizeText(r.MaxResultSize), sizeText(n.MaxResultSize))
	field("max_log_size", sizeText(r.MaxLogSize), sizeText(n.MaxLogSize))
	field("instance", r.Instance, n.Instance)
	list := func(f string, from, to []string) {
		for _, s := range from {
			if !slices.Contains(to, s) {
				out = append(out, Change{Kind: "function", Name: r.Name, Op: OpChange, Field: f, From: s})
			}
		}
		for _, s := range to {
			if !slices.Contains(from, s) {
				out = append(out, Change{Kind: "function", Name: r.Name, Op: OpChange, Field: f, To: s})
			}
		}
	}
	list("publish", r.Publish, n.Publish)
	list("allowed_hosts", r.AllowedHosts, n.AllowedHosts)
	list("env", r.EnvKeys, n.EnvKeys)
	for i := range out {
		if c := &out[i]; c.Field == "env" && c.To != "" && slices.Contains(n.EnvFromEnv, c.To) {
			c.Note = "from env"
		}
	}
	for _, k := range n.EnvKeys {
		was, is := slices.Contains(r.EnvFromEnv, k), slices.Contains(n.EnvFromEnv, k)
		if slices.Contains(r.EnvKeys, k) && was != is {
			out = append(out, Change{Kind: "function", Name: r.Name, Op: OpChange, Field: "env " + k, From: envSource(was), To: envSource(is)})
		}
	}
	return out
}

// envSource says where an environment variable's value comes from, never
// what it is.
func envSource(fromEnv bool) string {
	if fromEnv {
		return "(from env)"
	}
	return "(in the file)"
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

// durationText shortens a Go duration string: "5m0s" -> "5m".
func durationText(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}

func sizeText(n int64) string {
	if n <= 0 {
		return strconv.FormatInt(n, 10)
	}
	return formatSize(n)
}

func rateText(perSec float64) string {
	if perSec <= 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(perSec, 'g', -1, 64) + "/s"
}

func byName[T any](items []T, name func(T) string) map[string]T {
	m := make(map[string]T, len(items))
	for _, it := range items {
		m[name(it)] = it
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// DiffConfigs is Diff of two configs, without module versions.
func DiffConfigs(running, next *Config) []Change {
	return Diff(EffectiveOf(running, nil), EffectiveOf(next, nil))
}

// dedupeText is a binding's dedupe window as the plan shows it ("" off).
func dedupeText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return durationText(d.String())
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

// DecodeEffective reads the Effective JSON a runtime recorded.
func DecodeEffective(raw []byte) (*Effective, error) {
	var eff Effective
	if err := json.Unmarshal(raw, &eff); err != nil {
		return nil, fmt.Errorf("the running config is not valid: %w", err)
	}
	if eff.Schema != EffectiveSchema {
		return nil, fmt.Errorf("the running config has schema %d; this CLI reads schema %d", eff.Schema, EffectiveSchema)
	}
	return &eff, nil
}

// Planned is a Change with what it means for pending events (`sluice
// plan`).
type Planned struct {
	Change
	// Pending is the binding's backlog (events not yet delivered,
	// delivered and not yet settled, and replays waiting), for changes
	// that concern a binding that runs now.
	Pending *uint64 `json:"pending,omitempty"`
	Text    string  `json:"text"`
}

// Plan is the changes from running to next, each with the pending events
// of its binding as pending reports them (ok false: unknown).
func Plan(running, next *Effective, pending func(binding string) (uint64, bool)) []Planned {
	out := []Planned{}
	for _, ch := range Diff(running, next) {
		p := Planned{Change: ch}
		if ch.Binding != "" && ch.Op != OpAdd {
			if n, ok := pending(ch.Binding); ok {
				p.Pending = &n
			}
		}
		p.Text = p.text()
		out = append(out, p)
	}
	return out
}

func (p Planned) text() string {
	s := p.Change.String()
	if p.Pending == nil {
		return s
	}
	n := *p.Pending
	events := thousands(n) + " pending " + plural(int(min(n, 2)), "event", "events")
	switch p.Op {
	case OpRemove:
		if n == 0 {
			return s + ": no pending events"
		}
		what := "it"
		if p.Kind == "queue" {
			what = "a function (they stay in the stream)"
		}
		return fmt.Sprintf("%s: %s will no longer be delivered to %s", s, events, what)
	case OpChange:
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

// plural is one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// FunctionNames are the names of e's functions.
func (e *Effective) FunctionNames() []string {
	var out []string
	for _, f := range e.Functions {
		out = append(out, f.Name)
	}
	return out
}

// BindingNames are the names of e's bindings.
func (e *Effective) BindingNames() []string {
	var out []string
	for _, b := range e.Bindings {
		out = append(out, b.Name)
	}
	return out
}
