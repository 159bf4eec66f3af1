// Package triggers turns JetStream messages into function invocations and
// settles them: it lays out the streams and consumers of the queue and topic
// bindings, consumes with per-binding concurrency and rate, invokes, and
// acknowledges, retries with backoff, or dead-letters each event, keeping a
// per-binding status of every event in a KV bucket.
package triggers

import (
	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
)

// The protocol's names are spelled in package client, which producers
// import without the runtime; these are the same names.
const (
	StatusBucket = client.StatusBucket

	MetaBinding     = client.MetaBinding
	MetaFunction    = client.MetaFunction
	MetaMaxAttempts = client.MetaMaxAttempts
	MetaDeadLetter  = client.MetaDeadLetter
	MetaRate        = client.MetaRate

	HdrSubject      = client.HdrSubject
	HdrBinding      = client.HdrBinding
	HdrFunction     = client.HdrFunction
	HdrVersion      = client.HdrVersion
	HdrAttempts     = client.HdrAttempts
	HdrError        = client.HdrError
	HdrErrorKind    = client.HdrErrorKind
	HdrFirstFailure = client.HdrFirstFailure
	HdrLastFailure  = client.HdrLastFailure
	HdrEventID      = client.HdrEventID
	HdrStream       = client.HdrStream
	HdrSequence     = client.HdrSequence
	HdrHistory      = client.HdrHistory
	HdrReply        = client.HdrReply
	HdrNode         = client.HdrNode
)

// StreamName is the stream that holds a binding's events: one per queue,
// one per topic (shared by its subscribers).
func StreamName(b config.Binding) string {
	return client.StreamName(b.Kind == config.KindQueue, b.Source)
}

// ConsumerName is the durable consumer of a binding.
func ConsumerName(b config.Binding) string { return client.BindingConsumerName(b.Name) }

// Names given only a binding's name; see package client.
var (
	DeadLetterStreamName = client.DeadLetterStreamName
	DeadLetterSubject    = client.DeadLetterSubject
	DeadLetterSubjects   = client.DeadLetterSubjects
	ReplaySubject        = client.ReplaySubject
	ReplayStreamName     = client.ReplayStreamName
	ReplayConsumerName   = client.ReplayConsumerName
	BindingStreamName    = client.BindingStreamName
	BindingConsumerName  = client.BindingConsumerName
	StatusKey            = client.StatusKey
	StatusPrefix         = client.StatusPrefix
)
