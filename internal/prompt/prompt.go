// Package prompt asks a person at a terminal to confirm, and refuses to
// guess when there is no one there.
package prompt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

var (
	// ErrNoTerminal: in is not a terminal, so no one can answer.
	ErrNoTerminal = errors.New("standard input is not a terminal, so there is no one to confirm: pass --yes")
	// ErrNotConfirmed: the answer was not yes.
	ErrNotConfirmed = errors.New("not confirmed; nothing was deleted")
)

// Confirm writes question to out and reads the answer from in: only "y"
// or "yes" (any case) confirms. Without a terminal on in it asks nothing
// and returns ErrNoTerminal, so that a script never deletes by accident.
func Confirm(in io.Reader, out io.Writer, question string) error {
	if !isTerminal(in) {
		return ErrNoTerminal
	}
	fmt.Fprintf(out, "%s [y/N] ", question)
	answer, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return ErrNotConfirmed
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
