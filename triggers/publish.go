package triggers

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes results, dead letters and guests' events: through
// JetStream, waiting for the stream's acknowledgement, when a stream captures
// the subject; as a plain NATS message otherwise. A JetStream publish to an
// uncaptured subject that has a core subscriber would wait for an answer
// that never comes, hence the lookup (cached for a few seconds).
type Publisher struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu       sync.Mutex
	captured map[string]lookup
}

type lookup struct {
	stream bool
	at     time.Time
}

const lookupTTL = 5 * time.Second

// NewPublisher returns a Publisher on nc.
func NewPublisher(nc *nats.Conn, js jetstream.JetStream) *Publisher {
	return &Publisher{nc: nc, js: js, captured: map[string]lookup{}}
}

// Publish sends data to subject; see PublishMsg.
func (p *Publisher) Publish(ctx context.Context, subject string, data []byte) error {
	return p.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, "")
}

// PublishMsg sends m, with msgID (if not empty) as its de-duplication id,
// and returns once it is stored (or sent, for an uncaptured subject).
func (p *Publisher) PublishMsg(ctx context.Context, m *nats.Msg, msgID string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	captured, err := p.isCaptured(ctx, m.Subject)
	if err != nil {
		return err
	}
	if !captured {
		return p.nc.PublishMsg(m)
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	_, err = p.js.PublishMsg(ctx, m, opts...)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		// The stream went away since the lookup.
		p.forget(m.Subject)
		return p.nc.PublishMsg(m)
	}
	return err
}

func (p *Publisher) isCaptured(ctx context.Context, subject string) (bool, error) {
	p.mu.Lock()
	l, ok := p.captured[subject]
	p.mu.Unlock()
	if ok && time.Since(l.at) < lookupTTL {
		return l.stream, nil
	}
	_, err := p.js.StreamNameBySubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		l = lookup{stream: false, at: time.Now()}
	case err != nil:
		return false, err
	default:
		l = lookup{stream: true, at: time.Now()}
	}
	p.mu.Lock()
	if len(p.captured) > 10_000 {
		clear(p.captured)
	}
	p.captured[subject] = l
	p.mu.Unlock()
	return l.stream, nil
}

func (p *Publisher) forget(subject string) {
	p.mu.Lock()
	delete(p.captured, subject)
	p.mu.Unlock()
}
