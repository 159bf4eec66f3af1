package triggers_test

import (
	"strings"
	"testing"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/triggers"
)

// TestDeadLetterSubjectFits: the subject of any event's dead letter, below
// the longest dead_letter subject the config accepts, is one the runtime
// sends to, and one token below the dead_letter subject (what its stream
// captures).
func TestDeadLetterSubjectFits(t *testing.T) {
	longest := strings.Repeat("d", config.MaxDeadLetterLen)
	for _, dl := range []string{"dlq.emails", longest} {
		for _, id := range []string{"card-1", strings.Repeat("i", 128), "with spaces.and.dots", strings.Repeat("x.", 5000)} {
			s := triggers.DeadLetterSubject(dl, id)
			token, ok := strings.CutPrefix(s, dl+".")
			if err := config.CheckSendSubject(s); err != nil || !ok || token == "" || strings.Contains(token, ".") {
				t.Errorf("dead letter of %.20q below %.20q: %.40q (%v), want a valid subject one token below", id, dl, s, err)
			}
		}
	}
	if triggers.DeadLetterSubject("dlq", "a b") == triggers.DeadLetterSubject("dlq", "a c") {
		t.Error("two ids outside the plain alphabet share a dead-letter subject")
	}
}
