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
