package config

import (
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// The schema of runtime.hcl. There is no catch-all: anything not listed is
// an error.
var (
	rootSchema = &hcl.BodySchema{
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "nats"},
			{Type: "metrics"},
			{Type: "function", LabelNames: []string{"name"}},
			{Type: "queue", LabelNames: []string{"name"}},
			{Type: "topic", LabelNames: []string{"name"}},
		},
	}
	natsSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "listen"}, {Name: "store_dir"}, {Name: "url"}, {Name: "sync"},
			{Name: "max_memory"}, {Name: "max_store"}, {Name: "name"}, {Name: "replicas"},
			{Name: "reply_subjects"}, {Name: "creds"}, {Name: "nkey"}, {Name: "insecure"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "user", LabelNames: []string{"name"}}, {Type: "cluster"}, {Type: "tls"}},
	}
	clusterSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "name"}, {Name: "listen", Required: true}, {Name: "routes"},
			{Name: "user"}, {Name: "password"}, {Name: "password_env"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}},
	}
	userSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "password"}, {Name: "password_env"}, {Name: "role", Required: true}},
	}
	metricsSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "listen"}, {Name: "enabled"}},
	}
	functionSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "module"}, {Name: "source"}, {Name: "timeout"}, {Name: "idle_timeout"},
			{Name: "memory"}, {Name: "env"}, {Name: "publish"}, {Name: "allowed_hosts"},
			{Name: "instance"}, {Name: "max_result_size"}, {Name: "max_log_size"},
		},
	}
	queueSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "subject", Required: true}, {Name: "function", Required: true},
			{Name: "concurrency"}, {Name: "rate"}, {Name: "max_event_size"},
			{Name: "dead_letter"}, {Name: "on_success"}, {Name: "on_failure"}, {Name: "dedupe"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "retry"}},
	}
	topicSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "subject", Required: true}, {Name: "retention"}, {Name: "max_event_size"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "subscriber", LabelNames: []string{"name"}}},
	}
	subscriberSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "function", Required: true}, {Name: "concurrency"}, {Name: "rate"},
			{Name: "start_from"}, {Name: "dead_letter"}, {Name: "on_success"}, {Name: "on_failure"},
			{Name: "dedupe"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "retry"}},
	}
	retrySchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "max_attempts"}, {Name: "initial"}, {Name: "max"}},
	}
)

// Limits on values, beside the defaults in defaults.go.
const (
	maxNameLen        = 64
	maxTimeout        = 15 * time.Minute
	maxIdleTimeout    = 24 * time.Hour
	minMemory         = 64 << 10 // one wasm page
	maxMemory         = 4 << 30  // the wasm32 address space
	maxConcurrency    = 1024
	maxEventSizeLimit = 64 << 20
	maxMaxAttempts    = 100
)

// MaxDedupe bounds a binding's dedupe window: the runtime keeps statuses,
// which de-duplication reads, for this long (triggers.StatusTTL).
const MaxDedupe = 24 * time.Hour

// MaxResultSize is the largest max_result_size: a result travels base64
// encoded inside a JSON status record (the status bucket, a Sluice-Reply
// message, the status API's answer), which must fit JetStream's default
// 1 MiB max_payload with room for the record's other fields.
const MaxResultSize = 512 << 10

// source remembers where each part of a Config came from, for the checks
// that run after defaults are applied. Its slices run parallel to the
// Config's.
type source struct {
	functions []*entity
	queues    []*entity
	topics    []*entity
}

// entity is one block and what decoding it found.
type entity struct {
	block *hcl.Block
	attrs hcl.Attributes
	// retry is the retry block's attributes, nil without one.
	retry hcl.Attributes
	// nameOK is false when the block's label is not a valid name.
	nameOK bool
	// bad holds the attributes whose values were rejected.
	bad  map[string]bool
	subs []*entity // a topic's subscribers
}

func newEntity(b *hcl.Block, attrs hcl.Attributes) *entity {
	return &entity{block: b, attrs: attrs, bad: map[string]bool{}}
}

// valueRange is the range of attribute name's value, or of the block's
// label (then its type) when the attribute is not set.
func (e *entity) valueRange(name string) hcl.Range {
	if a, ok := e.attrs[name]; ok {
		return a.Expr.Range()
	}
	return e.labelRange()
}

func (e *entity) labelRange() hcl.Range {
	if len(e.block.LabelRanges) > 0 {
		return e.block.LabelRanges[0]
	}
	return e.block.TypeRange
}

func (e *entity) name() string {
	if len(e.block.Labels) > 0 {
		return e.block.Labels[0]
	}
	return ""
}

// decoder turns an HCL body into a Config, collecting every diagnostic.
type decoder struct {
	diags hcl.Diagnostics
	// dir is the absolute directory relative paths resolve against.
	dir string
	src source
	// users are the nats block's user blocks.
	users []User
	// replies is the nats block's reply_subjects, and where each is.
	replies     []string
	replyRanges []hcl.Range
	// clusterListen is where the cluster block's listen is.
	clusterListen hcl.Range
}

func (d *decoder) errorf(rng hcl.Range, summary, detail string, args ...any) {
	r := rng
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detail, args...),
		Subject:  &r,
	})
}

// content decodes body against schema, keeping the diagnostics.
func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	c, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	if c == nil {
		c = &hcl.BodyContent{}
	}
	return c
}

// atMostOne reports every block of blocks after the first as an error, and
// returns the first (nil when there is none).
func (d *decoder) atMostOne(blocks hcl.Blocks, where string) *hcl.Block {
	if len(blocks) == 0 {
		return nil
	}
	for _, b := range blocks[1:] {
		d.errorf(b.DefRange, fmt.Sprintf("Duplicate %s block", b.Type),
			"Only one %s block is allowed%s; the first was defined at %s.", b.Type, where, blocks[0].DefRange)
	}
	return blocks[0]
}

// decodeFile decodes the root body.
func (d *decoder) decodeFile(body hcl.Body) *Config {
	cfg := &Config{}
	root := d.content(body, rootSchema)
	blocks := root.Blocks.ByType()
	if b := d.atMostOne(blocks["nats"], " in a file"); b != nil {
		d.decodeNATS(b, &cfg.NATS)
		cfg.Users = d.users
		cfg.ReplySubjects = d.replies
	}
	if b := d.atMostOne(blocks["metrics"], " in a file"); b != nil {
		d.decodeMetrics(b, &cfg.Metrics)
	}
	for _, b := range blocks["function"] {
		cfg.Functions = append(cfg.Functions, d.decodeFunction(b))
	}
	for _, b := range blocks["queue"] {
		cfg.Queues = append(cfg.Queues, d.decodeQueue(b))
	}
	for _, b := range blocks["topic"] {
		cfg.Topics = append(cfg.Topics, d.decodeTopic(b))
	}
	return cfg
}

func (d *decoder) decodeNATS(b *hcl.Block, n *NATS) {
	c := d.content(b.Body, natsSchema)
	if a := c.Attributes["listen"]; a != nil {
		if s, ok := d.str(a); ok && d.hostPort(a, s, -1) {
			n.Listen = s
		}
	}
	if a := c.Attributes["store_dir"]; a != nil {
		if s, ok := d.path(a); ok {
			n.StoreDir = s
		}
	}
	if a := c.Attributes["url"]; a != nil {
		if s, ok := d.str(a); ok && d.natsURL(a, s) {
			n.URL = s
		}
	}
	if a := c.Attributes["sync"]; a != nil {
		if s, ok := d.str(a); ok {
			if s == "always" {
				n.Sync, n.SyncInterval = s, 0
			} else if v, err := time.ParseDuration(s); err != nil || v <= 0 {
				d.errorf(a.Expr.Range(), "Invalid sync setting",
					`sync must be "always" (flush to disk before acknowledging a publish) or a positive duration such as "1s" or "2m" (flush at that interval); got %q.`, s)
			} else {
				n.Sync, n.SyncInterval = s, v
			}
		}
	}
	if a := c.Attributes["max_memory"]; a != nil {
		if v, ok := d.size(a, 1, 0); ok {
			n.MaxMemory = v
		}
	}
	if a := c.Attributes["max_store"]; a != nil {
		if v, ok := d.size(a, 1, 0); ok {
			n.MaxStore = v
		}
	}
	if a := c.Attributes["name"]; a != nil {
		if s, ok := d.str(a); ok && d.nodeName(a, s) {
			n.Name = s
		}
	}
	if a := c.Attributes["replicas"]; a != nil {
		if v, ok := d.integer(a, 1, 5); ok {
			n.Replicas = v
		}
	}
	if a := c.Attributes["reply_subjects"]; a != nil {
		d.replies = d.replySubjects(a)
	}
	d.users = d.decodeUsers(c)
	n.Cluster = d.decodeCluster(c)
	d.decodeTransport(c, n)
}

func (d *decoder) decodeMetrics(b *hcl.Block, m *Metrics) {
	c := d.content(b.Body, metricsSchema)
	if a := c.Attributes["listen"]; a != nil {
		if s, ok := d.str(a); ok && d.hostPort(a, s, 0) {
			m.Listen = s
		}
	}
	if a := c.Attributes["enabled"]; a != nil {
		if v, ok := d.boolean(a); ok {
			m.Disabled = !v
		}
	}
}

func (d *decoder) decodeFunction(b *hcl.Block) Function {
	c := d.content(b.Body, functionSchema)
	e := newEntity(b, c.Attributes)
	d.src.functions = append(d.src.functions, e)
	f := Function{Name: e.name()}
	e.nameOK = d.label(b, "function")
	if a := c.Attributes["module"]; a != nil {
		if s, ok := d.path(a); ok {
			f.Module = s
		}
	}
	if a := c.Attributes["source"]; a != nil {
		if s, ok := d.path(a); ok {
			f.Source = s
		}
	}
	if c.Attributes["module"] == nil && c.Attributes["source"] == nil {
		d.errorf(b.DefRange, "Function has no module",
			"A function needs module (a .wasm file) or source (a directory sluice builds it from: Go, C, Rust or AssemblyScript), or both.")
	} else if c.Attributes["module"] == nil && f.Source != "" {
		f.Module = DefaultModule(f.Source)
	}
	if a := c.Attributes["timeout"]; a != nil {
		if v, ok := d.duration(a, maxTimeout); ok {
			f.Timeout = v
		}
	}
	if a := c.Attributes["idle_timeout"]; a != nil {
		if v, ok := d.duration(a, maxIdleTimeout); ok {
			f.IdleTimeout = v
		}
	}
	if a := c.Attributes["memory"]; a != nil {
		if v, ok := d.size(a, minMemory, maxMemory); ok {
			f.Memory = v
		}
	}
	if a := c.Attributes["env"]; a != nil {
		f.Env, f.EnvFromHost = d.env(a)
	}
	if a := c.Attributes["publish"]; a != nil {
		f.Publish = d.subjects(a)
	}
	if a := c.Attributes["allowed_hosts"]; a != nil {
		f.AllowedHosts = d.hosts(a)
	}
	if a := c.Attributes["max_result_size"]; a != nil {
		if v, ok := d.size(a, 1, 0); ok && v > MaxResultSize {
			d.errorf(a.Expr.Range(), "Result size too large",
				"max_result_size is at most %s: a result is returned base64 encoded inside a JSON status record (for `sluice status`, `publish --wait` and Sluice-Reply), which must fit the broker's 1 MiB message limit; got %s. Publish large outputs to a subject or store them instead.",
				formatSize(MaxResultSize), formatSize(v))
		} else if ok {
			f.MaxResultSize = v
		}
	}
	if a := c.Attributes["max_log_size"]; a != nil {
		if v, ok := d.size(a, 1, 16<<20); ok {
			f.MaxLogSize = v
		}
	}
	if a := c.Attributes["instance"]; a != nil {
		if v, ok := d.str(a); ok {
			switch v {
			case "warm":
			case "fresh":
				f.FreshInstance = true
			default:
				d.errorf(a.Expr.Range(), "Invalid instance setting",
					`instance must be "warm" (reuse an instance between invocations, the default) or "fresh" (a new instance for every invocation); got %q.`, v)
			}
		}
	}
	return f
}

func (d *decoder) decodeQueue(b *hcl.Block) Queue {
	c := d.content(b.Body, queueSchema)
	e := newEntity(b, c.Attributes)
	d.src.queues = append(d.src.queues, e)
	q := Queue{Name: e.name()}
	e.nameOK = d.label(b, "queue")
	q.Subject = d.streamSubject(e)
	q.MaxEventSize = d.maxEventSize(e)
	p := d.decodePolicy(e, c)
	q.Function, q.Concurrency, q.Rate, q.Retry = p.Function, p.Concurrency, p.Rate, p.Retry
	q.DeadLetter, q.OnSuccess, q.OnFailure = p.DeadLetter, p.OnSuccess, p.OnFailure
	q.Dedupe = p.Dedupe
	return q
}

func (d *decoder) decodeTopic(b *hcl.Block) Topic {
	c := d.content(b.Body, topicSchema)
	e := newEntity(b, c.Attributes)
	d.src.topics = append(d.src.topics, e)
	t := Topic{Name: e.name()}
	e.nameOK = d.label(b, "topic")
	t.Subject = d.streamSubject(e)
	t.MaxEventSize = d.maxEventSize(e)
	if a := c.Attributes["retention"]; a != nil {
		if v, ok := d.duration(a, 0); ok {
			t.Retention = v
		} else {
			e.bad["retention"] = true
		}
	}
	subs := c.Blocks.ByType()["subscriber"]
	if len(subs) == 0 {
		d.errorf(b.DefRange, "Topic has no subscribers",
			"A topic needs at least one subscriber block, such as:\n  subscriber \"NAME\" { function = \"FUNCTION\" }")
	}
	for _, sb := range subs {
		sc := d.content(sb.Body, subscriberSchema)
		se := newEntity(sb, sc.Attributes)
		e.subs = append(e.subs, se)
		s := Subscriber{Name: se.name()}
		se.nameOK = d.label(sb, "subscriber")
		p := d.decodePolicy(se, sc)
		s.Function, s.Concurrency, s.Rate, s.Retry = p.Function, p.Concurrency, p.Rate, p.Retry
		s.DeadLetter, s.OnSuccess, s.OnFailure = p.DeadLetter, p.OnSuccess, p.OnFailure
		s.Dedupe = p.Dedupe
		if a := sc.Attributes["start_from"]; a != nil {
			if v, ok := d.str(a); ok {
				if v == "new" || v == "all" {
					s.StartFrom = v
				} else {
					d.errorf(a.Expr.Range(), "Invalid start_from",
						`start_from must be "new" (only events published after the subscriber is created) or "all" (everything the topic retains); got %q.`, v)
				}
			}
		}
		t.Subscribers = append(t.Subscribers, s)
	}
	return t
}

// decodePolicy decodes what queues and subscribers share, into a Binding.
func (d *decoder) decodePolicy(e *entity, c *hcl.BodyContent) Binding {
	var p Binding
	if a := c.Attributes["function"]; a != nil {
		if s, ok := d.str(a); ok {
			p.Function = s
		} else {
			e.bad["function"] = true
		}
	} else {
		e.bad["function"] = true // missing: HCL said so
	}
	if a := c.Attributes["concurrency"]; a != nil {
		if v, ok := d.integer(a, 1, maxConcurrency); ok {
			p.Concurrency = v
		}
	}
	if a := c.Attributes["rate"]; a != nil {
		if s, ok := d.str(a); ok {
			if r, err := ParseRate(s); err != nil {
				d.errorf(a.Expr.Range(), "Invalid rate", "%s. A rate is %s.", capitalize(err.Error()), rateHelp)
			} else {
				p.Rate = r
			}
		}
	}
	if a := c.Attributes["dedupe"]; a != nil {
		if v, ok := d.duration(a, MaxDedupe); ok {
			p.Dedupe = v
		}
	}
	for _, name := range []string{"dead_letter", "on_success", "on_failure"} {
		a := c.Attributes[name]
		if a == nil {
			continue
		}
		s, ok := d.str(a)
		if ok {
			ok = d.literalSubject(a, s)
		}
		if ok && name == "dead_letter" && len(s) > MaxDeadLetterLen {
			d.errorf(a.Expr.Range(), "Subject too long",
				"The dead-letter subject is %d bytes long; at most %d bytes, because each dead letter goes to a subject one token below it, within %d bytes.", len(s), MaxDeadLetterLen, MaxSubjectLen)
			ok = false
		}
		if !ok {
			e.bad[name] = true
			continue
		}
		switch name {
		case "dead_letter":
			p.DeadLetter = s
		case "on_success":
			p.OnSuccess = s
		case "on_failure":
			p.OnFailure = s
		}
	}
	if rb := d.atMostOne(c.Blocks.ByType()["retry"], " per "+e.block.Type); rb != nil {
		rc := d.content(rb.Body, retrySchema)
		e.retry = rc.Attributes
		if a := rc.Attributes["max_attempts"]; a != nil {
			if v, ok := d.integer(a, 1, maxMaxAttempts); ok {
				p.Retry.MaxAttempts = v
			}
		}
		for _, name := range []string{"initial", "max"} {
			a := rc.Attributes[name]
			if a == nil {
				continue
			}
			v, ok := d.duration(a, 0)
			switch {
			case !ok:
				e.bad["retry."+name] = true
			case name == "initial":
				p.Retry.Initial = v
			default:
				p.Retry.Max = v
			}
		}
	}
	return p
}

// streamSubject decodes the subject a queue or topic consumes.
func (d *decoder) streamSubject(e *entity) string {
	a := e.attrs["subject"]
	if a == nil {
		e.bad["subject"] = true
		return ""
	}
	s, ok := d.str(a)
	if !ok {
		e.bad["subject"] = true
		return ""
	}
	if err := ValidSubject(s, true); err != nil {
		d.errorf(a.Expr.Range(), "Invalid subject", "%s. %s", capitalize(err.Error()), subjectHelp)
		e.bad["subject"] = true
		return ""
	}
	if !d.subjectLength(a.Expr.Range(), s) {
		e.bad["subject"] = true
		return ""
	}
	if why := reservedSubject(s); why != "" {
		d.errorf(a.Expr.Range(), "Reserved subject", "The subject %q cannot be consumed by a %s: %s.", s, e.block.Type, why)
		e.bad["subject"] = true
		return ""
	}
	return s
}

const subjectHelp = `A subject is tokens separated by dots, such as "orders.created"; "*" matches one token and a final ">" matches the rest, as whole tokens.`

func (d *decoder) maxEventSize(e *entity) int64 {
	a := e.attrs["max_event_size"]
	if a == nil {
		return 0
	}
	v, _ := d.size(a, 1, maxEventSizeLimit)
	return v
}

// literalSubject checks a subject sluice publishes to.
func (d *decoder) literalSubject(a *hcl.Attribute, s string) bool {
	if err := ValidSubject(s, false); err != nil {
		d.errorf(a.Expr.Range(), "Invalid subject",
			"%s. The %s attribute needs a literal subject (no wildcards), such as \"orders.failed\".", capitalize(err.Error()), a.Name)
		return false
	}
	if !d.subjectLength(a.Expr.Range(), s) {
		return false
	}
	if first, _, _ := strings.Cut(s, "."); strings.HasPrefix(first, "$") || first == "_INBOX" {
		d.errorf(a.Expr.Range(), "Reserved subject",
			`The %s subject %q is reserved: subjects starting with "$" belong to the NATS server and "_INBOX" to replies.`, a.Name, s)
		return false
	}
	return true
}

// label checks a block's name.
func (d *decoder) label(b *hcl.Block, kind string) bool {
	if len(b.Labels) == 0 || len(b.LabelRanges) == 0 {
		return false
	}
	if err := validName(b.Labels[0]); err != nil {
		d.errorf(b.LabelRanges[0], fmt.Sprintf("Invalid %s name", kind),
			"%s. A name starts with a letter or '_' and continues with letters, digits, '_' or '-', at most %d characters.", capitalize(err.Error()), maxNameLen)
		return false
	}
	return true
}

func validName(s string) error {
	if s == "" {
		return fmt.Errorf("the name is empty")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("the name %q is %d characters long", s, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter || i > 0 && !letter && c != '-' && !(c >= '0' && c <= '9') {
			return fmt.Errorf("%q is not a valid name", s)
		}
	}
	return nil
}

// value evaluates a as a constant: no variables, and no functions (env()
// is refused with a diagnostic). ok is false when the value is unusable;
// the reason is already a diagnostic.
func (d *decoder) value(a *hcl.Attribute) (cty.Value, bool) {
	return d.eval(a, plainContext)
}

// eval evaluates a in ctx as a constant.
func (d *decoder) eval(a *hcl.Attribute, ctx *hcl.EvalContext) (cty.Value, bool) {
	v, diags := a.Expr.Value(ctx)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		d.errorf(a.Expr.Range(), "Invalid value", "The value of %q must be a constant.", a.Name)
		return cty.NilVal, false
	}
	if v.IsNull() {
		d.errorf(a.Expr.Range(), "Invalid value", "The value of %q must not be null; remove the attribute to use the default.", a.Name)
		return cty.NilVal, false
	}
	return v, true
}

func (d *decoder) typeError(a *hcl.Attribute, want string, got cty.Type) {
	d.errorf(a.Expr.Range(), "Incorrect attribute value type",
		"Inappropriate value for attribute %q: %s is required, not %s.", a.Name, want, got.FriendlyName())
}

func (d *decoder) str(a *hcl.Attribute) (string, bool) {
	v, ok := d.value(a)
	if !ok {
		return "", false
	}
	if v.Type() != cty.String {
		d.typeError(a, "a string", v.Type())
		return "", false
	}
	return v.AsString(), true
}

func (d *decoder) boolean(a *hcl.Attribute) (bool, bool) {
	v, ok := d.value(a)
	if !ok {
		return false, false
	}
	if v.Type() != cty.Bool {
		d.typeError(a, "true or false", v.Type())
		return false, false
	}
	return v.True(), true
}

// integer decodes a whole number in [lo, hi].
func (d *decoder) integer(a *hcl.Attribute, lo, hi int) (int, bool) {
	v, ok := d.value(a)
	if !ok {
		return 0, false
	}
	if v.Type() != cty.Number {
		d.typeError(a, "a number", v.Type())
		return 0, false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact || n < int64(lo) || n > int64(hi) {
		d.errorf(a.Expr.Range(), "Value out of range",
			"%s must be a whole number from %d to %d; got %s.", a.Name, lo, hi, bf.Text('g', 10))
		return 0, false
	}
	return int(n), true
}

// duration decodes a positive duration, at most hi (0: no upper bound).
func (d *decoder) duration(a *hcl.Attribute, hi time.Duration) (time.Duration, bool) {
	s, ok := d.str(a)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(a.Expr.Range(), "Invalid duration",
			`%q is not a duration. A duration is a number with a unit (ns, us, ms, s, m, h), such as "500ms", "30s", "5m" or "1h30m".`, s)
		return 0, false
	}
	if v <= 0 || hi > 0 && v > hi {
		if hi > 0 {
			d.errorf(a.Expr.Range(), "Duration out of range", "%s must be greater than 0 and at most %s; got %s.", a.Name, hi, s)
		} else {
			d.errorf(a.Expr.Range(), "Duration out of range", "%s must be greater than 0; got %s.", a.Name, s)
		}
		return 0, false
	}
	return v, true
}

// size decodes a byte size in [lo, hi] (hi 0: no upper bound).
func (d *decoder) size(a *hcl.Attribute, lo, hi int64) (int64, bool) {
	s, ok := d.str(a)
	if !ok {
		return 0, false
	}
	v, err := ParseSize(s)
	if err != nil {
		d.errorf(a.Expr.Range(), "Invalid size", "%s. A size is %s.", capitalize(err.Error()), sizeHelp)
		return 0, false
	}
	if v < lo || hi > 0 && v > hi {
		if hi > 0 {
			d.errorf(a.Expr.Range(), "Size out of range", "%s must be from %s to %s; got %s.", a.Name, formatSize(lo), formatSize(hi), s)
		} else {
			d.errorf(a.Expr.Range(), "Size out of range", "%s must be at least %s; got %s.", a.Name, formatSize(lo), s)
		}
		return 0, false
	}
	return v, true
}

// formatSize writes n with the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []string{"TiB", "GiB", "MiB", "KiB"} {
		if m := sizeUnits[u]; n >= m && n%m == 0 {
			return strconv.FormatInt(n/m, 10) + u
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// path decodes a non-empty path, made absolute against the config's
// directory.
func (d *decoder) path(a *hcl.Attribute) (string, bool) {
	s, ok := d.str(a)
	if !ok {
		return "", false
	}
	if strings.TrimSpace(s) == "" || strings.ContainsRune(s, 0) {
		d.errorf(a.Expr.Range(), "Invalid path", "%s must be a non-empty path, absolute or relative to the config file's directory.", a.Name)
		return "", false
	}
	return d.abs(s), true
}

func (d *decoder) abs(p string) string { return absIn(d.dir, p) }

// hostPort checks a listen address: host:port, the port from minPort to
// 65535.
func (d *decoder) hostPort(a *hcl.Attribute, s string, minPort int) bool {
	host, port, err := net.SplitHostPort(s)
	if err == nil && strings.ContainsAny(host, " \t\r\n") {
		err = fmt.Errorf("bad host %q", host)
	}
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < minPort || n > 65535 {
		random := ""
		if minPort < 0 {
			random = ", or -1 for a random port"
		} else {
			random = ", 0 for a random port"
		}
		d.errorf(a.Expr.Range(), "Invalid address",
			`%s must be host:port, such as "127.0.0.1:4222" or ":4222", with a port from 0 to 65535%s; got %q.`, a.Name, random, s)
		return false
	}
	return true
}

// natsURL checks a comma-separated list of NATS server URLs.
func (d *decoder) natsURL(a *hcl.Attribute, s string) bool {
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		u, err := url.Parse(part)
		ok := err == nil && u.Host != "" && u.Hostname() != ""
		if ok {
			switch u.Scheme {
			case "nats", "tls", "ws", "wss":
			default:
				ok = false
			}
		}
		if ok && u.Port() != "" {
			if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
				ok = false
			}
		}
		if !ok {
			d.errorf(a.Expr.Range(), "Invalid NATS URL",
				`url must be one or more comma-separated server URLs with the scheme nats://, tls://, ws:// or wss://, such as "nats://a:4222,nats://b:4222"; %q is not one.`, part)
			return false
		}
	}
	return true
}

// list evaluates a list of strings, with each element's range when the
// expression is a literal list.
func (d *decoder) list(a *hcl.Attribute) ([]string, []hcl.Range, bool) {
	v, ok := d.value(a)
	if !ok {
		return nil, nil, false
	}
	ty := v.Type()
	if !ty.IsTupleType() && !ty.IsListType() && !ty.IsSetType() {
		d.typeError(a, "a list of strings", ty)
		return nil, nil, false
	}
	var ranges []hcl.Range
	if exprs, diags := hcl.ExprList(a.Expr); !diags.HasErrors() && len(exprs) == v.LengthInt() {
		for _, e := range exprs {
			ranges = append(ranges, e.Range())
		}
	}
	var out []string
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		if ev.IsNull() || ev.Type() != cty.String {
			d.typeError(a, "a list of strings", ty)
			return nil, nil, false
		}
		out = append(out, ev.AsString())
		if len(ranges) <= i {
			ranges = append(ranges, a.Expr.Range())
		}
	}
	return out, ranges, true
}

// subjects decodes a function's publish list.
func (d *decoder) subjects(a *hcl.Attribute) []string {
	out, _ := d.ownSubjects(a, "A function may not publish to %q: %s. List the application's own subjects, such as \"orders.>\".")
	return out
}

// replySubjects decodes reply_subjects: the patterns, besides "_INBOX.>",
// that a producer may name in a Sluice-Reply header.
func (d *decoder) replySubjects(a *hcl.Attribute) []string {
	out, ranges := d.ownSubjects(a, "Replies may not go to %q: %s. Inboxes (\"_INBOX.>\") are always allowed; list only the application's own reply subjects, such as \"app.replies.>\".")
	d.replyRanges = append(d.replyRanges, ranges...)
	return out
}

// ownSubjects decodes a list of subject patterns the application owns:
// valid, bounded and outside the reserved namespaces (reserved is the
// diagnostic's detail, given the subject and why it is reserved). It
// returns the accepted patterns and their ranges.
func (d *decoder) ownSubjects(a *hcl.Attribute, reserved string) ([]string, []hcl.Range) {
	list, ranges, ok := d.list(a)
	if !ok {
		return nil, nil
	}
	var out []string
	var kept []hcl.Range
	for i, s := range list {
		if err := ValidSubject(s, true); err != nil {
			d.errorf(ranges[i], "Invalid subject", "%s. %s", capitalize(err.Error()), subjectHelp)
			continue
		}
		if !d.subjectLength(ranges[i], s) {
			continue
		}
		if why := ReservedSubject(s); why != "" {
			d.errorf(ranges[i], "Reserved subject", reserved, s, why)
			continue
		}
		out = append(out, s)
		kept = append(kept, ranges[i])
	}
	return out, kept
}

// subjectLength reports whether s is at most MaxSubjectLen bytes long,
// with a diagnostic at rng when it is not.
func (d *decoder) subjectLength(rng hcl.Range, s string) bool {
	if len(s) <= MaxSubjectLen {
		return true
	}
	d.errorf(rng, "Subject too long",
		"The subject is %d bytes long; sluice sends to and accepts subjects of at most %d bytes.", len(s), MaxSubjectLen)
	return false
}

// hosts decodes allowed_hosts: absolute http or https URLs.
func (d *decoder) hosts(a *hcl.Attribute) []string {
	list, ranges, ok := d.list(a)
	if !ok {
		return nil
	}
	var out []string
	for i, s := range list {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			d.errorf(ranges[i], "Invalid allowed host",
				`Each allowed host is an absolute http:// or https:// URL prefix without credentials, query or fragment, such as "https://api.example.com" or "https://api.example.com/v1/"; got %q.`, s)
			continue
		}
		out = append(out, s)
	}
	return out
}

// env decodes a function's environment: a map of strings whose keys are
// valid environment variable names. Values may be read from the runtime's
// environment with env("NAME"); fromHost lists the keys whose value is.
func (d *decoder) env(a *hcl.Attribute) (_ map[string]string, fromHost []string) {
	v, ok := d.eval(a, secretContext)
	if !ok {
		return nil, nil
	}
	ty := v.Type()
	if !ty.IsObjectType() && !ty.IsMapType() {
		d.typeError(a, "a map of strings", ty)
		return nil, nil
	}
	keyRanges := map[string]hcl.Range{}
	if pairs, diags := hcl.ExprMap(a.Expr); !diags.HasErrors() {
		for _, p := range pairs {
			if k, diags := p.Key.Value(nil); !diags.HasErrors() && k.Type() == cty.String && k.IsKnown() && !k.IsNull() {
				keyRanges[k.AsString()] = p.Key.Range()
				if fromEnv(p.Value) {
					fromHost = append(fromHost, k.AsString())
				}
			}
		}
	}
	out := map[string]string{}
	var keys []string
	vals := map[string]cty.Value{}
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		keys = append(keys, k.AsString())
		vals[k.AsString()] = ev
	}
	sort.Strings(keys)
	for _, k := range keys {
		rng, ok := keyRanges[k]
		if !ok {
			rng = a.Expr.Range()
		}
		if !validEnvName(k) {
			d.errorf(rng, "Invalid environment variable name",
				"%q is not a valid environment variable name: use letters, digits and '_', not starting with a digit.", k)
			continue
		}
		ev := vals[k]
		if ev.IsNull() || ev.Type() != cty.String {
			d.errorf(rng, "Incorrect attribute value type",
				"The environment variable %s must be a string, not %s; quote the value.", k, ev.Type().FriendlyName())
			continue
		}
		if strings.ContainsRune(ev.AsString(), 0) {
			d.errorf(rng, "Invalid environment variable value", "The value of %s contains a NUL character, which the environment cannot hold.", k)
			continue
		}
		out[k] = ev.AsString()
	}
	sort.Strings(fromHost)
	return out, fromHost
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// capitalize upper-cases the first letter of an error message, for use as
// a sentence in a diagnostic.
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
