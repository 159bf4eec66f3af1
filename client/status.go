package client

import "time"

// Event states, in the order an event moves through them.
const (
	StateQueued       = "queued"
	StateRunning      = "running"
	StateRetrying     = "retrying"
	StateSucceeded    = "succeeded"
	StateDeadLettered = "dead_lettered"
)

// Status is an event's state at one binding: the value in StatusBucket,
// the body of a Sluice-Reply and an entry of a StatusReply, all encoded
// alike (see MarshalJSON).
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
	// Round is the delivered message's store time (Unix ns): a replay, or
	// a new publish with the same id, starts a new round, and statuses of
	// an earlier round never replace those of a later one.
	Round int64 `json:"round,omitempty"`
	// Interrupted counts runs of the current attempt whose outcome was
	// lost (the runtime stopped during the invocation); they use no
	// attempt.
	Interrupted int `json:"interrupted,omitempty"`
	// History lists the function's attempts of this round, each with its
	// outcome (the last MaxHistory).
	History   []AttemptRecord `json:"history,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// AttemptRecord is one attempt of the function: Kind is "succeeded" or
// the failure's kind.
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

// StatusRequest asks the status API (StatusSubject) for an event's status
// at its bindings.
type StatusRequest struct {
	ID string `json:"id"`
	// Stream, when set, is the stream the event was stored in (from the
	// publish acknowledgement): the answer then holds one status for every
	// binding of that stream, "queued" where none is recorded yet.
	// Without it, the answer holds the statuses recorded at any binding.
	Stream string `json:"stream,omitempty"`
	// Binding, when set, limits the answer to that binding.
	Binding string `json:"binding,omitempty"`
}

// StatusReply is the answer to a StatusRequest.
type StatusReply struct {
	ID       string   `json:"id"`
	Statuses []Status `json:"statuses"`
	// Omitted names the bindings whose result was left out so that the
	// answer fits in one message; ask again with Binding set for each.
	Omitted []string `json:"omitted,omitempty"`
}
