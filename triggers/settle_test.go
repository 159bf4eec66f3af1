package triggers

import (
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
)

var testPolicy = config.Retry{MaxAttempts: 3, Initial: time.Second, Max: time.Minute}

// fixedBackoff stands in for the jittered one: attempt n waits n seconds.
func fixedBackoff(attempt int) time.Duration { return time.Duration(attempt) * time.Second }

func TestSettle(t *testing.T) {
	failed := &functions.Error{Kind: functions.KindFailed, Reason: "boom"}
	tests := []struct {
		name    string
		outcome Outcome
		attempt int
		want    Decision
	}{
		{"success", Outcome{}, 1, Decision{Action: Ack, Attempt: 1}},
		{"success on the last attempt", Outcome{}, 3, Decision{Action: Ack, Attempt: 3}},
		{"failure with attempts left", Outcome{Err: failed}, 1, Decision{Action: Retry, Attempt: 1, Delay: time.Second, Reason: "boom"}},
		{"backoff grows with the attempt", Outcome{Err: failed}, 2, Decision{Action: Retry, Attempt: 2, Delay: 2 * time.Second, Reason: "boom"}},
		{"failure on the last attempt", Outcome{Err: failed}, 3, Decision{Action: DeadLetter, Attempt: 3, Reason: "boom"}},
		{"permanent failure on the first attempt", Outcome{Err: &functions.Error{Kind: functions.KindPermanent, Reason: "bad input"}}, 1,
			Decision{Action: DeadLetter, Attempt: 1, Reason: "bad input"}},
		{"timeout is a failure like any", Outcome{Err: &functions.Error{Kind: functions.KindTimeout, Reason: "slow"}}, 1,
			Decision{Action: Retry, Attempt: 1, Delay: time.Second, Reason: "slow"}},
		{"the guest's delay wins", Outcome{Err: &functions.Error{Kind: functions.KindFailed, Reason: "later", RetryAfter: 7 * time.Second}}, 1,
			Decision{Action: Retry, Attempt: 1, Delay: 7 * time.Second, Reason: "later"}},
		{"the guest's delay is capped", Outcome{Err: &functions.Error{Kind: functions.KindFailed, Reason: "later", RetryAfter: time.Hour}}, 1,
			Decision{Action: Retry, Attempt: 1, Delay: time.Minute, Reason: "later"}},
		{"not run: shutdown", Outcome{NotRun: "functions closed"}, 1, Decision{Action: Release, Attempt: 1, Delay: ReleaseDelay, Reason: "functions closed"}},
		{"not run on the last attempt uses no attempt", Outcome{NotRun: "unknown function"}, 3,
			Decision{Action: Release, Attempt: 3, Delay: ReleaseDelay, Reason: "unknown function"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Settle(tt.outcome, tt.attempt, testPolicy, fixedBackoff); got != tt.want {
				t.Errorf("Settle = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	interrupted := "no outcome from 3 runs of attempt 1 (the runtime stopped during each invocation)"
	tests := []struct {
		name string
		h    History
		want Decision
	}{
		{"first delivery", History{}, Decision{Action: Run, Attempt: 1}},
		{"after a failed attempt", History{Found: true, State: StateRetrying, Attempts: 1, LastKind: functions.KindFailed},
			Decision{Action: Run, Attempt: 2}},
		{"a run interrupted by a crash runs again as the same attempt", History{Found: true, State: StateRunning, Attempts: 1},
			Decision{Action: Run, Attempt: 1}},
		{"with max_attempts reached, an interrupted last attempt still runs", History{Found: true, State: StateRunning, Attempts: 3, Interrupted: 1},
			Decision{Action: Run, Attempt: 3}},
		{"too many interruptions count as a failed attempt", History{Found: true, State: StateRunning, Attempts: 1, Interrupted: MaxInterruptions - 1},
			Decision{Action: Retry, Attempt: 1, Delay: time.Second, Reason: interrupted, Interrupted: true}},
		{"a success whose ack was lost is not run again", History{Found: true, State: StateSucceeded, Attempts: 2},
			Decision{Action: Ack, Attempt: 2, Reason: "already succeeded"}},
		{"a dead letter whose term was lost is only terminated", History{Found: true, State: StateDeadLettered, Attempts: 3},
			Decision{Action: Term, Attempt: 3, Reason: "already dead-lettered"}},
		{"attempts spent, dead letter not stored yet", History{Found: true, State: StateRetrying, Attempts: 3, LastKind: functions.KindFailed, LastError: "boom"},
			Decision{Action: DeadLetter, Attempt: 3, Reason: "boom"}},
		{"permanent failure, dead letter not stored yet", History{Found: true, State: StateRetrying, Attempts: 1, LastKind: functions.KindPermanent, LastError: "bad"},
			Decision{Action: DeadLetter, Attempt: 1, Reason: "bad"}},
		{"released before any attempt", History{Found: true, State: StateRetrying, Attempts: 0},
			Decision{Action: Run, Attempt: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Admit(tt.h, testPolicy, fixedBackoff); got != tt.want {
				t.Errorf("Admit = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestAdmitNeverDeadLettersAnEventThatDidNotRun: however often an event
// is delivered without an outcome recorded, it runs.
func TestAdmitNeverDeadLettersAnEventThatDidNotRun(t *testing.T) {
	for _, h := range []History{{}, {Found: true, State: StateQueued}, {Found: true, State: StateRetrying}} {
		if d := Admit(h, config.Retry{MaxAttempts: 1}, fixedBackoff); d.Action != Run || d.Attempt != 1 {
			t.Errorf("Admit(%+v) = %+v, want to run attempt 1", h, d)
		}
	}
}

func TestStatusOrder(t *testing.T) {
	st := func(round int64, state string, attempts int) Status {
		return Status{Round: round, State: state, Attempts: attempts}
	}
	tests := []struct {
		name      string
		s, cur    Status
		wantBehin bool
	}{
		{"retrying after running of the same attempt", st(1, StateRetrying, 1), st(1, StateRunning, 1), false},
		{"the next attempt after a failure", st(1, StateRunning, 2), st(1, StateRetrying, 1), false},
		{"a late report of an earlier attempt", st(1, StateRetrying, 1), st(1, StateRunning, 2), true},
		{"a stale running mark after the outcome", st(1, StateRunning, 2), st(1, StateRetrying, 2), true},
		{"anything after a success", st(1, StateRetrying, 5), st(1, StateSucceeded, 2), true},
		{"a second final state", st(1, StateDeadLettered, 2), st(1, StateSucceeded, 2), true},
		{"a final state after running", st(1, StateSucceeded, 1), st(1, StateRunning, 1), false},
		{"a running mark rewritten (interruption count)", st(1, StateRunning, 1), st(1, StateRunning, 1), false},
		{"a replay starts a new round", st(2, StateRunning, 1), st(1, StateDeadLettered, 3), false},
		{"an earlier round never returns", st(1, StateSucceeded, 1), st(2, StateRunning, 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := behind(tt.s, tt.cur); got != tt.wantBehin {
				t.Errorf("behind(%+v, %+v) = %v, want %v", tt.s, tt.cur, got, tt.wantBehin)
			}
		})
	}
}
