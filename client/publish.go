package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Event is what a producer publishes.
type Event struct {
	Subject string
	Data    []byte
	// ID is the event id (Nats-Msg-Id): it de-duplicates publishes within
	// the stream's duplicate window and keys the event's statuses. Empty
	// means a new unique id.
	ID     string
	Header nats.Header
}

// ParseHeaders reads headers written NAME:VALUE (natscli's -H), spaces
// around each trimmed.
func ParseHeaders(specs []string) (nats.Header, error) {
	h := nats.Header{}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("header %q: want NAME:VALUE", s)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h, nil
}

// Published is an event stored in its stream.
type Published struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	Stream  string `json:"stream"`
	Seq     uint64 `json:"seq"`
	// Duplicate: the id was already stored within the duplicate window, so
	// this publish stored nothing; the outcomes are the first one's.
	Duplicate bool `json:"duplicate,omitempty"`
	// Bindings are the bindings that received the event, one outcome each
	// (set by Publish with WithBindings, and by PublishWait).
	Bindings []string `json:"bindings,omitempty"`
}

// Publish stores ev in its stream and returns where. It does not wait for
// outcomes: see Wait and PublishWait.
func (c *Client) Publish(ctx context.Context, ev Event) (Published, error) {
	if ev.ID == "" {
		ev.ID = nuid.Next()
	}
	msg := &nats.Msg{Subject: ev.Subject, Data: ev.Data, Header: ev.Header}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID))
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return Published{}, fmt.Errorf("publish to %s: %w", ev.Subject, ErrNotBound)
	case err != nil:
		return Published{}, fmt.Errorf("publish to %s: %w", ev.Subject, err)
	}
	return Published{ID: ev.ID, Subject: ev.Subject, Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Expect fills p.Bindings: the bindings that received the event, each of
// which will record one outcome (from the status API, which knows every
// binding of the event's stream).
func (c *Client) Expect(ctx context.Context, p *Published) error {
	sts, err := c.Statuses(ctx, StatusRequest{ID: p.ID, Stream: p.Stream})
	if err != nil {
		return err
	}
	p.Bindings = p.Bindings[:0]
	for _, s := range sts {
		p.Bindings = append(p.Bindings, s.Binding)
	}
	slices.Sort(p.Bindings)
	return nil
}

// PublishWait publishes ev and waits until every binding that received it
// has a final outcome (succeeded or dead_lettered), or ctx ends. A
// duplicate publish (a retry after a lost acknowledgement) gets the first
// publish's outcomes. progress, when not nil, hears each change of state.
// On ctx's end it returns the outcomes so far with ctx's error.
func (c *Client) PublishWait(ctx context.Context, ev Event, progress func(Status)) (Published, []Status, error) {
	// Final outcomes come to an inbox of this connection, subscribed
	// before the publish so that none is missed, unless the producer
	// named a reply subject of its own.
	replies := make(chan *nats.Msg, 64)
	if ev.Header.Get(HdrReply) == "" {
		inbox := c.nc.NewInbox()
		sub, err := c.nc.ChanSubscribe(inbox, replies)
		if err != nil {
			return Published{}, nil, fmt.Errorf("subscribe to %s: %w", inbox, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		h := nats.Header{}
		for k, v := range ev.Header {
			h[k] = v
		}
		h.Set(HdrReply, inbox)
		ev.Header = h
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	p, err := c.Publish(pctx, ev)
	cancel()
	if err != nil {
		return p, nil, err
	}
	sts, err := c.wait(ctx, &p, replies, progress)
	return p, sts, err
}

// Wait waits for the final outcome of a published event at every binding
// that received it, polling the status API.
func (c *Client) Wait(ctx context.Context, p *Published, progress func(Status)) ([]Status, error) {
	return c.wait(ctx, p, nil, progress)
}

// statusPoll is how often a wait asks for the states before the final
// ones (running, retrying), which are not sent as replies.
const statusPoll = 250 * time.Millisecond

func (c *Client) wait(ctx context.Context, p *Published, replies <-chan *nats.Msg, progress func(Status)) ([]Status, error) {
	req := StatusRequest{ID: p.ID, Stream: p.Stream}
	first, err := c.Statuses(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(first) == 0 {
		return nil, fmt.Errorf("stream %s has no sluice bindings", p.Stream)
	}
	latest := map[string]Status{}
	p.Bindings = p.Bindings[:0]
	for _, s := range first {
		p.Bindings = append(p.Bindings, s.Binding)
		latest[s.Binding] = Status{ID: p.ID, Binding: s.Binding, Function: s.Function, State: StateQueued, MaxAttempts: s.MaxAttempts}
	}
	slices.Sort(p.Bindings)
	update := func(s Status) {
		prev, seen := latest[s.Binding]
		if !seen || s.ID != p.ID || prev.Final() {
			return // not one of this stream's bindings, or settled
		}
		// A retrying status without a next try is the last attempt's
		// failure, recorded just before its dead letter: not progress a
		// user should read as "will retry".
		lastFailure := s.State == StateRetrying && s.NextTryAt == nil
		if progress != nil && !lastFailure && (prev.State != s.State || prev.Attempts != s.Attempts) {
			progress(s)
		}
		latest[s.Binding] = s
	}
	collect := func() ([]Status, bool) {
		out := make([]Status, 0, len(p.Bindings))
		done := true
		for _, b := range p.Bindings {
			done = done && latest[b].Final()
			out = append(out, latest[b])
		}
		return out, done
	}
	for _, s := range first {
		update(s)
	}
	tick := time.NewTicker(statusPoll)
	defer tick.Stop()
	for {
		if out, done := collect(); done {
			return out, nil
		}
		select {
		case m := <-replies:
			var s Status
			if json.Unmarshal(m.Data, &s) == nil {
				update(s)
			}
		case <-tick.C:
			sts, err := c.Statuses(ctx, req)
			if err != nil && ctx.Err() == nil {
				return nil, err
			}
			for _, s := range sts {
				update(s)
			}
		case <-ctx.Done():
			out, _ := collect()
			return out, ctx.Err()
		}
	}
}

// Status returns an event's statuses at every binding that recorded one,
// sorted by binding; ErrNotFound when none did.
func (c *Client) Status(ctx context.Context, id string) ([]Status, error) {
	sts, err := c.Statuses(ctx, StatusRequest{ID: id})
	if err != nil {
		return nil, err
	}
	if len(sts) == 0 {
		return nil, fmt.Errorf("status of %s: %w", id, ErrNotFound)
	}
	slices.SortFunc(sts, func(a, b Status) int { return strings.Compare(a.Binding, b.Binding) })
	return sts, nil
}

// Statuses asks the status API for req, asking again binding by binding
// for the results a large answer left out.
func (c *Client) Statuses(ctx context.Context, req StatusRequest) ([]Status, error) {
	var rep StatusReply
	if err := c.call(ctx, StatusSubject, req, &rep, 10*time.Second); err != nil {
		return nil, fmt.Errorf("status of %s: %w", req.ID, err)
	}
	for _, b := range rep.Omitted {
		one := req
		one.Binding = b
		var full StatusReply
		if err := c.call(ctx, StatusSubject, one, &full, 10*time.Second); err != nil {
			return nil, fmt.Errorf("status of %s at %s: %w", req.ID, b, err)
		}
		for _, s := range full.Statuses {
			for i := range rep.Statuses {
				if rep.Statuses[i].Binding == s.Binding {
					rep.Statuses[i] = s
				}
			}
		}
	}
	return rep.Statuses, nil
}
