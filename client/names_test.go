package client

import (
	"strings"
	"testing"
)

// TestStatusPrefix: an id of 1 to 128 characters from [A-Za-z0-9_=-] is
// its own key token; any other (empty, too long, a dot, a wildcard,
// a space, non-ASCII) is hashed to "h" and 32 hex digits.
func TestStatusPrefix(t *testing.T) {
	for _, id := range []string{"a", "Z9_=-", "01HZX3Q8V0J5", strings.Repeat("x", 128)} {
		if got := StatusPrefix(id); got != id {
			t.Errorf("StatusPrefix(%q) = %q, want the id itself", id, got)
		}
	}
	for _, id := range []string{"", strings.Repeat("x", 129), "a.b", "a*", "a>", "a b", "é", "a/b", "a\x00"} {
		got := StatusPrefix(id)
		if len(got) != 33 || got[0] != 'h' || strings.Trim(got[1:], "0123456789abcdef") != "" {
			t.Errorf("StatusPrefix(%q) = %q, want h and 32 hex digits", id, got)
		}
	}
	if StatusPrefix("a.b") == StatusPrefix("a b") {
		t.Error("two ids hashed to one prefix")
	}
}
