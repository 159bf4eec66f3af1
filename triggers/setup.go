package triggers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/jsx"
)

// Layout defaults.
const (
	// DeadLetterMaxAge is how long dead letters are kept for inspection.
	DeadLetterMaxAge = 14 * 24 * time.Hour
	// StatusTTL is how long an event's status stays readable; a binding's
	// dedupe window is at most this (config.MaxDedupe).
	StatusTTL = 24 * time.Hour
	// StatusMaxBytes bounds the status bucket; the oldest statuses go
	// first. At about 650 bytes a status it keeps some 50,000, which also
	// bounds how far back dedupe remembers. The bucket is on disk, but
	// the server indexes every key in memory, about 1 KiB of RSS per
	// status (measured with a 200,000-event burst: node RSS 153 MiB with
	// 16 MiB of statuses, 187 MiB with 32, 221 MiB with 64), so this
	// bounds what statuses add to a node's memory.
	StatusMaxBytes = 32 << 20
	// dedupWindow of the dead-letter streams: longer than any redelivery
	// after a crash, so a redone dead letter is recognised as a duplicate.
	deadLetterDedupWindow = 30 * time.Minute
	maxAckPending         = 10_000
)

// Prefetch is how many messages a node holds for a binding beyond those
// running: enough to hide the pull round trip, small enough that a message
// waits at most a few invocations before it starts.
func Prefetch(b config.Binding) int { return max(2*b.Concurrency, 8) }

// AckWait is how long JetStream waits for a settle before redelivering: a
// message can wait behind Prefetch/Concurrency invocations, then run for
// the whole timeout.
func AckWait(b config.Binding, timeout time.Duration) time.Duration {
	waves := (Prefetch(b) + b.Concurrency - 1) / b.Concurrency
	return time.Duration(waves+1)*timeout + 5*time.Second
}

// ensureParallel bounds the JetStream requests Ensure has in flight. In a
// cluster each replicated stream or consumer elects its own leader, which
// takes seconds; made one after another, a config's dozens of them would
// hold a start for minutes.
const ensureParallel = 8

// Ensure creates or updates the status bucket and every stream and durable
// consumer the config's bindings need. It never deletes anything.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg *config.Config) error {
	replicas := max(1, cfg.NATS.Replicas)
	// Before anything is created: nats-server 2.15.2 can fail to create a
	// file stream ("could not create storage directory") while the
	// account's only other stream is being deleted.
	statusCfg, err := retireStatusBucket(ctx, js, replicas)
	if err != nil {
		return fmt.Errorf("status bucket: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(ensureParallel)
	g.Go(func() error {
		if _, err := jsx.Stream(gctx, js, statusCfg); err != nil {
			return fmt.Errorf("status bucket: %w", err)
		}
		return nil
	})
	for _, q := range cfg.Queues {
		g.Go(func() error {
			if _, err := jsx.Stream(gctx, js, jetstream.StreamConfig{
				Name: "SLUICE_Q_" + q.Name, Description: "sluice queue " + q.Name,
				Subjects: []string{q.Subject}, Retention: jetstream.WorkQueuePolicy,
				Discard: jetstream.DiscardNew, Storage: jetstream.FileStorage,
				MaxMsgSize: int32(q.MaxEventSize), Duplicates: 2 * time.Minute, Replicas: replicas,
			}); err != nil {
				return fmt.Errorf("queue %s: stream: %w", q.Name, err)
			}
			return nil
		})
	}
	for _, t := range cfg.Topics {
		g.Go(func() error {
			if _, err := jsx.Stream(gctx, js, jetstream.StreamConfig{
				Name: "SLUICE_T_" + t.Name, Description: "sluice topic " + t.Name,
				Subjects: []string{t.Subject}, Retention: jetstream.LimitsPolicy,
				MaxAge: t.Retention, Discard: jetstream.DiscardOld, Storage: jetstream.FileStorage,
				MaxMsgSize: int32(t.MaxEventSize), Duplicates: 2 * time.Minute, Replicas: replicas,
			}); err != nil {
				return fmt.Errorf("topic %s: stream: %w", t.Name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(ensureParallel)
	for _, b := range cfg.Bindings() {
		fn, _ := cfg.Function(b.Function)
		g.Go(func() error {
			if err := ensureBinding(gctx, js, b, fn, replicas); err != nil {
				return fmt.Errorf("binding %s: %w", b.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// retireStatusBucket returns the config of the status bucket's stream,
// after deleting a bucket whose settings cannot change in place.
//
// Statuses are kept on disk, bounded, oldest dropped first, so that
// statuses of settled events (and dedupe) survive a restart of the server.
// The bucket's stream is made by sluice rather than by CreateKeyValue, to
// bound it by bytes with the oldest dropped. It is not flushed
// asynchronously (PersistMode async): that mode buffers writes in the
// server's memory, and a kill -9 between a dead letter's status and its
// Term left the event "retrying" for good (found by the chaos suite); the
// fsync per status under sync = "always" cost no measurable throughput in
// BenchmarkQueue/sync=always.
func retireStatusBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.StreamConfig, error) {
	cfg := statusStreamConfig(replicas)
	old, err := js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return cfg, nil
	case err != nil:
		return cfg, err
	}
	oc := old.CachedInfo().Config
	// Made by an older sluice (in memory, or flushed asynchronously):
	// neither setting changes in place.
	if oc.Storage != cfg.Storage || oc.PersistMode != cfg.PersistMode {
		return cfg, js.DeleteStream(ctx, cfg.Name)
	}
	return cfg, nil
}

// statusStreamConfig is the stream of a KV bucket (as nats.go lays one
// out) holding one status per key, for StatusTTL, at most StatusMaxBytes,
// the oldest dropped first.
func statusStreamConfig(replicas int) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name: "KV_" + StatusBucket, Description: "sluice: status of every event per binding",
		Subjects: []string{"$KV." + StatusBucket + ".>"}, Storage: jetstream.FileStorage, Replicas: replicas,
		MaxMsgsPerSubject: 1, MaxAge: StatusTTL, MaxBytes: StatusMaxBytes, MaxMsgs: -1, MaxMsgSize: -1,
		MaxConsumers: -1, Discard: jetstream.DiscardOld, Duplicates: 2 * time.Minute,
		AllowRollup: true, DenyDelete: true, AllowDirect: true,
	}
	return cfg
}

func ensureBinding(ctx context.Context, js jetstream.JetStream, b config.Binding, fn config.Function, replicas int) error {
	if _, err := jsx.Stream(ctx, js, jetstream.StreamConfig{
		Name: ReplayStreamName(b.Name), Description: "sluice replays of " + b.Name,
		Subjects: []string{ReplaySubject(b.Name)}, Retention: jetstream.WorkQueuePolicy,
		Discard: jetstream.DiscardNew, Storage: jetstream.FileStorage,
		MaxMsgSize: int32(b.MaxEventSize + 64<<10), Duplicates: 2 * time.Minute, Replicas: replicas,
	}); err != nil {
		return fmt.Errorf("replay stream: %w", err)
	}
	if _, err := jsx.Stream(ctx, js, jetstream.StreamConfig{
		Name: DeadLetterStreamName(b.Name), Description: "sluice dead letters of " + b.Name,
		Subjects: []string{DeadLetterSubjects(b.DeadLetter)}, Retention: jetstream.LimitsPolicy,
		MaxAge: DeadLetterMaxAge, Storage: jetstream.FileStorage,
		Duplicates: deadLetterDedupWindow, Replicas: replicas,
	}); err != nil {
		return fmt.Errorf("dead-letter stream: %w", err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       ConsumerName(b),
		Description:   "sluice binding " + b.Name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       AckWait(b, fn.Timeout),
		MaxDeliver:    -1, // sluice counts attempts and dead-letters itself
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Metadata: map[string]string{
			MetaBinding:     b.Name,
			MetaFunction:    b.Function,
			MetaMaxAttempts: strconv.Itoa(b.Retry.MaxAttempts),
			MetaDeadLetter:  b.DeadLetter,
		},
	}
	if perSec := b.Rate.PerSecond(); perSec > 0 {
		cc.Metadata[MetaRate] = strconv.FormatFloat(perSec, 'g', -1, 64)
	}
	replay := cc
	replay.Durable, replay.Description = ReplayConsumerName(b.Name), "sluice replays of "+b.Name
	if _, err := jsx.Consumer(ctx, js, ReplayStreamName(b.Name), replay); err != nil {
		return fmt.Errorf("consumer %s: %w", replay.Durable, err)
	}
	if b.Kind == config.KindTopic && b.StartFrom != "all" {
		cc.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	stream := StreamName(b)
	existing, err := js.Consumer(ctx, stream, cc.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		_, err = js.CreateConsumer(ctx, stream, cc)
	case err == nil:
		// Where a consumer starts is fixed at creation; keep it.
		prev := existing.CachedInfo().Config
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = prev.DeliverPolicy, prev.OptStartSeq, prev.OptStartTime
		_, err = js.UpdateConsumer(ctx, stream, cc)
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", cc.Durable, err)
	}
	return nil
}
