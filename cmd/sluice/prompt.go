package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// errNoTerminal refuses a destructive command that would ask, when no one
// can answer.
var errNoTerminal = errors.New("standard input is not a terminal, so there is no one to confirm: pass --yes")

// confirm asks question on stderr and reads the answer from in; only "y"
// or "yes" goes on. Without a terminal on in it refuses (exit 2), so that a
// script never deletes by accident.
func confirm(cmd *cobra.Command, in io.Reader, question string) error {
	if !isTerminal(in) {
		return usage(errNoTerminal)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	answer, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return failed(fmt.Errorf("read the answer: %w", err))
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return failed(errors.New("not confirmed; nothing was deleted"))
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
