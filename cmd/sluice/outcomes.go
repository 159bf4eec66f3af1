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

// anyDeadLettered reports whether an outcome failed for good.
func anyDeadLettered(os []client.Status) bool {
	for _, o := range os {
		if o.State == client.StateDeadLettered {
			return true
		}
	}
	return false
}

func printOutcomes(w io.Writer, os []client.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BINDING\tFUNCTION\tSTATE\tATTEMPTS\tDETAIL")
	for _, o := range os {
		detail, encoding := client.TextOrBase64(o.Result)
		if encoding != "" {
			detail = "(binary result, base64) " + detail
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
