package triggers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
)

// Publisher publishes results, failure records, dead letters and guests'
// events.
//
// A subject that a stream captures gets a JetStream publish, and the call
// returns once the stream stored the message; while the stream has no
// leader (an election, a node down) or the broker does not answer, it
// retries with backoff until the caller's deadline (DefaultPublishTimeout
// when the context has none) and then fails with ErrNotStored. It never
// falls back to a plain NATS publish for such a subject.
//
// A subject that no stream captures gets a plain NATS publish, by design:
// it reaches whoever subscribes at that moment and is not durable. Whether
// a stream captures a subject is asked of JetStream (and cached for a few
// seconds), never inferred from a publish that got no answer.
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

// DefaultPublishTimeout bounds a publish whose context has no deadline.
const DefaultPublishTimeout = 10 * time.Second

var (
	// ErrNotStored is returned for a publish that a stream should have
	// stored and did not acknowledge in time.
	ErrNotStored = errors.New("not stored")
	// ErrNoStream is returned by Store for a subject no stream captures.
	ErrNoStream = errors.New("no stream captures the subject")
)

// NewPublisher returns a Publisher on nc.
func NewPublisher(nc *nats.Conn, js jetstream.JetStream) *Publisher {
	return &Publisher{nc: nc, js: js, captured: map[string]lookup{}}
}

// Publish sends data to subject; see PublishMsg.
func (p *Publisher) Publish(ctx context.Context, subject string, data []byte) error {
	return p.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, "")
}

// PublishMsg sends m, with msgID (if not empty) as its de-duplication id:
// stored by the stream that captures its subject, or as a plain NATS
// message when none does.
func (p *Publisher) PublishMsg(ctx context.Context, m *nats.Msg, msgID string) error {
	return p.publish(ctx, m, msgID, false)
}

// Store sends m like PublishMsg, but fails with ErrNoStream when no stream
// captures its subject: for what must be kept, such as dead letters.
func (p *Publisher) Store(ctx context.Context, m *nats.Msg, msgID string) error {
	return p.publish(ctx, m, msgID, true)
}

func (p *Publisher) publish(ctx context.Context, m *nats.Msg, msgID string, mustStore bool) error {
	// Whoever chose the subject checked it; this is the last line before
	// the connection, which a subject too long would close for good.
	if err := config.CheckSendSubject(m.Subject); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultPublishTimeout)
		defer cancel()
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	wait := 25 * time.Millisecond
	for {
		captured, err := p.isCaptured(ctx, m.Subject)
		switch {
		case err != nil:
			// The lookup itself went unanswered: JetStream is electing
			// or unreachable. Try again.
		case !captured && mustStore:
			return fmt.Errorf("%s: %w", m.Subject, ErrNoStream)
		case !captured:
			return p.nc.PublishMsg(m)
		default:
			_, err = p.js.PublishMsg(ctx, m, opts...)
			if err == nil {
				return nil
			}
			if !transient(err) {
				return err
			}
			// No leader, or the stream went away: ask again rather
			// than trust the cached answer.
			p.forget(m.Subject)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w: %w", m.Subject, ErrNotStored, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// transient reports whether a failed JetStream publish may succeed when
// tried again: nothing answered (no stream leader, a node down), or the
// cluster said it is unavailable for now.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return true
	case errors.As(err, &apiErr):
		// "JetStream system temporarily unavailable" and "expected last
		// sequence per subject temporarily unavailable"; other errors,
		// such as a full stream, are the stream's answer.
		return apiErr.ErrorCode == 10008 || apiErr.ErrorCode == 10163
	}
	return false
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
