package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/client"
)

// Event states and the status of an event, spelled in package client
// (the producers' side of the protocol).
const (
	StateQueued       = client.StateQueued
	StateRunning      = client.StateRunning
	StateRetrying     = client.StateRetrying
	StateSucceeded    = client.StateSucceeded
	StateDeadLettered = client.StateDeadLettered
	// MaxHistory bounds the attempts kept with an event, so that a dead
	// letter's headers stay small.
	MaxHistory = client.MaxHistory
)

type (
	// Status is an event's state at one binding, as stored in StatusBucket.
	Status = client.Status
	// AttemptRecord is one attempt of the function.
	AttemptRecord = client.AttemptRecord
)

// StatusStore reads and writes statuses.
type StatusStore struct {
	kv jetstream.KeyValue
	// async sends AdvanceAsync's writes: its own context bounds the
	// writes outstanding, and its error handler settles their conflicts.
	async jetstream.JetStream
}

// NewStatusStore opens the status bucket.
func NewStatusStore(ctx context.Context, js jetstream.JetStream) (*StatusStore, error) {
	kv, err := js.KeyValue(ctx, StatusBucket)
	if err != nil {
		return nil, err
	}
	st := &StatusStore{kv: kv}
	st.async, err = jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(2*maxStatusPending),
		// An acknowledgement lost (to a slow-consumer drop, say) must not
		// hold its slot forever.
		jetstream.WithPublishAsyncTimeout(5*time.Second),
		jetstream.WithPublishAsyncErrHandler(st.asyncFailed))
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Get returns the status of event id at binding; ok is false when none is
// recorded yet.
func (st *StatusStore) Get(ctx context.Context, id, binding string) (Status, bool, error) {
	s, _, ok, err := st.get(ctx, StatusKey(id, binding))
	return s, ok, err
}

// get returns the status under key and its revision (0 when absent).
func (st *StatusStore) get(ctx context.Context, key string) (Status, uint64, bool, error) {
	e, err := st.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Status{}, 0, false, nil
	}
	if err != nil {
		return Status{}, 0, false, err
	}
	var s Status
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return Status{}, 0, false, fmt.Errorf("status %s: %w", key, err)
	}
	return s, e.Revision(), true, nil
}

// Revision is a status as stored, with its KV revision (0: none).
type Revision struct {
	Status Status
	Rev    uint64
}

// Advance stores s unless the stored status is ahead of it (see behind),
// by compare-and-set on the key's revision, reading again after a
// conflict. last is the stored status as the caller last saw it (the zero
// Revision: none, or unknown); a right guess saves a read. It returns the
// status stored: s, or the one ahead of it with stored false.
func (st *StatusStore) Advance(ctx context.Context, s Status, last Revision) (now Revision, stored bool, err error) {
	key := StatusKey(s.ID, s.Binding)
	b, err := json.Marshal(s)
	if err != nil {
		return last, false, err
	}
	for range maxStatusConflicts {
		if last.Rev != 0 && behind(s, last.Status) {
			return last, false, nil
		}
		var rev uint64
		if last.Rev == 0 {
			rev, err = st.kv.Create(ctx, key, b)
		} else {
			rev, err = st.kv.Update(ctx, key, b, last.Rev)
		}
		if err == nil {
			return Revision{Status: s, Rev: rev}, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return last, false, err
		}
		cur, curRev, ok, err := st.get(ctx, key)
		if err != nil {
			return last, false, err
		}
		if !ok {
			last = Revision{}
			continue
		}
		last = Revision{Status: cur, Rev: curRev}
	}
	return last, false, fmt.Errorf("status %s: %w", key, errStatusContended)
}

// AdvanceAsync is Advance without waiting for the broker: the write is
// on the connection when it returns, ahead of anything sent after it (an
// ack, a nak). It carries the compare-and-set condition; a conflict is
// settled by a synchronous Advance in the background, and a write that
// fails otherwise is lost (the event's next delivery does not depend on
// it: see Admit). It fails at once, rather than waiting, when too many
// writes are outstanding.
func (st *StatusStore) AdvanceAsync(s Status, last Revision) error {
	if last.Rev != 0 && behind(s, last.Status) {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if st.async.PublishAsyncPending() >= maxStatusPending {
		return errStatusBacklog
	}
	m := &nats.Msg{Subject: "$KV." + StatusBucket + "." + StatusKey(s.ID, s.Binding), Data: b}
	_, err = st.async.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(last.Rev))
	return err
}

// asyncFailed settles an AdvanceAsync write that lost its compare-and-set:
// it reads the stored status and writes again unless that one is ahead.
func (st *StatusStore) asyncFailed(_ jetstream.JetStream, m *nats.Msg, err error) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || (apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence &&
		apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return
	}
	var s Status
	if json.Unmarshal(m.Data, &s) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, _ = st.Advance(ctx, s, Revision{})
}

// maxStatusPending bounds status writes awaiting the broker. Past it,
// AdvanceAsync fails at once instead of stalling the caller.
const maxStatusPending = 8192

var errStatusBacklog = errors.New("too many status writes outstanding")

// Watch streams every status of event id, current ones first.
func (st *StatusStore) Watch(ctx context.Context, id string) (jetstream.KeyWatcher, error) {
	return st.kv.Watch(ctx, StatusPrefix(id)+".>")
}

// maxStatusConflicts bounds the compare-and-set rounds of one write; only
// deliveries of the same event at the same binding contend.
const maxStatusConflicts = 8

var errStatusContended = errors.New("still changing after repeated compare-and-set conflicts")
