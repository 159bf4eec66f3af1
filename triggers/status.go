package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Event states, in the order an event moves through them.
const (
	StateQueued       = "queued"
	StateRunning      = "running"
	StateRetrying     = "retrying"
	StateSucceeded    = "succeeded"
	StateDeadLettered = "dead_lettered"
)

// Status is an event's state at one binding, as stored in StatusBucket.
type Status struct {
	ID          string     `json:"id"`
	Binding     string     `json:"binding"`
	Function    string     `json:"function"`
	Version     string     `json:"version,omitempty"`
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	MaxAttempts int        `json:"max_attempts"`
	Error       string     `json:"error,omitempty"`
	ErrorKind   string     `json:"error_kind,omitempty"`
	Result      []byte     `json:"result,omitempty"`
	NextTryAt   *time.Time `json:"next_try_at,omitempty"`
	FirstFailAt *time.Time `json:"first_failure_at,omitempty"`
	Subject     string     `json:"subject"`
	Stream      string     `json:"stream"`
	Sequence    uint64     `json:"seq"`
	DeadLetter  string     `json:"dead_letter,omitempty"`
	// History lists the failed attempts (the last MaxHistory).
	History   []AttemptRecord `json:"history,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// AttemptRecord is one failed attempt.
type AttemptRecord struct {
	Attempt  int       `json:"attempt"`
	Kind     string    `json:"kind"`
	Error    string    `json:"error"`
	Duration string    `json:"duration"`
	Version  string    `json:"version,omitempty"`
	Node     string    `json:"node,omitempty"`
	At       time.Time `json:"at"`
}

// MaxHistory bounds the attempts kept with an event, so that a dead
// letter's headers stay small.
const MaxHistory = 20

// Final reports whether the state is one an event does not leave.
func (s Status) Final() bool {
	return s.State == StateSucceeded || s.State == StateDeadLettered
}

// StatusStore reads and writes statuses.
type StatusStore struct {
	kv jetstream.KeyValue
	// async has its own bound on outstanding writes, so that status
	// writes never wait behind (or stall) other asynchronous publishes.
	async jetstream.JetStream
}

// NewStatusStore opens the status bucket.
func NewStatusStore(ctx context.Context, js jetstream.JetStream) (*StatusStore, error) {
	kv, err := js.KeyValue(ctx, StatusBucket)
	if err != nil {
		return nil, err
	}
	async, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(2*maxStatusPending),
		// An acknowledgement lost (to a slow-consumer drop, say) must not
		// hold its slot forever.
		jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	return &StatusStore{kv: kv, async: async}, nil
}

// Put stores s.
func (st *StatusStore) Put(ctx context.Context, s Status) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = st.kv.Put(ctx, StatusKey(s.ID, s.Binding), b)
	return err
}

// Get returns the status of event id at binding; ok is false when none is
// recorded yet.
func (st *StatusStore) Get(ctx context.Context, id, binding string) (Status, bool, error) {
	e, err := st.kv.Get(ctx, StatusKey(id, binding))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, err
	}
	var s Status
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return Status{}, false, err
	}
	return s, true, nil
}

// Watch streams every status of event id, current ones first.
func (st *StatusStore) Watch(ctx context.Context, id string) (jetstream.KeyWatcher, error) {
	return st.kv.Watch(ctx, StatusPrefix(id)+".>")
}

// PutAsync stores s without waiting for the broker's acknowledgement. It
// fails at once, rather than waiting, when too many writes are outstanding.
func (st *StatusStore) PutAsync(s Status) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if st.async.PublishAsyncPending() >= maxStatusPending {
		return errStatusBacklog
	}
	_, err = st.async.PublishAsync("$KV."+StatusBucket+"."+StatusKey(s.ID, s.Binding), b)
	return err
}

// maxStatusPending bounds status writes awaiting the broker. Past it,
// PutAsync fails at once instead of stalling the caller.
const maxStatusPending = 8192

var errStatusBacklog = errors.New("too many status writes outstanding")
