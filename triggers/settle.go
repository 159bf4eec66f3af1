package triggers

import (
	"fmt"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
)

// The settle policy: what to do with a delivery before the function runs
// (Admit) and once it returned (Settle). Both are pure functions of the
// event's history at the binding, the outcome and the retry policy, so
// that they are tested without a broker.
//
// Attempts are the function's own: an attempt counts once its outcome is
// recorded in the event's status, never because JetStream delivered the
// message again. A delivery that did not run the function (shutdown,
// reload, the status store unavailable) or whose outcome was lost (the
// runtime stopped during the invocation) uses no attempt.

// Action is what becomes of a delivery.
type Action int

// Actions.
const (
	// Run invokes the function as attempt Decision.Attempt.
	Run Action = iota
	// Ack settles the event as succeeded.
	Ack
	// Retry puts the event back for another attempt after Decision.Delay.
	Retry
	// DeadLetter stores the event as a dead letter, then terminates it.
	DeadLetter
	// Release puts the event back after Decision.Delay without using an
	// attempt.
	Release
	// Term terminates an event whose dead letter is already stored.
	Term
)

func (a Action) String() string {
	switch a {
	case Run:
		return "run"
	case Ack:
		return "ack"
	case Retry:
		return "retry"
	case DeadLetter:
		return "dead-letter"
	case Release:
		return "release"
	case Term:
		return "term"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Decision is the policy's answer.
type Decision struct {
	Action Action
	// Attempt is the function attempt concerned (1-based).
	Attempt int
	// Delay is how long the event waits before its next delivery (Retry,
	// Release).
	Delay time.Duration
	// Reason says why (a dead letter's reason, a release's cause).
	Reason string
	// Interrupted is set when attempt Attempt counts as failed because
	// MaxInterruptions of its runs lost their outcome.
	Interrupted bool
}

// History is what the status store recorded about an event at a binding
// for the message being delivered.
type History struct {
	// Found is false when nothing is recorded (a first delivery, or the
	// record was lost).
	Found bool
	// State is the recorded state.
	State string
	// Attempts is the attempt the state is about: the attempt running,
	// the last failed one (retrying), or the last one (final states).
	Attempts int
	// LastKind is the kind of the last failed attempt, if any.
	LastKind functions.Kind
	// LastError is the reason of the last failed attempt, if any.
	LastError string
	// Interrupted counts the runs whose outcome was lost so far.
	Interrupted int
}

// MaxInterruptions is how many runs of one attempt may lose their outcome
// (the runtime stopped during the invocation) before that attempt counts
// as failed, so that an event that keeps bringing the runtime down cannot
// loop for ever.
const MaxInterruptions = 3

// ReleaseDelay is how long an event that did not run waits before it is
// delivered again.
const ReleaseDelay = time.Second

// Admit decides what to do with a delivery before invoking: run the next
// attempt, or finish what an earlier delivery of the same message decided
// (it succeeded, it was dead-lettered, its attempts are spent).
//
// A "running" record with no outcome means that a run was interrupted:
// the attempt is run again under the same number, and counts as failed
// (then settled as any failure, with backoff) only once MaxInterruptions
// runs were lost.
func Admit(h History, p config.Retry, backoff func(attempt int) time.Duration) Decision {
	if !h.Found {
		return Decision{Action: Run, Attempt: 1}
	}
	switch h.State {
	case StateSucceeded:
		return Decision{Action: Ack, Attempt: h.Attempts, Reason: "already succeeded"}
	case StateDeadLettered:
		return Decision{Action: Term, Attempt: h.Attempts, Reason: "already dead-lettered"}
	case StateRunning:
		attempt := max(1, h.Attempts)
		if lost := h.Interrupted + 1; lost >= MaxInterruptions {
			reason := fmt.Sprintf("no outcome from %d runs of attempt %d (the runtime stopped during each invocation)", lost, attempt)
			d := Settle(Outcome{Err: &functions.Error{Kind: functions.KindFailed, Reason: reason}}, attempt, p, backoff)
			d.Interrupted = true
			return d
		}
		return Decision{Action: Run, Attempt: attempt}
	case StateRetrying:
		if h.LastKind == functions.KindPermanent || h.Attempts >= p.MaxAttempts {
			// The last attempt failed and was recorded, but its dead
			// letter was not stored yet.
			return Decision{Action: DeadLetter, Attempt: h.Attempts, Reason: h.LastError}
		}
		return Decision{Action: Run, Attempt: h.Attempts + 1}
	}
	return Decision{Action: Run, Attempt: max(1, h.Attempts+1)}
}

// Outcome is how one invocation ended.
type Outcome struct {
	// NotRun is set when the function did not run (shutdown, reload, an
	// unknown function): why.
	NotRun string
	// Err is the function's failure; nil (with NotRun empty) is a success.
	Err *functions.Error
}

// Settle decides what becomes of an event after attempt `attempt` of its
// function ended with o. backoff gives the delay after a failed attempt.
func Settle(o Outcome, attempt int, p config.Retry, backoff func(attempt int) time.Duration) Decision {
	switch {
	case o.NotRun != "":
		return Decision{Action: Release, Attempt: attempt, Delay: ReleaseDelay, Reason: o.NotRun}
	case o.Err == nil:
		return Decision{Action: Ack, Attempt: attempt}
	case o.Err.Kind == functions.KindPermanent:
		return Decision{Action: DeadLetter, Attempt: attempt, Reason: o.Err.Reason}
	case attempt >= p.MaxAttempts:
		return Decision{Action: DeadLetter, Attempt: attempt, Reason: o.Err.Reason}
	}
	delay := backoff(attempt)
	if o.Err.RetryAfter > 0 {
		delay = min(o.Err.RetryAfter, p.Max)
	}
	return Decision{Action: Retry, Attempt: attempt, Delay: delay, Reason: o.Err.Reason}
}

// behind reports whether s must not replace cur, the stored status of the
// same event at the same binding. Statuses are ordered by round (the
// delivered message's store time: a new publish with the same id, or a
// replay, starts a new round), then attempt, then state: running <
// retrying < a final state, and nothing in a round follows a final state.
// A final state is never rewritten, not even by an equal one.
func behind(s, cur Status) bool {
	if s.Round != cur.Round {
		return s.Round < cur.Round
	}
	if cur.Final() {
		return true
	}
	if s.Final() {
		return false
	}
	if s.Attempts != cur.Attempts {
		return s.Attempts < cur.Attempts
	}
	return stateRank(s.State) < stateRank(cur.State)
}

func stateRank(state string) int {
	switch state {
	case StateRunning:
		return 1
	case StateRetrying:
		return 2
	case StateSucceeded, StateDeadLettered:
		return 3
	}
	return 0
}
