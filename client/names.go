package client

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
)

// The JetStream names of the protocol (see docs/PROTOCOL.md). The runtime
// and the triggers package use these too: each is spelled here only.
const (
	// StatusBucket is the KV bucket holding every event's status per binding.
	StatusBucket = "sluice_status"
	// NodesBucket holds what each running node says about itself.
	NodesBucket = "sluice_nodes"
	// ModulesBucket is the object store of function modules by version.
	ModulesBucket = "sluice_modules"
	// FunctionsBucket is the KV bucket of function version records.
	FunctionsBucket = "sluice_functions"
	// StateBucket is the KV bucket of the runtime's own state; ConfigKey
	// in it holds the effective config the runtime runs, as JSON.
	StateBucket = "sluice_runtime"
	ConfigKey   = "config"

	queueStreamPrefix      = "SLUICE_Q_"
	topicStreamPrefix      = "SLUICE_T_"
	deadLetterStreamPrefix = "SLUICE_DLQ_"
)

// The runtime's micro services.
const (
	// APISubjectPrefix is the producers' API (the publish role may call it).
	APISubjectPrefix = "sluice.api"
	// StatusSubject answers a StatusRequest with a StatusReply.
	StatusSubject = APISubjectPrefix + ".status"
	// AdminSubjectPrefix is the operators' API: deploy, rollback, reload.
	AdminSubjectPrefix = "sluice.admin"
)

// Consumer metadata keys: a consumer describes its binding, so that any
// client learns the bindings of a stream from JetStream itself.
const (
	MetaBinding     = "sluice.binding"
	MetaFunction    = "sluice.function"
	MetaMaxAttempts = "sluice.max_attempts"
	MetaDeadLetter  = "sluice.dead_letter"
	MetaRate        = "sluice.rate"
)

// Headers the runtime writes on what it publishes about an event (dead
// letters, results, failure records, replies).
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
	// HdrNode names the node that handled the event.
	HdrNode = "Sluice-Node"
)

// StreamName is the stream holding the events of a queue (one per queue)
// or of a topic (shared by its subscribers).
func StreamName(queue bool, source string) string {
	if queue {
		return queueStreamPrefix + source
	}
	return topicStreamPrefix + source
}

// BindingStreamName is the stream of a binding given only its name: topic
// subscribers are named TOPIC/SUBSCRIBER, queues have no slash.
func BindingStreamName(binding string) string {
	if topic, _, ok := strings.Cut(binding, "/"); ok {
		return StreamName(false, topic)
	}
	return StreamName(true, binding)
}

// BindingConsumerName is the durable consumer of a binding.
func BindingConsumerName(binding string) string {
	return "sluice_" + strings.ReplaceAll(binding, "/", "__")
}

// DeadLetterStreamName is the stream that keeps a binding's dead letters.
func DeadLetterStreamName(binding string) string {
	return deadLetterStreamPrefix + strings.ReplaceAll(binding, "/", "__")
}

// DeadLetterSubject is the subject of event id's dead letter on a binding
// whose dead_letter subject is deadLetter: the subject names the event
// (StatusPrefix), so that its dead letter is read by subject, exactly,
// however many others the stream keeps and whether or not its status
// still exists.
// The token is hashed when the id would make the subject longer than the
// runtime sends to (config.MaxSubjectLen, 256 bytes; config bounds
// dead_letter subjects so that a hashed token always fits).
func DeadLetterSubject(deadLetter, eventID string) string {
	token := StatusPrefix(eventID)
	if len(deadLetter)+1+len(token) > 256 {
		token = hashedID(eventID)
	}
	return deadLetter + "." + token
}

// DeadLetterSubjects is what a binding's dead-letter stream captures: one
// token below its dead_letter subject. One token only, so that dead_letter
// subjects "dlq" and "dlq.b" of two bindings keep apart.
func DeadLetterSubjects(deadLetter string) string { return deadLetter + ".*" }

// deadLetterBinding is the binding of a dead-letter stream.
func deadLetterBinding(stream string) (string, bool) {
	b, ok := strings.CutPrefix(stream, deadLetterStreamPrefix)
	return strings.ReplaceAll(b, "__", "/"), ok
}

// bindingKind is "queue" or "topic" for a binding's stream, "" for others.
func bindingKind(stream string) string {
	switch {
	case strings.HasPrefix(stream, queueStreamPrefix):
		return "queue"
	case strings.HasPrefix(stream, topicStreamPrefix):
		return "topic"
	}
	return ""
}

// ReplaySubject is where a binding's dead letters are put back: only that
// binding consumes it, so the other subscribers of a topic do not see the
// event again.
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

var plainID = regexp.MustCompile(`^[A-Za-z0-9_=-]{1,128}$`)

// StatusKey is the KV key of an event's status for one binding. Event ids
// that are not valid KV tokens are hashed.
func StatusKey(eventID, binding string) string {
	return StatusPrefix(eventID) + "." + strings.ReplaceAll(binding, "/", ".")
}

// StatusPrefix is the first token of every status key of an event: the id
// itself when it matches [A-Za-z0-9_=-]{1,128}, else "h" and the hex of
// the first 16 bytes of its sha256.
func StatusPrefix(eventID string) string {
	if plainID.MatchString(eventID) {
		return eventID
	}
	return hashedID(eventID)
}

// hashedID is a 33-byte token naming an event id.
func hashedID(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return "h" + hex.EncodeToString(sum[:16])
}

// UserInbox is the inbox prefix of a configured user's connections: a
// publish-role user may subscribe below it only, so its clients set it as
// their inbox prefix (nats.CustomInboxPrefix).
func UserInbox(user string) string { return "_INBOX." + user }
