// Package render writes sluice's values for people and scripts: indented
// JSON, aligned tables, and the text views of events, outcomes, dead
// letters, bindings, nodes, functions and log lines that the CLI prints.
// One place, so that every command prints a value the same way.
package render

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
)

// JSON writes v as indented JSON.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Table writes header, then line's output per row, in aligned columns
// (cells separated by tabs).
func Table[T any](w io.Writer, header string, rows []T, line func(io.Writer, T)) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		line(tw, r)
	}
	return tw.Flush()
}

// ShortVersion is a function version's first 12 hex digits.
func ShortVersion(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

// OneLine is s on one line, cut at max bytes.
func OneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// Printable keeps a guest's line or a producer's event id from writing
// control sequences to the operator's terminal: such a string is quoted,
// with escapes.
func Printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != '\t' {
			return strconv.Quote(s)
		}
	}
	return s
}

// Published is the line of a stored event.
func Published(w io.Writer, p client.Published) {
	dup := ""
	if p.Duplicate {
		dup = " (duplicate id: already stored, not published again)"
	}
	fmt.Fprintf(w, "published %s to %s: stream %s, seq %d%s\n", p.ID, p.Subject, p.Stream, p.Seq, dup)
}

// Outcomes is the table of an event's statuses, one row per binding.
func Outcomes(w io.Writer, sts []client.Status) {
	Table(w, "BINDING\tFUNCTION\tSTATE\tATTEMPTS\tDETAIL", sts, func(w io.Writer, o client.Status) {
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
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", o.Binding, o.Function, o.State, attempts, detail)
	})
}

// DeadLetters is the table of dead letters, and their count.
func DeadLetters(w io.Writer, dls []client.DeadLetter) {
	Table(w, "BINDING\tSEQ\tEVENT\tATTEMPTS\tKIND\tLAST FAILURE\tERROR", dls, func(w io.Writer, d client.DeadLetter) {
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%s\t%s\t%s\n", d.Binding, d.Seq, d.EventID, d.Attempts, d.ErrorKind,
			d.LastFailure.Local().Format(time.DateTime), OneLine(d.Error, 80))
	})
	fmt.Fprintf(w, "%d dead letters\n", len(dls))
}

// DeadLetter is one dead letter in full: what failed, every attempt, the
// headers and the payload.
func DeadLetter(w io.Writer, d client.DeadLetter) {
	fmt.Fprintf(w, "event %s, dead letter %d of %s\n", d.EventID, d.Seq, d.Binding)
	fmt.Fprintf(w, "subject: %s\nfunction: %s (version %s)\nattempts: %d\nlast error (%s): %s\nfirst failure: %s\nlast failure: %s\n",
		d.Subject, d.Function, ShortVersion(d.Version), d.Attempts, d.ErrorKind, d.Error,
		d.FirstFailure.Local().Format(time.RFC3339), d.LastFailure.Local().Format(time.RFC3339))
	Table(w, "ATTEMPT\tAT\tKIND\tDURATION\tVERSION\tNODE\tERROR", d.History, func(w io.Writer, a client.AttemptRecord) {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Attempt, a.At.Local().Format(time.TimeOnly), a.Kind, a.Duration,
			ShortVersion(a.Version), a.Node, OneLine(a.Error, 100))
	})
	fmt.Fprintln(w, "headers:")
	for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
		if k != client.HdrHistory {
			fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(d.Headers[k], ", "))
		}
	}
	if d.Encoding != "" {
		fmt.Fprintf(w, "payload (%s):\n%s\n", d.Encoding, d.Payload)
	} else {
		fmt.Fprintf(w, "payload:\n%s\n", d.Payload)
	}
}

// BindingsHeader heads the table of Binding rows.
const BindingsHeader = "BINDING\tKIND\tSUBJECT\tFUNCTION\tPENDING\tIN FLIGHT\tRETRYING\tDEAD LETTERS\tRATE\tSTATE\tNODES (IN FLIGHT)"

// Binding is a binding's row: its backlog, work in flight per node, dead
// letters, rate and whether it is paused.
func Binding(w io.Writer, v client.Binding) {
	rate, state := "-", "running"
	if v.Rate > 0 {
		rate = fmt.Sprintf("%g/s", v.Rate)
	}
	if v.Paused {
		state = "paused for " + v.PausedFor
	}
	nodes := "?"
	if v.Nodes != nil {
		cells := []string{}
		for _, n := range v.Nodes {
			cells = append(cells, fmt.Sprintf("%s:%d", n.Node, n.InFlight))
		}
		nodes = cmp.Or(strings.Join(cells, " "), "-")
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", v.Name, v.Kind, v.Subject, v.Function,
		v.Pending, v.InFlight, v.Retrying, v.DeadLetters, rate, state, nodes)
}

// NodesHeader heads the table of Node rows.
const NodesHeader = "NODE\tURL\tUP\tLAST SEEN\tIN FLIGHT\tINVOCATIONS\tSUCCEEDED"

// Node is a node's row, its work summed over its bindings.
func Node(w io.Writer, n client.NodeState) {
	var total client.Load
	for _, l := range n.Bindings {
		total.InFlight += l.InFlight
		total.Invocations += l.Invocations
		total.Succeeded += l.Succeeded
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s ago\t%d\t%d\t%d\n", n.Name, n.URL,
		time.Since(n.Started).Round(time.Second), time.Since(n.Updated).Round(100*time.Millisecond),
		total.InFlight, total.Invocations, total.Succeeded)
}

// FunctionsHeader heads the table of Function rows.
const FunctionsHeader = "FUNCTION\tVERSION\tLIVE\tSIZE\tDEPLOYED AT\tBY\tFROM"

// Function is a function's rows, one per version, the live one starred.
func Function(w io.Writer, r client.FunctionRecord) {
	for _, v := range r.Versions {
		live := ""
		if v.Version == r.Live {
			live = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Name, ShortVersion(v.Version), live, v.Size,
			v.DeployedAt.Local().Format(time.DateTime), v.DeployedBy, v.Source)
	}
}

// LogLine is a guest's log line with where it came from.
func LogLine(w io.Writer, r client.LogRecord) error {
	_, err := fmt.Fprintf(w, "%s %s %s %s %s#%d %s %s\n", r.Time.Format("2006-01-02T15:04:05.000Z07:00"),
		Printable(r.Node), Printable(r.Function), Printable(r.Binding), Printable(r.Event), r.Attempt,
		strings.ToUpper(r.Level), Printable(r.Line))
	return err
}

// Paused says until when a binding is paused; until nil says it resumed.
func Paused(w io.Writer, binding string, until *time.Time) {
	switch {
	case until == nil:
		fmt.Fprintf(w, "resumed %s\n", binding)
	case until.After(time.Now().AddDate(50, 0, 0)):
		fmt.Fprintf(w, "paused %s until `sluice resume %s`\n", binding, binding)
	default:
		fmt.Fprintf(w, "paused %s until %s\n", binding, until.Local().Format(time.DateTime))
	}
}

// Deployed says which version of a function is live after a deploy
// (verb "deployed") or a rollback ("rolled back").
func Deployed(w io.Writer, verb string, c client.VersionChange) {
	if verb == "rolled back" {
		fmt.Fprintf(w, "rolled %s back to version %s (was %s)\n", c.Function, ShortVersion(c.Version), ShortVersion(c.Previous))
		return
	}
	fmt.Fprintf(w, "%s %s version %s (was %s)\n", verb, c.Function, ShortVersion(c.Version), ShortVersion(c.Previous))
}

// Reloaded names each node that reloaded its config.
func Reloaded(w io.Writer, nodes []client.NodeReload) {
	for _, n := range nodes {
		if n.Reloaded {
			fmt.Fprintf(w, "reloaded %s\n", n.Node)
		}
	}
}

// Replayed says what a replay did, or with a dry run would do.
func Replayed(w io.Writer, r client.ReplayReport) {
	if r.DryRun {
		fmt.Fprintf(w, "dry run: would replay %d dead letters of %s: %s\n", r.Selected, r.Binding, strings.Join(r.Events, " "))
	} else {
		fmt.Fprintf(w, "replayed %d dead letters to %s\n", r.Replayed, r.Binding)
	}
}

// Purged says how many dead letters a purge deleted.
func Purged(w io.Writer, r client.PurgeReport) {
	fmt.Fprintf(w, "purged %d dead letters of %s\n", len(r.Purged), r.Binding)
}

// Plan lists the changes a config would make, and says none was applied.
func Plan(w io.Writer, changes []config.Planned) {
	for _, c := range changes {
		fmt.Fprintln(w, c.Text)
	}
	switch n := len(changes); n {
	case 0:
		fmt.Fprintln(w, "no changes")
	case 1:
		fmt.Fprintln(w, "1 change; nothing was applied")
	default:
		fmt.Fprintf(w, "%d changes; nothing was applied\n", n)
	}
}
