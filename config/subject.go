package config

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidSubject checks that s is a NATS subject: tokens separated by '.', no
// empty token, no whitespace or control characters. With wildcards, a token
// may be '*' (any one token) and the last token may be '>' (one or more
// tokens); '*' and '>' are never allowed inside a token.
func ValidSubject(s string, wildcards bool) error {
	if s == "" {
		return errors.New("empty subject")
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("subject %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("subject %q contains whitespace or a control character", s)
		}
	}
	tokens := strings.Split(s, ".")
	for i, tok := range tokens {
		switch {
		case tok == "":
			return fmt.Errorf("subject %q has an empty token", s)
		case tok == "*" || tok == ">":
			if !wildcards {
				return fmt.Errorf("subject %q contains the wildcard %q; a literal subject is required here", s, tok)
			}
			if tok == ">" && i != len(tokens)-1 {
				return fmt.Errorf("subject %q has '>' before its last token", s)
			}
		case strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("subject %q has '*' or '>' inside the token %q; a wildcard must be a whole token", s, tok)
		}
	}
	return nil
}

// SubjectsOverlap reports whether some literal subject matches both a and
// b, each a subject that may contain wildcards. Subjects that are not valid
// (see ValidSubject) are compared token by token all the same.
func SubjectsOverlap(a, b string) bool {
	ta, tb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		endA, endB := i >= len(ta), i >= len(tb)
		switch {
		case endA && endB:
			return true
		case endA || endB:
			// '>' needs at least one more token, which the other lacks.
			return false
		case ta[i] == ">" || tb[i] == ">":
			return true
		case ta[i] == "*" || tb[i] == "*" || ta[i] == tb[i]:
			continue
		default:
			return false
		}
	}
}

// MaxSubjectLen bounds, in bytes, every subject sluice sends to (guest
// publishes, replies, results, failure records, dead letters) and every
// subject in the config. The server closes a connection whose protocol
// line passes 4 KiB for good, so an unbounded subject from a guest or a
// producer could take the runtime's connection down; 256 bytes is far more
// than any subject a config or an inbox needs.
const MaxSubjectLen = 256

// MaxDeadLetterLen bounds a dead_letter subject: each dead letter goes one
// token below it, a token of at most 33 bytes when the event id is long
// (client.DeadLetterSubject), within MaxSubjectLen.
const MaxDeadLetterLen = MaxSubjectLen - 1 - 33

// Why CheckSendSubject refuses a subject.
var (
	ErrSubjectTooLong  = fmt.Errorf("subject longer than %d bytes", MaxSubjectLen)
	ErrInvalidSubject  = errors.New("invalid subject")
	ErrReservedSubject = errors.New("reserved subject")
)

// CheckSendSubject checks a subject the runtime is about to send to: a
// literal NATS subject (no wildcards) of at most MaxSubjectLen bytes. The
// error wraps ErrSubjectTooLong or ErrInvalidSubject and names the subject
// (cut short when long).
func CheckSendSubject(s string) error {
	if len(s) > MaxSubjectLen {
		return fmt.Errorf("%w: %q… is %d bytes", ErrSubjectTooLong, s[:32], len(s))
	}
	if err := ValidSubject(s, false); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSubject, err)
	}
	return nil
}

// ReservedSubject reports why subject s (wildcards allowed) reaches a
// namespace that neither a function's publish list nor a producer's reply
// may name, or "" when it does not: "$" (the server's own: $JS, $KV, $O,
// $SYS, $SRV), "_INBOX" (other clients' replies), "_SLUICE" (the
// runtime's own inbox) and "sluice" (the runtime's admin, API, replay and
// dead-letter subjects). A first token "*" or ">" covers all of them.
func ReservedSubject(s string) string {
	first, _, _ := strings.Cut(s, ".")
	switch {
	case strings.HasPrefix(first, "$"):
		return `subjects starting with "$" belong to the NATS server (JetStream, key-value and object stores, services)`
	case strings.HasPrefix(first, "_INBOX"):
		return `subjects starting with "_INBOX" are other clients' reply subjects`
	case strings.HasPrefix(first, "_SLUICE"):
		return `subjects starting with "_SLUICE" are the runtime's own reply subjects`
	case first == "sluice":
		return `subjects starting with "sluice." are reserved for sluice itself (admin, API, replays, dead letters)`
	case first == "*" || first == ">":
		return `a wildcard as the first token covers the reserved namespaces ("$…", "_INBOX…", "sluice.…")`
	}
	return ""
}

// reservedSubject reports why s may not be consumed by a queue or topic, or
// "" when it may: see ReservedSubject.
func reservedSubject(s string) string {
	first, _, _ := strings.Cut(s, ".")
	if first == "*" || first == ">" {
		return ""
	}
	return ReservedSubject(s)
}

// subjectIndex finds overlapping subjects among many without comparing
// every pair: a tree of tokens, where a query follows only the branches a
// subject could share.
type subjectIndex struct {
	root subjectNode
}

type subjectNode struct {
	// children in insertion order, so that queries are deterministic.
	keys     []string
	children map[string]*subjectNode
	// through is the id of the first subject that reaches this node.
	through int
	// ends holds the id of the first subject that ends here, or -1.
	ends int
}

func newSubjectNode(id int) *subjectNode {
	return &subjectNode{children: map[string]*subjectNode{}, through: id, ends: -1}
}

// add records subject under id.
func (x *subjectIndex) add(subject string, id int) {
	n := &x.root
	if n.children == nil {
		*n = *newSubjectNode(id)
	}
	for _, tok := range strings.Split(subject, ".") {
		c := n.children[tok]
		if c == nil {
			c = newSubjectNode(id)
			n.children[tok] = c
			n.keys = append(n.keys, tok)
		}
		n = c
	}
	if n.ends < 0 {
		n.ends = id
	}
}

// overlap returns the id of a recorded subject that overlaps subject.
func (x *subjectIndex) overlap(subject string) (int, bool) {
	if x.root.children == nil {
		return 0, false
	}
	id := x.root.find(strings.Split(subject, "."))
	return id, id >= 0
}

// find returns the id of a subject below n matching toks, or -1.
func (n *subjectNode) find(toks []string) int {
	if len(toks) == 0 {
		return n.ends
	}
	if c := n.children[">"]; c != nil && c.ends >= 0 {
		return c.ends // '>' takes the one or more tokens left
	}
	switch tok := toks[0]; tok {
	case ">":
		for _, k := range n.keys {
			return n.children[k].through
		}
	case "*":
		for _, k := range n.keys {
			if k == ">" {
				continue
			}
			if id := n.children[k].find(toks[1:]); id >= 0 {
				return id
			}
		}
	default:
		if c := n.children[tok]; c != nil {
			if id := c.find(toks[1:]); id >= 0 {
				return id
			}
		}
		if c := n.children["*"]; c != nil {
			if id := c.find(toks[1:]); id >= 0 {
				return id
			}
		}
	}
	return -1
}

// ErrReplyNotAllowed is the error of a reply subject outside the inbox
// namespace and the config's reply_subjects.
var ErrReplyNotAllowed = errors.New("reply subject not allowed")

// CheckReplySubject checks a subject a producer named in a Sluice-Reply
// header: CheckSendSubject, then within "_INBOX.>" or one of patterns (the
// config's ReplySubjects), and never in a reserved namespace other than
// "_INBOX" (see ReservedSubject). The error wraps ErrSubjectTooLong,
// ErrInvalidSubject or ErrReplyNotAllowed.
func CheckReplySubject(patterns []string, s string) error {
	if err := CheckSendSubject(s); err != nil {
		return err
	}
	if first, _, _ := strings.Cut(s, "."); first == "_INBOX" && strings.Contains(s, ".") {
		return nil
	}
	if why := ReservedSubject(s); why != "" {
		return fmt.Errorf("%w: %q: %s", ErrReplyNotAllowed, s, why)
	}
	for _, p := range patterns {
		if SubjectMatches(p, s) {
			return nil
		}
	}
	return fmt.Errorf(`%w: %q is neither an inbox ("_INBOX.>") nor one of the configured reply_subjects %q`, ErrReplyNotAllowed, s, patterns)
}

// SubjectMatches reports whether the literal subject s matches pattern
// (NATS wildcards: "*" one token, a final ">" one or more tokens).
func SubjectMatches(pattern, s string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(s, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}
