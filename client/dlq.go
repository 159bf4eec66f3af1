package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
)

// DeadLetter is one message of a binding's dead-letter stream, decoded
// from the headers the runtime wrote on it.
type DeadLetter struct {
	Binding      string          `json:"binding"`
	Seq          uint64          `json:"seq"`
	EventID      string          `json:"id"`
	Subject      string          `json:"subject"`
	Function     string          `json:"function"`
	Version      string          `json:"version,omitempty"`
	Attempts     int             `json:"attempts"`
	ErrorKind    string          `json:"error_kind"`
	Error        string          `json:"error"`
	FirstFailure time.Time       `json:"first_failure"`
	LastFailure  time.Time       `json:"last_failure"`
	History      []AttemptRecord `json:"history,omitempty"`
	Headers      nats.Header     `json:"headers,omitempty"`
	// Payload is the event's data as text, or base64 when Encoding says so.
	Payload  string `json:"payload,omitempty"`
	Encoding string `json:"payload_encoding,omitempty"`
	// Data is the event's data; empty when only headers were read.
	Data []byte `json:"-"`
}

// TextOrBase64 is b as text, or as base64 with "base64" when it is not
// UTF-8: how results and payloads are shown.
func TextOrBase64(b []byte) (text, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

func decodeDeadLetter(binding string, seq uint64, h nats.Header, data []byte) DeadLetter {
	d := DeadLetter{
		Binding: binding, Seq: seq, EventID: h.Get(HdrEventID), Subject: h.Get(HdrSubject),
		Function: h.Get(HdrFunction), Version: h.Get(HdrVersion),
		ErrorKind: h.Get(HdrErrorKind), Error: h.Get(HdrError), Headers: h, Data: data,
	}
	d.Attempts, _ = strconv.Atoi(h.Get(HdrAttempts))
	d.FirstFailure, _ = time.Parse(time.RFC3339Nano, h.Get(HdrFirstFailure))
	d.LastFailure, _ = time.Parse(time.RFC3339Nano, h.Get(HdrLastFailure))
	_ = json.Unmarshal([]byte(h.Get(HdrHistory)), &d.History)
	d.Payload, d.Encoding = TextOrBase64(data)
	return d
}

// DeadLetterBindings lists the bindings that have a dead-letter stream.
func (c *Client) DeadLetterBindings(ctx context.Context) ([]string, error) {
	var out []string
	names := c.js.StreamNames(ctx)
	for name := range names.Name() {
		if b, ok := deadLetterBinding(name); ok {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out, names.Err()
}

// deadLetterStream opens a binding's dead-letter stream.
func (c *Client) deadLetterStream(ctx context.Context, binding string) (jetstream.Stream, error) {
	s, err := c.js.Stream(ctx, DeadLetterStreamName(binding))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("binding %q: %w", binding, ErrNoDeadLetters)
	}
	return s, err
}

// scan reads all of a binding's dead letters, headers only, oldest first.
func (c *Client) scan(ctx context.Context, s jetstream.Stream, binding string, each func(DeadLetter)) error {
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true})
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
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			each(decodeDeadLetter(binding, md.Sequence.Stream, m.Headers(), nil))
			if md.NumPending == 0 {
				return nil
			}
		}
		if n == 0 {
			return batch.Error()
		}
	}
}

// DeadLetters returns the dead letters of the bindings named, or of every
// binding that has any, oldest first per binding, without their payloads.
func (c *Client) DeadLetters(ctx context.Context, bindings ...string) ([]DeadLetter, error) {
	if len(bindings) == 0 {
		var err error
		if bindings, err = c.DeadLetterBindings(ctx); err != nil {
			return nil, err
		}
	}
	all := []DeadLetter{}
	for _, b := range bindings {
		s, err := c.deadLetterStream(ctx, b)
		if err != nil {
			return nil, err
		}
		if err := c.scan(ctx, s, b, func(d DeadLetter) { all = append(all, d) }); err != nil {
			return nil, fmt.Errorf("dead letters of %s: %w", b, err)
		}
	}
	return all, nil
}

// DeadLetterOf returns the dead letters of event id, with their payloads
// (one per binding that dead-lettered it). It reads no other dead letter
// and needs no status: each is stored on a subject naming the event
// (DeadLetterSubject), so one get by subject per dead-letter stream finds
// it. Dead letters stored before that scheme are listed by DeadLetters,
// not found here.
func (c *Client) DeadLetterOf(ctx context.Context, id string) ([]DeadLetter, error) {
	bindings, err := c.DeadLetterBindings(ctx)
	if err != nil {
		return nil, err
	}
	var found []DeadLetter
	for _, b := range bindings {
		s, err := c.deadLetterStream(ctx, b)
		if errors.Is(err, ErrNoDeadLetters) {
			continue // removed since listed
		}
		if err != nil {
			return nil, err
		}
		dls, err := c.deadLettersIn(ctx, s, b, id)
		if err != nil {
			return nil, err
		}
		found = append(found, dls...)
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("dead letter of %s: %w", id, ErrNotFound)
	}
	return found, nil
}

// deadLettersIn reads the dead letters of event id in a binding's stream,
// oldest first: the next message on the event's subject, from the
// sequence after the last one found, until there is none.
func (c *Client) deadLettersIn(ctx context.Context, s jetstream.Stream, binding, id string) ([]DeadLetter, error) {
	var found []DeadLetter
	for _, capture := range s.CachedInfo().Config.Subjects {
		dl, ok := strings.CutSuffix(capture, ".*")
		if !ok {
			continue
		}
		subject := DeadLetterSubject(dl, id)
		for seq := uint64(1); ; {
			m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("dead letter of %s on %s: %w", id, binding, err)
			}
			// A hashed id (StatusPrefix) names the event; the header says
			// which.
			if d := decodeDeadLetter(binding, m.Sequence, m.Header, m.Data); d.EventID == id {
				found = append(found, d)
			}
			seq = m.Sequence + 1
		}
	}
	return found, nil
}

// deadLetterAt reads one dead letter, payload included.
func (c *Client) deadLetterAt(ctx context.Context, s jetstream.Stream, binding string, seq uint64) (DeadLetter, error) {
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d of %s: %w", seq, binding, err)
	}
	return decodeDeadLetter(binding, seq, m.Header, m.Data), nil
}

// Selection chooses dead letters of a binding to replay or purge.
type Selection struct {
	// IDs are the events chosen; All chooses every one instead.
	IDs []string
	All bool
	// Since, when positive, keeps those that last failed within it.
	Since time.Duration
	// ErrorKind, when set, keeps those that failed with it.
	ErrorKind string
}

// Select returns the dead letters of binding that sel chooses (with their
// payloads when sel names events).
func (c *Client) Select(ctx context.Context, binding string, sel Selection) ([]DeadLetter, error) {
	var dls []DeadLetter
	if sel.All {
		var err error
		if dls, err = c.DeadLetters(ctx, binding); err != nil {
			return nil, err
		}
	} else {
		// The events named are read by subject, not found by a scan.
		s, err := c.deadLetterStream(ctx, binding)
		if err != nil {
			return nil, err
		}
		for _, id := range slices.Compact(slices.Sorted(slices.Values(sel.IDs))) {
			found, err := c.deadLettersIn(ctx, s, binding, id)
			if err != nil {
				return nil, err
			}
			dls = append(dls, found...)
		}
	}
	var out []DeadLetter
	cutoff := time.Now().Add(-sel.Since)
	for _, d := range dls {
		if !sel.All && !slices.Contains(sel.IDs, d.EventID) ||
			sel.Since > 0 && d.LastFailure.Before(cutoff) ||
			sel.ErrorKind != "" && d.ErrorKind != sel.ErrorKind {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// Replay puts one dead letter (from Select or DeadLetters) back on its
// binding's replay subject, then removes it: a failure in between leaves a
// duplicate, never a loss, and the replay's message id makes a second try
// a no-op. Only that binding sees the event again.
func (c *Client) Replay(ctx context.Context, d DeadLetter) error {
	s, err := c.deadLetterStream(ctx, d.Binding)
	if err != nil {
		return err
	}
	full, err := c.deadLetterAt(ctx, s, d.Binding, d.Seq)
	if err != nil {
		return err
	}
	h := nats.Header{}
	for k, v := range full.Headers {
		// Nats- headers steer JetStream; the history stays with the status.
		if !strings.EqualFold(k, HdrHistory) && !(len(k) >= 5 && strings.EqualFold(k[:5], "Nats-")) {
			h[k] = v
		}
	}
	m := &nats.Msg{Subject: ReplaySubject(d.Binding), Data: full.Data, Header: h}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.js.PublishMsg(pctx, m, jetstream.WithMsgID(fmt.Sprintf("replay:%s:%d", d.Binding, d.Seq))); err != nil {
		return fmt.Errorf("replay %s (dead letter %d): %w", d.EventID, d.Seq, err)
	}
	if err := s.DeleteMsg(pctx, d.Seq); err != nil {
		return fmt.Errorf("replay %s: remove dead letter %d: %w", d.EventID, d.Seq, err)
	}
	return nil
}

// ReplayReport is what a replay of a binding's dead letters did.
type ReplayReport struct {
	Binding  string   `json:"binding"`
	Selected int      `json:"selected"`
	Replayed int      `json:"replayed"`
	DryRun   bool     `json:"dry_run,omitempty"`
	Events   []string `json:"events"`
}

// ReplayOptions tune ReplaySelected.
type ReplayOptions struct {
	// PerSecond, when positive, bounds the pace.
	PerSecond float64
	// DryRun selects and replays nothing.
	DryRun bool
	// Progress, when set, is called after each replay.
	Progress func(replayed, selected int)
}

// ReplaySelected replays (Replay) the dead letters of binding that sel
// chooses, in order, and stops at the first failure, whose error says
// how many were replayed before it.
func (c *Client) ReplaySelected(ctx context.Context, binding string, sel Selection, opts ReplayOptions) (ReplayReport, error) {
	chosen, err := c.Select(ctx, binding, sel)
	if err != nil {
		return ReplayReport{}, err
	}
	rep := ReplayReport{Binding: binding, Selected: len(chosen), DryRun: opts.DryRun, Events: eventIDs(chosen)}
	if opts.DryRun {
		return rep, nil
	}
	var limiter *rate.Limiter
	if opts.PerSecond > 0 {
		limiter = rate.NewLimiter(rate.Limit(opts.PerSecond), 1)
	}
	for _, d := range chosen {
		if limiter != nil {
			if err := limiter.Wait(ctx); err != nil {
				return rep, fmt.Errorf("%w; %d replayed before it", err, rep.Replayed)
			}
		}
		if err := c.Replay(ctx, d); err != nil {
			return rep, fmt.Errorf("%w; %d replayed before it", err, rep.Replayed)
		}
		if rep.Replayed++; opts.Progress != nil {
			opts.Progress(rep.Replayed, rep.Selected)
		}
	}
	return rep, nil
}

// PurgeReport is what a purge of a binding's dead letters did.
type PurgeReport struct {
	Binding string `json:"binding"`
	// Purged are the event ids of the dead letters deleted.
	Purged []string `json:"purged"`
}

// PurgeSelected deletes the dead letters of binding that sel chooses, once
// confirm (when not nil) accepts their number.
func (c *Client) PurgeSelected(ctx context.Context, binding string, sel Selection, confirm func(n int) error) (PurgeReport, error) {
	chosen, err := c.Select(ctx, binding, sel)
	if err != nil {
		return PurgeReport{}, err
	}
	if confirm != nil {
		if err := confirm(len(chosen)); err != nil {
			return PurgeReport{}, err
		}
	}
	if err := c.Purge(ctx, chosen); err != nil {
		return PurgeReport{}, err
	}
	return PurgeReport{Binding: binding, Purged: eventIDs(chosen)}, nil
}

func eventIDs(dls []DeadLetter) []string {
	ids := []string{}
	for _, d := range dls {
		ids = append(ids, d.EventID)
	}
	return ids
}

// Purge deletes dead letters for good.
func (c *Client) Purge(ctx context.Context, dls []DeadLetter) error {
	for _, d := range dls {
		s, err := c.deadLetterStream(ctx, d.Binding)
		if err != nil {
			return err
		}
		if err := s.DeleteMsg(ctx, d.Seq); err != nil {
			return fmt.Errorf("purge %s: %w", d.EventID, err)
		}
	}
	return nil
}
