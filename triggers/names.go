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
	MetaRate        = "sluice.rate"
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
	// HdrHistory holds the attempts of a dead letter, as a JSON array of
	// AttemptRecord (the last MaxHistory).
	HdrHistory = "Sluice-History"
	// HdrReply, set by a producer, names a subject that receives the
	// event's final outcome (a Status as JSON) from every binding.
	HdrReply = "Sluice-Reply"
	// HdrNode names the node that handled the event, on everything sluice
	// publishes about it (results, failure records, dead letters, replies).
	HdrNode = "Sluice-Node"
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
func ConsumerName(b config.Binding) string { return BindingConsumerName(b.Name) }

// DeadLetterStreamName is the stream that keeps a binding's dead letters.
func DeadLetterStreamName(binding string) string {
	return "SLUICE_DLQ_" + strings.ReplaceAll(binding, "/", "__")
}

// ReplaySubject is where `sluice dlq replay` puts a binding's dead letters
// back: only that binding consumes it, so the other subscribers of a topic
// do not see the event again.
func ReplaySubject(binding string) string {
	return "sluice.replay." + strings.ReplaceAll(binding, "/", ".")
}

// ReplayStreamName is the work-queue stream behind ReplaySubject.
func ReplayStreamName(binding string) string {
	return "SLUICE_R_" + strings.ReplaceAll(binding, "/", "__")
}

// ReplayConsumerName is the binding's durable consumer of its replays.
func ReplayConsumerName(binding string) string {
	return "sluice_replay_" + strings.ReplaceAll(binding, "/", "__")
}

// BindingStreamName is the stream of a binding given only its name:
// topic subscribers are named TOPIC/SUBSCRIBER, queues have no slash.
func BindingStreamName(binding string) string {
	if topic, _, ok := strings.Cut(binding, "/"); ok {
		return "SLUICE_T_" + topic
	}
	return "SLUICE_Q_" + binding
}

// BindingConsumerName is ConsumerName given only the binding's name.
func BindingConsumerName(binding string) string {
	return "sluice_" + strings.ReplaceAll(binding, "/", "__")
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
