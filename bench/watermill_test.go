package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	wmjetstream "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/triggers"
)

// startWatermill runs the peer a Go team would otherwise pick: a Watermill
// router whose handlers are native no-ops, fed by watermill-nats's
// JetStream subscriber. The subscriber is bound to sluice's own durable pull
// consumer, so the stream, consumer, connection and payloads are those of
// the other variants; what differs is the library's path per message.
//
// Watermill's JetStream subscriber hands one message at a time to the
// router and holds its Consume callback until the handler has acked, so
// one subscription has one event in flight. Concurrency c is therefore c
// handlers on the router, each with its own subscription to the consumer.
// Each subscription pulls with sluice's prefetch for the binding: with
// Consume's default of 500 the comparison would measure a deeper buffer,
// not the library. The logger is a no-op because the subscriber's default
// writes a line per message and the other variants discard their logs.
// The rest is Watermill's default: a double ack that waits for the
// server's reply, or with ackAsync the subscriber's AckAsync, a plain ack.
func (e *env) startWatermill(t testing.TB, ackAsync bool, onEntry func([]byte)) (stop func()) {
	t.Helper()
	logger := watermill.NopLogger{}
	stream, consumer := triggers.StreamName(e.bc), triggers.ConsumerName(e.bc)
	sub, err := wmjetstream.NewSubscriber(wmjetstream.SubscriberConfig{
		Conn:           e.conNC,
		Logger:         logger,
		AckAsync:       ackAsync,
		ConsumeOptions: []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(triggers.Prefetch(e.bc))},
		// nil closer: the consumer is sluice's, not the subscriber's to delete.
		ResourceInitializer: func(ctx context.Context, js jetstream.JetStream, _ string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
			c, err := js.Consumer(ctx, stream, consumer)
			if err != nil {
				return nil, nil, fmt.Errorf("watermill: consumer %s/%s: %w", stream, consumer, err)
			}
			return c, nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	for i := range e.bc.Concurrency {
		router.AddConsumerHandler(fmt.Sprintf("noop-%d", i), subject, sub, func(msg *message.Message) error {
			onEntry(msg.Payload)
			return nil
		})
	}
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	select {
	case <-router.Running():
	case err := <-done:
		t.Fatalf("watermill router: %v", err)
	}
	return func() {
		if err := router.Close(); err != nil {
			t.Errorf("watermill router close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("watermill router: %v", err)
		}
		if err := sub.Close(); err != nil {
			t.Errorf("watermill subscriber close: %v", err)
		}
	}
}
