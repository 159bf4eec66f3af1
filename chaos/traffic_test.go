package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/sluice-run/sluice/triggers"
)

// failEvery makes one event in failEvery fail on every attempt, so that
// it is dead-lettered after the binding's max_attempts.
const failEvery = 10

// eventID is the id of the i-th event; shouldFail says whether it asks
// the function to fail.
func eventID(i int) string  { return fmt.Sprintf("e-%06d", i) }
func shouldFail(i int) bool { return i%failEvery == failEvery-1 }

// publisher is a producer outside the runtime: it publishes events with
// message ids and, until it has each one's PubAck, publishes it again
// (the id makes a resend a duplicate the stream drops).
type publisher struct {
	js      jetstream.JetStream
	subject string
	total   int
	limiter *rate.Limiter

	next      atomic.Int64
	published atomic.Int64 // events sent at least once
	acked     atomic.Int64 // events with a PubAck
	resends   atomic.Int64 // publishes that failed and were sent again

	mu     sync.Mutex
	ackIDs map[string]bool // the acknowledged events and whether each asked to fail

	cancel context.CancelFunc
	done   chan struct{}
}

// publish starts workers that publish total events to subject at perSec
// overall; stop ends them.
func publish(js jetstream.JetStream, subject string, total, perSec, workers int) *publisher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &publisher{
		js: js, subject: subject, total: total, limiter: rate.NewLimiter(rate.Limit(perSec), 1),
		ackIDs: map[string]bool{}, cancel: cancel, done: make(chan struct{}),
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { p.work(ctx) })
	}
	go func() { wg.Wait(); close(p.done) }()
	return p
}

func (p *publisher) work(ctx context.Context) {
	for {
		i := int(p.next.Add(1) - 1)
		if i >= p.total || p.limiter.Wait(ctx) != nil {
			return
		}
		id, fail := eventID(i), shouldFail(i)
		data, _ := json.Marshal(map[string]any{"id": id, "fail": fail})
		p.published.Add(1)
		for {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := p.js.PublishMsg(pctx, &nats.Msg{Subject: p.subject, Data: data}, jetstream.WithMsgID(id))
			cancel()
			if err == nil {
				p.mu.Lock()
				p.ackIDs[id] = fail
				p.mu.Unlock()
				p.acked.Add(1)
				break
			}
			p.resends.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond): // back off, then send again
			}
		}
	}
}

// wait waits until every event is acknowledged, or fails the test after
// timeout.
func (p *publisher) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.stop()
		t.Fatalf("publisher: %d of %d events acknowledged after %s", p.acked.Load(), p.total, timeout)
	}
}

func (p *publisher) stop() {
	p.cancel()
	<-p.done
}

// acknowledged returns the acknowledged events: id -> asked to fail.
func (p *publisher) acknowledged() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]bool, len(p.ackIDs))
	for id, f := range p.ackIDs {
		out[id] = f
	}
	return out
}

// effectsStream holds the effects the functions publish: stored by
// JetStream, so an effect is counted exactly when the function's publish
// succeeded, whichever node died meanwhile.
const effectsStream = "EFFECTS"

// effect is one effect: which event, and when the stream stored it.
type effect struct {
	id string
	at time.Time
}

// readStream reads every message of a stream with an ordered consumer.
func readStream(ctx context.Context, js jetstream.JetStream, name string, each func(jetstream.Msg) error) error {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	last := s.CachedInfo().State.LastSeq
	if s.CachedInfo().State.Msgs == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := each(m); err != nil {
				return err
			}
			if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("stream %s: no message after a wait, before sequence %d", name, last)
		}
	}
}

// readEffects reads every effect stored so far.
func readEffects(ctx context.Context, js jetstream.JetStream) ([]effect, error) {
	var out []effect
	err := readStream(ctx, js, effectsStream, func(m jetstream.Msg) error {
		var v struct{ ID string }
		if err := json.Unmarshal(m.Data(), &v); err != nil || v.ID == "" {
			return fmt.Errorf("effect without an id: %q", m.Data())
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		out = append(out, effect{id: v.ID, at: md.Timestamp})
		return nil
	})
	return out, err
}

// readDeadLetters returns the event ids in the binding's dead-letter
// stream, with how many dead letters each has.
func readDeadLetters(ctx context.Context, js jetstream.JetStream, binding string) (map[string]int, error) {
	out := map[string]int{}
	err := readStream(ctx, js, triggers.DeadLetterStreamName(binding), func(m jetstream.Msg) error {
		out[m.Headers().Get(triggers.HdrEventID)]++
		return nil
	})
	return out, err
}

// readStatuses returns every status in the status bucket.
func readStatuses(ctx context.Context, js jetstream.JetStream) ([]triggers.Status, error) {
	kv, err := js.KeyValue(ctx, triggers.StatusBucket)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []triggers.Status
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e := <-w.Updates():
			if e == nil { // every current value was delivered
				return out, nil
			}
			var st triggers.Status
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return nil, fmt.Errorf("status %s: %w", e.Key(), err)
			}
			out = append(out, st)
		}
	}
}
