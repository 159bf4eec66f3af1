package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/sluice-run/sluice/client"
)

// outcome is one binding's view of an event, as printed by publish --wait
// and status (the CLI contract's JSON): a client.Status with its result
// as text, or base64 when it is not UTF-8.
type outcome struct {
	Binding        string     `json:"binding"`
	Function       string     `json:"function"`
	State          string     `json:"state"`
	Attempts       int        `json:"attempts"`
	MaxAttempts    int        `json:"max_attempts,omitempty"`
	Error          string     `json:"error,omitempty"`
	ErrorKind      string     `json:"error_kind,omitempty"`
	Result         string     `json:"result,omitempty"`
	ResultEncoding string     `json:"result_encoding,omitempty"`
	NextTryAt      *time.Time `json:"next_try_at,omitempty"`
	DeadLetter     string     `json:"dead_letter,omitempty"`
	Version        string     `json:"version,omitempty"`
}

func outcomeOf(s client.Status) outcome {
	o := outcome{
		Binding: s.Binding, Function: s.Function, State: s.State, Attempts: s.Attempts,
		MaxAttempts: s.MaxAttempts, Error: s.Error, ErrorKind: s.ErrorKind,
		NextTryAt: s.NextTryAt, DeadLetter: s.DeadLetter, Version: s.Version,
	}
	o.Result, o.ResultEncoding = client.TextOrBase64(s.Result)
	return o
}

// anyDeadLettered reports whether an outcome failed for good.
func anyDeadLettered(os []outcome) bool {
	for _, o := range os {
		if o.State == client.StateDeadLettered {
			return true
		}
	}
	return false
}

func printOutcomes(w io.Writer, os []outcome) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BINDING\tFUNCTION\tSTATE\tATTEMPTS\tDETAIL")
	for _, o := range os {
		detail := o.Result
		if o.ResultEncoding != "" {
			detail = "(binary result, base64) " + o.Result
		}
		switch o.State {
		case client.StateDeadLettered:
			detail = fmt.Sprintf("%s: %s (dead letter on %s)", o.ErrorKind, o.Error, o.DeadLetter)
		case client.StateRetrying:
			detail = fmt.Sprintf("%s: %s; next try %s", o.ErrorKind, o.Error, o.NextTryAt.Local().Format(time.TimeOnly))
		}
		attempts := strconv.Itoa(o.Attempts)
		if o.MaxAttempts > 0 {
			attempts += "/" + strconv.Itoa(o.MaxAttempts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.Binding, o.Function, o.State, attempts, detail)
	}
	tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
