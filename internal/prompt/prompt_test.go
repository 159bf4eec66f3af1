package prompt_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/internal/prompt"
)

// TestConfirmWithoutTerminalRefuses: input that is not a terminal (a pipe,
// a script's heredoc) is never read as an answer, even "yes": Confirm
// asks nothing and refuses.
func TestConfirmWithoutTerminalRefuses(t *testing.T) {
	var out bytes.Buffer
	if err := prompt.Confirm(strings.NewReader("yes\n"), &out, "Delete?"); !errors.Is(err, prompt.ErrNoTerminal) {
		t.Errorf("Confirm from a non-terminal: %v, want ErrNoTerminal", err)
	}
	if out.Len() != 0 {
		t.Errorf("asked %q without a terminal", out.String())
	}
}
