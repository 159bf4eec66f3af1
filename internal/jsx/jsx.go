// Package jsx makes JetStream streams, buckets and consumers exist with the
// settings sluice wants, safely when several nodes of a cluster do so at
// the same moment.
//
// nats.go's CreateOrUpdate* first try an update, then a create. Sent by
// three nodes at once for a replicated stream that does not exist yet, those
// requests all went unanswered until they timed out (nats-server 2.15.2,
// measured: 3 × 40 s timeouts, where three concurrent plain creates took
// 15–70 ms). A create is answered, and succeeds when the stream exists with
// the same settings, so these functions create first and update only when
// the settings differ.
package jsx

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream creates the stream, or updates it when it exists with other
// settings.
func Stream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.UpdateStream(ctx, cfg)
	}
	return s, err
}

// KeyValue creates the bucket, or updates it when it exists with other
// settings.
func KeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.UpdateKeyValue(ctx, cfg)
	}
	return kv, err
}

// ObjectStore creates the store, or updates it when it exists with other
// settings.
func ObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	obj, err := js.CreateObjectStore(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.UpdateObjectStore(ctx, cfg)
	}
	return obj, err
}

// Consumer creates the durable consumer, or updates it when it exists
// with other settings.
func Consumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.CreateConsumer(ctx, stream, cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return js.UpdateConsumer(ctx, stream, cfg)
	}
	return c, err
}
