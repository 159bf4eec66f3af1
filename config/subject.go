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

// reservedSubject reports why s may not be consumed by a queue or topic, or
// "" when it may: subjects starting with "$" (the server's own, like
// $JS.API), "_INBOX" (replies) and "sluice" (sluice's own) are reserved.
func reservedSubject(s string) string {
	first, _, _ := strings.Cut(s, ".")
	switch {
	case strings.HasPrefix(first, "$"):
		return `subjects starting with "$" belong to the NATS server`
	case first == "_INBOX":
		return `subjects starting with "_INBOX" are reply subjects`
	case first == "sluice":
		return `subjects starting with "sluice." are reserved for sluice itself`
	}
	return ""
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
