package triggers

import (
	"errors"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/config"
)

// ReplyObserver hears the Sluice-Reply subjects the runtime refused, for
// metrics. An Observer that also implements it is told; its method must
// be quick and safe for concurrent use.
type ReplyObserver interface {
	// ReplyDropped reports a reply not sent: reason is "too_long",
	// "invalid" or "not_allowed".
	ReplyDropped(binding, reason string)
}

// steering reports whether header k steers JetStream or the server: every
// "Nats-" header (Nats-Msg-Id, Nats-Expected-*, Nats-Rollup, Nats-TTL,
// Nats-Schedule*, and whatever later servers add). Compared without case:
// nats.go canonicalizes header names it reads, so a name the server
// ignored on the producer's publish would steer the runtime's republish.
func steering(k string) bool {
	return len(k) >= 5 && strings.EqualFold(k[:5], "Nats-")
}

// runtimeOwned reports whether header k is one the runtime writes about an
// event (its state, origin, error, history): every "Sluice-" header but
// Sluice-Reply, which is the producer's to set.
func runtimeOwned(k string) bool {
	return len(k) >= 7 && strings.EqualFold(k[:7], "Sluice-") && !strings.EqualFold(k, HdrReply)
}

// ProducerHeaders returns a copy of a producer's headers fit to travel on
// something the runtime publishes (a dead letter): without the headers
// that steer JetStream, so that no producer header decides whether the
// runtime's publish is stored, and without the Sluice- headers the runtime
// owns, so that a forged Sluice-Binding or Sluice-Error never passes for
// the runtime's own.
func ProducerHeaders(h nats.Header) nats.Header {
	out := nats.Header{}
	for k, v := range h {
		if !steering(k) && !runtimeOwned(k) {
			out[k] = v
		}
	}
	return out
}

// WithoutSteering returns a copy of h without the headers that steer
// JetStream, keeping the Sluice- ones: for republishing what the runtime
// wrote itself, as a dead letter's replay does.
func WithoutSteering(h nats.Header) nats.Header {
	out := nats.Header{}
	for k, v := range h {
		if !steering(k) {
			out[k] = v
		}
	}
	return out
}

// replyRefused checks the subject a producer named in Sluice-Reply (see
// config.CheckReplySubject) and reports whether the reply must be dropped:
// the runtime sends replies with its own authority, so it sends them only
// where the producer could have listened itself. A refusal is logged and
// counted; it never changes how the event settles.
func (b *binding) replyRefused(st Status, to string) bool {
	var patterns []string
	if p := b.r.replies.Load(); p != nil {
		patterns = *p
	}
	err := config.CheckReplySubject(patterns, to)
	if err == nil {
		return false
	}
	reason := "not_allowed"
	switch {
	case errors.Is(err, config.ErrSubjectTooLong):
		reason = "too_long"
	case errors.Is(err, config.ErrInvalidSubject):
		reason = "invalid"
	}
	b.log.Warn("reply dropped: Sluice-Reply names a subject the runtime does not send to", "event", st.ID, "reason", reason, "error", err)
	if o, ok := b.r.opts.Observer.(ReplyObserver); ok {
		o.ReplyDropped(b.cfg.Name, reason)
	}
	return true
}
