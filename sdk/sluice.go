//go:build wasip1

package sluice

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event is one delivery of an event to the function.
type Event struct {
	// ID is the event id: the publisher's Nats-Msg-Id, or the stream
	// sequence when it set none. It is the same on every attempt.
	ID string
	// Subject is the subject the event was published to.
	Subject string
	// Binding is the name of the binding delivering the event: a queue's
	// name ("emails") or "TOPIC/SUBSCRIBER" ("user_registered/welcome_email").
	Binding string
	// Function is the function's name in runtime.hcl.
	Function string
	// Data is the payload.
	Data []byte
	// Headers are the event's headers, names as published, values in
	// publish order. Nil when the event has none.
	Headers map[string][]string
	// Attempt is the attempt number, 1 for the first delivery.
	Attempt int
}

// Header returns the first value of the header name, or "" if there is none.
// An exact match of name is preferred; otherwise names are compared without
// regard to case.
func (e Event) Header(name string) string {
	if v := e.Headers[name]; len(v) > 0 {
		return v[0]
	}
	for k, v := range e.Headers {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

var handler func(Event) ([]byte, error)

// Handle registers h as the function's handler, replacing any earlier one.
// Call it from an init function: main.main is not run in a reactor module.
func Handle(h func(Event) ([]byte, error)) { handler = h }

// PermanentError marks a failure that retrying cannot fix: the event is
// dead-lettered at once (handle returns 2). Create it with Permanent.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "permanent failure"
	}
	return e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that returning it from the handler dead-letters the
// event at once, without retries. The failure reason is err's text.
func Permanent(err error) error { return &PermanentError{Err: err} }

// RetryAfterError is a failure whose next attempt should come no sooner than
// Delay from now. Create it with RetryAfter.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return "retry after " + e.Delay.String()
	}
	return e.Err.Error()
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err so that returning it from the handler fails the
// invocation (handle returns 1) and asks for the next attempt no sooner than
// d from now, instead of the binding's backoff (the retry policy's max still
// caps it). The failure reason is err's text.
func RetryAfter(d time.Duration, err error) error { return &RetryAfterError{Delay: d, Err: err} }

// Errors returned by host calls (Publish, HTTP, Fetch, KVGet, KVPut,
// KVDelete, Seen); compare with errors.Is. The error returned names the
// call too (`publish "greet.audit": denied`).
var (
	// ErrDenied: not allowed by the function's configuration (a subject
	// outside its publish list, a URL outside its allowed_hosts).
	ErrDenied = errors.New("denied")
	// ErrTooLarge: a value is over its limit.
	ErrTooLarge = errors.New("too large")
	// ErrFailed: the host could not do it (for example the broker did not
	// acknowledge, or the HTTP server did not answer); retrying later may
	// work.
	ErrFailed = errors.New("failed")
	// ErrInvalid: an argument is malformed (a subject, a URL, a header, a
	// key).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: no such key (KVGet).
	ErrNotFound = errors.New("not found")
)

// callError is a host call's error code as an error wrapping one of the
// sentinels above.
type callError struct {
	op  string
	err error
}

func (e *callError) Error() string { return e.op + ": " + e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

// codeError turns a negative host code into an error (nil for 0 and above).
func codeError(op string, rc int32) error {
	var err error
	switch {
	case rc >= 0:
		return nil
	case rc == errDenied:
		err = ErrDenied
	case rc == errTooLarge:
		err = ErrTooLarge
	case rc == errFailed:
		err = ErrFailed
	case rc == errInvalid:
		err = ErrInvalid
	case rc == errNotFound:
		err = ErrNotFound
	default:
		err = errors.New("host error " + strconv.Itoa(int(rc)))
	}
	return &callError{op: op, err: err}
}

// Publish publishes data to subject, which must match one of the function's
// publish patterns in runtime.hcl. When a stream captures the subject,
// Publish returns after the broker acknowledged the message durably. It
// publishes at once: a retried invocation publishes again, so consumers
// should de-duplicate on the event id.
func Publish(subject string, data []byte) error {
	return codeError("publish "+quoteShort(subject), hostPublish(stringPtr(subject), int32(len(subject)), bytesPtr(data), int32(len(data))))
}

// quoteShort quotes s, cut to its first 64 bytes: an error names the
// subject without a long one crowding out why it failed.
func quoteShort(s string) string {
	if len(s) <= 64 {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:64]) + "…"
}

// Level is a log level.
type Level int32

// Log levels.
const (
	Debug Level = 0
	Info  Level = 1
	Warn  Level = 2
	Error Level = 3
)

func (l Level) String() string {
	switch l {
	case Debug:
		return "debug"
	case Info:
		return "info"
	case Warn:
		return "warn"
	case Error:
		return "error"
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// Log writes one log line at level; the host tags it with the function,
// binding, event id and attempt.
func Log(level Level, msg string) {
	hostLog(int32(level), stringPtr(msg), int32(len(msg)))
}

// Logf is Log with fmt.Sprintf formatting.
func Logf(level Level, format string, args ...any) {
	Log(level, fmt.Sprintf(format, args...))
}
