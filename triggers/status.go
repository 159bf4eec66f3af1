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
	nc *nats.Conn
	// async sends AdvanceAsync's writes; asyncFailed settles those not
	// stored.
	async *asyncWrites
	// retries bounds the writes being retried after an asynchronous one
	// failed (see asyncFailed).
	retries chan struct{}
}

// NewStatusStore opens the status bucket.
func NewStatusStore(ctx context.Context, js jetstream.JetStream) (*StatusStore, error) {
	kv, err := js.KeyValue(ctx, StatusBucket)
	if err != nil {
		return nil, err
	}
	st := &StatusStore{kv: kv, nc: js.Conn(), retries: make(chan struct{}, maxStatusRetries)}
	st.async, err = newAsyncWrites(st.nc, statusAckTimeout, st.asyncFailed)
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
	b, err := encodeStatus(s)
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
// settled by a synchronous Advance, and a write that fails otherwise is
// retried in the background for a while (see asyncFailed). It fails at once, rather than waiting, when too many
// writes are outstanding.
func (st *StatusStore) AdvanceAsync(s Status, last Revision) error {
	if last.Rev != 0 && behind(s, last.Status) {
		return nil
	}
	b, err := encodeStatus(s)
	if err != nil {
		return err
	}
	return st.async.publish("$KV."+StatusBucket+"."+StatusKey(s.ID, s.Binding), b, last.Rev)
}

// encodeStatus is s as stored. The buffer fits a success's status with
// its history entry, so that encoding allocates once.
func encodeStatus(s Status) ([]byte, error) {
	return s.AppendJSON(make([]byte, 0, 512))
}

// asyncFailed settles an AdvanceAsync write that failed. A lost
// compare-and-set reads the stored status and writes again unless that one
// is ahead. Any other failure (no answer while the bucket's stream elects
// a leader, a timeout) is retried with backoff for up to statusRetryFor:
// the event may already be acknowledged, and a success or dead letter
// whose status is lost would show "running" forever (found by the chaos
// suite, killing the status bucket's leader).
func (st *StatusStore) asyncFailed(data []byte, err error) {
	var s Status
	if json.Unmarshal(data, &s) != nil {
		return
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, _ = st.Advance(ctx, s, Revision{})
		return
	}
	select {
	case st.retries <- struct{}{}:
	default:
		return // too many already: the newest statuses of a burst win
	}
	// Not waited for: the retry ends by itself within statusRetryFor, and
	// the handler must not hold up the acknowledgements behind it.
	go func() {
		defer func() { <-st.retries }()
		st.retry(s)
	}()
}

// retry writes s until it is stored, a status ahead of it is, the
// connection is closed, or statusRetryFor has passed.
func (st *StatusStore) retry(s Status) {
	deadline := time.Now().Add(statusRetryFor)
	wait := 250 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := st.Advance(ctx, s, Revision{})
		cancel()
		// A closed connection (the runtime stopping) ends the retry too.
		if err == nil || st.nc.IsClosed() || time.Now().Add(wait).After(deadline) {
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 4*time.Second)
	}
}

// Bounds of the retries of failed asynchronous status writes.
const (
	// As many as may be pending: a leader election fails every write in
	// flight at once (thousands at a few hundred events a second), and
	// a write not retried leaves its status behind for good.
	maxStatusRetries = maxStatusPending
	statusRetryFor   = time.Minute
)

// statusAckTimeout is how long an asynchronous status write waits for its
// acknowledgement before it counts as failed (and is retried).
const statusAckTimeout = 5 * time.Second

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
