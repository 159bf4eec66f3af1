package config

import (
	"path/filepath"
	"time"
)

// Defaults, as documented on the fields of Config. setDefaults is the one
// place they are applied.
const (
	defaultNATSListen    = "127.0.0.1:4222"
	defaultStoreDir      = ".sluice/jetstream" // relative to the config file's directory
	defaultSync          = "always"
	defaultMaxMemory     = 256 << 20
	defaultMaxStore      = 10 << 30
	defaultMetricsListen = "127.0.0.1:9464"
	defaultClusterName   = "sluice"
	// defaultClusterReplicas keeps every stream on three nodes, so that
	// losing one keeps a quorum.
	defaultClusterReplicas = 3
	defaultTimeout         = 30 * time.Second
	defaultIdleTimeout     = 5 * time.Minute
	defaultMemory          = 128 << 20
	defaultConcurrency     = 1
	defaultMaxAttempts     = 5
	defaultInitialBackoff  = time.Second
	defaultMaxBackoff      = 5 * time.Minute
	defaultMaxEventSize    = 1 << 20
	defaultRetention       = 7 * 24 * time.Hour
	defaultStartFrom       = "new"
	// deadLetterPrefix starts every default dead-letter subject.
	deadLetterPrefix = "sluice.dlq."
)

// defaultDeadLetter returns the dead-letter subject of a binding that sets
// none: "sluice.dlq.<binding>", with the "/" of a topic subscriber's binding
// name replaced by ".".
func defaultDeadLetter(binding string) string {
	b := []byte(binding)
	for i, c := range b {
		if c == '/' {
			b[i] = '.'
		}
	}
	return deadLetterPrefix + string(b)
}

// absIn returns p made absolute against the absolute directory dir.
func absIn(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// setDefaults fills every field the file left unset. Decoding leaves a field
// zero only when it is unset (explicit zero values are rejected), so zero
// means "default" here. dir is the absolute directory of the config file.
func (c *Config) setDefaults(dir string) {
	n := &c.NATS
	if n.Listen == "" {
		n.Listen = defaultNATSListen
	}
	if n.StoreDir == "" {
		n.StoreDir = absIn(dir, defaultStoreDir)
	}
	if n.Sync == "" {
		n.Sync, n.SyncInterval = defaultSync, 0
	}
	if n.MaxMemory == 0 {
		n.MaxMemory = defaultMaxMemory
	}
	if n.MaxStore == 0 {
		n.MaxStore = defaultMaxStore
	}
	if n.Cluster != nil && n.Cluster.Name == "" {
		n.Cluster.Name = defaultClusterName
	}
	if n.Replicas == 0 {
		n.Replicas = 1
		if n.Cluster != nil {
			n.Replicas = defaultClusterReplicas
		}
	}
	if c.Metrics.Listen == "" && !c.Metrics.Disabled {
		c.Metrics.Listen = defaultMetricsListen
	}
	for i := range c.Functions {
		f := &c.Functions[i]
		if f.Timeout == 0 {
			f.Timeout = defaultTimeout
		}
		if f.IdleTimeout == 0 {
			f.IdleTimeout = defaultIdleTimeout
		}
		if f.Memory == 0 {
			f.Memory = defaultMemory
		}
		if f.MaxResultSize == 0 {
			f.MaxResultSize = 64 << 10
		}
		if f.MaxLogSize == 0 {
			f.MaxLogSize = 64 << 10
		}
	}
	for i := range c.Queues {
		q := &c.Queues[i]
		setPolicyDefaults(&q.Concurrency, &q.Retry)
		if q.DeadLetter == "" {
			q.DeadLetter = defaultDeadLetter(q.Name)
		}
		if q.MaxEventSize == 0 {
			q.MaxEventSize = defaultMaxEventSize
		}
	}
	for i := range c.Topics {
		t := &c.Topics[i]
		if t.Retention == 0 {
			t.Retention = defaultRetention
		}
		if t.MaxEventSize == 0 {
			t.MaxEventSize = defaultMaxEventSize
		}
		for j := range t.Subscribers {
			s := &t.Subscribers[j]
			setPolicyDefaults(&s.Concurrency, &s.Retry)
			if s.DeadLetter == "" {
				s.DeadLetter = defaultDeadLetter(t.Name + "/" + s.Name)
			}
			if s.StartFrom == "" {
				s.StartFrom = defaultStartFrom
			}
		}
	}
}

func setPolicyDefaults(concurrency *int, r *Retry) {
	if *concurrency == 0 {
		*concurrency = defaultConcurrency
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = defaultMaxAttempts
	}
	if r.Initial == 0 {
		r.Initial = defaultInitialBackoff
	}
	if r.Max == 0 {
		r.Max = defaultMaxBackoff
	}
}
