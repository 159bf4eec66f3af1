package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/triggers"
)

// outcome is one binding's view of an event, as printed by publish --wait
// and status (the CLI contract's JSON).
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

func outcomeOf(s triggers.Status) outcome {
	o := outcome{
		Binding: s.Binding, Function: s.Function, State: s.State, Attempts: s.Attempts,
		MaxAttempts: s.MaxAttempts, Error: s.Error, ErrorKind: s.ErrorKind,
		NextTryAt: s.NextTryAt, DeadLetter: s.DeadLetter, Version: s.Version,
	}
	o.Result, o.ResultEncoding = encodeResult(s.Result)
	return o
}

// encodeResult is a result as text, or base64 (with its encoding named)
// when it is not UTF-8.
func encodeResult(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// bindingInfo is what a stream's consumers say about their bindings.
type bindingInfo struct {
	name, function string
	maxAttempts    int
}

// streamBindings lists the bindings that consume stream, from the metadata
// sluice puts on its consumers.
func streamBindings(ctx context.Context, js jetstream.JetStream, stream string) ([]bindingInfo, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	var out []bindingInfo
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		md := ci.Config.Metadata
		if md[triggers.MetaBinding] == "" {
			continue
		}
		n, _ := strconv.Atoi(md[triggers.MetaMaxAttempts])
		out = append(out, bindingInfo{name: md[triggers.MetaBinding], function: md[triggers.MetaFunction], maxAttempts: n})
	}
	if err := lister.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// currentStatuses returns every recorded status of event id.
func currentStatuses(ctx context.Context, js jetstream.JetStream, id string) (map[string]triggers.Status, error) {
	st, err := triggers.NewStatusStore(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("status bucket: %w (is this a sluice server?)", err)
	}
	w, err := st.Watch(ctx, id)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	out := map[string]triggers.Status{}
	for e := range w.Updates() {
		if e == nil {
			break
		}
		if s, ok := decodeStatus(e); ok && s.ID == id {
			out[s.Binding] = s
		}
	}
	return out, nil
}

func decodeStatus(e jetstream.KeyValueEntry) (triggers.Status, bool) {
	if e.Operation() != jetstream.KeyValuePut {
		return triggers.Status{}, false
	}
	var s triggers.Status
	return s, json.Unmarshal(e.Value(), &s) == nil
}

// anyDeadLettered reports whether an outcome failed for good.
func anyDeadLettered(os []outcome) bool {
	for _, o := range os {
		if o.State == triggers.StateDeadLettered {
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
		case triggers.StateDeadLettered:
			detail = fmt.Sprintf("%s: %s (dead letter on %s)", o.ErrorKind, o.Error, o.DeadLetter)
		case triggers.StateRetrying:
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

var errTimeout = errors.New("timed out")
