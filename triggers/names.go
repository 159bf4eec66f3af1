// Package triggers turns JetStream messages into function invocations and
// settles them: it lays out the streams and consumers of the queue and topic
// bindings, consumes with per-binding concurrency and rate, invokes, and
// acknowledges, retries with backoff, or dead-letters each event, keeping a
// per-binding status of every event in a KV bucket.
package triggers

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/sluice-run/sluice/config"
)

// StatusBucket is the KV bucket holding every event's status per binding.
const StatusBucket = "sluice_status"

// Consumer metadata keys: a consumer describes its binding, so that any
// client (the CLI, another node) learns the bindings of a stream from
// JetStream itself.
const (
	MetaBinding     = "sluice.binding"
	MetaFunction    = "sluice.function"
	MetaMaxAttempts = "sluice.max_attempts"
	MetaDeadLetter  = "sluice.dead_letter"
)

// Dead-letter headers.
const (
	HdrSubject      = "Sluice-Subject"
	HdrBinding      = "Sluice-Binding"
	HdrFunction     = "Sluice-Function"
	HdrVersion      = "Sluice-Function-Version"
	HdrAttempts     = "Sluice-Attempts"
	HdrError        = "Sluice-Error"
	HdrErrorKind    = "Sluice-Error-Kind"
	HdrFirstFailure = "Sluice-First-Failure"
	HdrLastFailure  = "Sluice-Last-Failure"
	HdrEventID      = "Sluice-Event-Id"
	HdrStream       = "Sluice-Stream"
	HdrSequence     = "Sluice-Stream-Sequence"
)

// StreamName is the stream that holds a binding's events: one per queue,
// one per topic (shared by its subscribers).
func StreamName(b config.Binding) string {
	if b.Kind == config.KindQueue {
		return "SLUICE_Q_" + b.Source
	}
	return "SLUICE_T_" + b.Source
}

// ConsumerName is the durable consumer of a binding.
func ConsumerName(b config.Binding) string {
	return "sluice_" + strings.ReplaceAll(b.Name, "/", "__")
}

// DeadLetterStreamName is the stream that keeps a binding's dead letters.
func DeadLetterStreamName(b config.Binding) string {
	return "SLUICE_DLQ_" + strings.ReplaceAll(b.Name, "/", "__")
}

var plainID = regexp.MustCompile(`^[A-Za-z0-9_=-]{1,128}$`)

// StatusKey is the KV key of an event's status for one binding. Event ids
// that are not valid KV tokens are hashed.
func StatusKey(eventID, binding string) string {
	return StatusPrefix(eventID) + "." + strings.ReplaceAll(binding, "/", ".")
}

// StatusPrefix is the first token of every status key of an event.
func StatusPrefix(eventID string) string {
	if plainID.MatchString(eventID) {
		return eventID
	}
	sum := sha256.Sum256([]byte(eventID))
	return "h" + hex.EncodeToString(sum[:16])
}
