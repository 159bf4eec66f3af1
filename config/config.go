// Package config loads runtime.hcl into a validated Config.
//
// Every problem in a file is reported as an HCL diagnostic with its source
// range, all of them at once; a Config returned without error diagnostics is
// complete: defaults are filled in, durations, sizes and rates are parsed,
// and every function a binding names exists.
package config

import (
	"path/filepath"
	"time"
)

// Config is a whole runtime.hcl, validated and with defaults applied.
type Config struct {
	// Path is the file the config was read from ("" when parsed from memory).
	// Relative module paths are resolved against its directory.
	Path      string
	NATS      NATS
	Metrics   Metrics
	Functions []Function
	Queues    []Queue
	Topics    []Topic
	// Users are the user blocks of the nats block: when there are any,
	// they are the only identities the embedded server accepts; without
	// any there is no authentication, allowed only on a loopback listen
	// address. (Kept out of NATS so that NATS stays comparable.)
	Users []User
	// ReplySubjects are the nats block's reply_subjects: patterns a
	// producer may name in a Sluice-Reply header besides the inbox
	// namespace ("_INBOX.>", always allowed). None reaches a reserved
	// namespace (see ReservedSubject) or a subject a binding consumes.
	ReplySubjects []string
}

// NATS configures the embedded server, or names an existing one.
type NATS struct {
	// Listen is the embedded server's client address. Default "127.0.0.1:4222".
	Listen string
	// StoreDir holds JetStream's files. Default ".sluice/jetstream", relative
	// to the directory of the config file.
	StoreDir string
	// URL, when set, makes sluice a client of an existing NATS deployment;
	// Listen and StoreDir are then ignored.
	URL string
	// Sync is how the embedded server flushes to disk: "always" (default;
	// fsync before acknowledging a publish) or a duration such as "2m" (the
	// fast setting: acknowledged writes younger than this can be lost on
	// power failure, not on a process crash).
	Sync string
	// SyncInterval is Sync parsed: 0 means "always".
	SyncInterval time.Duration
	// MaxMemory bounds JetStream memory storage. Default 256 MiB.
	MaxMemory int64
	// MaxStore bounds JetStream file storage. Default 10 GiB.
	MaxStore int64
	// Name names this node: the embedded server's name (unique in a
	// cluster), and the node shown in `sluice bindings`, metrics and
	// attempt histories. Default: the host name.
	Name string
	// Replicas is how many copies JetStream keeps of every stream, bucket
	// and consumer sluice creates. Default 1, or 3 with a cluster block.
	Replicas int
	// Cluster, when set, makes the embedded server one of a NATS cluster
	// of embedded servers.
	Cluster *Cluster
	// Creds and NKey are this node's credentials on the deployment at URL:
	// a credentials file (user JWT and seed) or an NKEY seed file.
	Creds, NKey string
	// TLS is the embedded server's client listener's TLS, or in client
	// mode (URL set) the client side of it.
	TLS *TLS
	// Insecure accepts users' and routes' passwords crossing a
	// non-loopback listener without TLS.
	Insecure bool
}

// Cluster makes embedded servers form a NATS cluster, with JetStream
// replicated across them.
type Cluster struct {
	// Name is the cluster's name, the same on every node. Default "sluice".
	Name string
	// Listen is where this node accepts the other nodes' routes
	// ("host:port").
	Listen string
	// Routes are the other nodes' cluster addresses ("nats://host:port");
	// listing this node's own address too is allowed, so that every node
	// can share one list.
	Routes []string
	// User and Password, when set, are required of every route; they are
	// added to the routes' URLs. A non-loopback cluster listen address
	// requires them.
	User        string
	Password    string
	PasswordEnv string
	// TLS, when set, encrypts and authenticates the routes.
	TLS *TLS
}

// User roles.
const (
	// RoleAdmin may do everything.
	RoleAdmin = "admin"
	// RolePublish may publish events to the bindings' subjects and read
	// streams, bindings and event statuses, nothing else.
	RolePublish = "publish"
)

// User is one identity of the embedded NATS server.
type User struct {
	Name string
	// Password is the password, from the file or from the environment
	// variable PasswordEnv (read when the file is loaded).
	Password    string
	PasswordEnv string
	Role        string // RoleAdmin or RolePublish
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the HTTP address for /metrics, /healthz and /readyz.
	// Default "127.0.0.1:9464"; "" only when disabled is true.
	Listen   string
	Disabled bool
}

// DefaultModule is the module built from source when a function gives no
// module: <source>/<base name of source>.wasm.
func DefaultModule(source string) string {
	return filepath.Join(source, filepath.Base(source)+".wasm")
}

// Function is a WebAssembly module and its sandbox limits and capabilities.
type Function struct {
	Name string
	// Module is the path of the .wasm file, resolved against the config's
	// directory.
	Module string
	// Source, when set, is a directory holding a guest (Go, C, Rust or
	// AssemblyScript, detected from its files); the runtime builds Module
	// from it when Module is missing or older than the sources. Without a
	// module attribute, Module is DefaultModule(Source).
	Source string
	// Timeout is the wall-clock limit of one invocation. Default 30s.
	Timeout time.Duration
	// IdleTimeout is how long the function's workers stay up without an
	// event; then they stop, and the next event starts one (scale to zero).
	// Default 5m.
	IdleTimeout time.Duration
	// Memory is the linear memory limit in bytes. Default 128 MiB.
	Memory int64
	// Env is the guest's whole WASI environment.
	Env map[string]string
	// EnvFromHost lists, sorted, the keys of Env whose value the file reads
	// from the runtime's environment with env("NAME"): secrets, which are
	// never recorded or shown.
	EnvFromHost []string
	// Publish lists the subjects (NATS wildcards allowed) the guest may
	// publish to. Empty: none.
	Publish []string
	// AllowedHosts lists URL prefixes for outbound HTTP. Empty: none.
	AllowedHosts []string
	// MaxResultSize bounds the result of one invocation. Default 64 KiB,
	// at most the package's MaxResultSize.
	MaxResultSize int64
	// MaxLogSize bounds what one invocation may log (stdout, stderr and the
	// log host call together); the rest is dropped and the truncation
	// logged. Default 64 KiB.
	MaxLogSize int64
	// FreshInstance gives every invocation a new instance (instance =
	// "fresh") instead of reusing a warm one (instance = "warm", default).
	FreshInstance bool
}

// Retry is a retry policy: exponential backoff with jitter, capped.
type Retry struct {
	// MaxAttempts counts the first attempt too. Default 5; 1 means no retry.
	MaxAttempts int
	// Initial is the backoff window of the first retry. Default 1s.
	Initial time.Duration
	// Max caps the backoff window. Default 5m.
	Max time.Duration
}

// Rate is a limit in events per second; zero means unlimited.
type Rate struct {
	Events float64
	Per    time.Duration
}

// PerSecond returns the rate in events per second (0: unlimited).
func (r Rate) PerSecond() float64 {
	if r.Per == 0 {
		return 0
	}
	return r.Events / r.Per.Seconds()
}

// Queue is a point-to-point binding: each event is handled by one successful
// invocation of Function.
type Queue struct {
	Name        string
	Subject     string
	Function    string
	Concurrency int // per node; default 1
	// Rate is the whole binding's, shared equally by the nodes running it.
	Rate  Rate
	Retry Retry
	// DeadLetter is the subject dead letters go to. Default
	// "sluice.dlq.<binding>" with "/" in the binding name replaced by ".".
	DeadLetter string
	OnSuccess  string // optional subject for the function's result
	OnFailure  string // optional subject for the failure record
	// Dedupe, when not zero, makes the binding effectively-once: an event
	// whose id already succeeded at this binding within this window is
	// acknowledged without running the function again. At most MaxDedupe.
	Dedupe time.Duration
	// MaxEventSize bounds one event's payload (the stream's max message
	// size). Default 1 MiB.
	MaxEventSize int64
}

// Topic is a publish/subscribe binding: every subscriber gets every event.
type Topic struct {
	Name    string
	Subject string
	// Retention is how long events are kept for subscribers (and for new
	// subscribers that start from history). Default 7 days.
	Retention    time.Duration
	MaxEventSize int64 // default 1 MiB
	Subscribers  []Subscriber
}

// Subscriber is one function's subscription to a topic. Its binding name is
// "TOPIC/SUBSCRIBER".
type Subscriber struct {
	Name        string
	Function    string
	Concurrency int // per node; default 1
	Rate        Rate
	Retry       Retry
	DeadLetter  string // default "sluice.dlq.<topic>.<subscriber>"
	OnSuccess   string
	OnFailure   string
	// Dedupe is as in Queue.
	Dedupe time.Duration
	// StartFrom is "new" (default: events published after the subscriber is
	// first created) or "all" (everything the topic still retains).
	StartFrom string
}

// Binding kinds.
const (
	KindQueue = "queue"
	KindTopic = "topic"
)

// Binding is a queue or a topic subscriber, flattened: the unit that
// consumes events and invokes one function.
type Binding struct {
	// Name is the queue's name, or "TOPIC/SUBSCRIBER".
	Name string
	Kind string // KindQueue or KindTopic
	// Source is the queue's or topic's name.
	Source       string
	Subject      string
	Function     string
	Concurrency  int
	Rate         Rate
	Retry        Retry
	DeadLetter   string
	OnSuccess    string
	OnFailure    string
	Dedupe       time.Duration // 0: off
	StartFrom    string        // topics only
	MaxEventSize int64
}

// Bindings returns every queue, then every topic subscriber, in file order.
func (c *Config) Bindings() []Binding {
	var out []Binding
	for _, q := range c.Queues {
		out = append(out, Binding{
			Name: q.Name, Kind: KindQueue, Source: q.Name, Subject: q.Subject,
			Function: q.Function, Concurrency: q.Concurrency, Rate: q.Rate,
			Retry: q.Retry, DeadLetter: q.DeadLetter, OnSuccess: q.OnSuccess,
			OnFailure: q.OnFailure, Dedupe: q.Dedupe, MaxEventSize: q.MaxEventSize,
		})
	}
	for _, t := range c.Topics {
		for _, s := range t.Subscribers {
			out = append(out, Binding{
				Name: t.Name + "/" + s.Name, Kind: KindTopic, Source: t.Name,
				Subject: t.Subject, Function: s.Function, Concurrency: s.Concurrency,
				Rate: s.Rate, Retry: s.Retry, DeadLetter: s.DeadLetter,
				OnSuccess: s.OnSuccess, OnFailure: s.OnFailure, Dedupe: s.Dedupe,
				StartFrom: s.StartFrom, MaxEventSize: t.MaxEventSize,
			})
		}
	}
	return out
}

// FunctionNames are the names of c's functions.
func (c *Config) FunctionNames() []string {
	var out []string
	for _, f := range c.Functions {
		out = append(out, f.Name)
	}
	return out
}

// Function returns the function called name.
func (c *Config) Function(name string) (Function, bool) {
	for _, f := range c.Functions {
		if f.Name == name {
			return f, true
		}
	}
	return Function{}, false
}
