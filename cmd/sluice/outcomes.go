package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/sluice-run/sluice/runtime"
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

// requestStatuses asks the runtime's status API (runtime.StatusSubject)
// for an event's statuses, asking again binding by binding for the
// results left out of a large answer.
func requestStatuses(ctx context.Context, nc *nats.Conn, req runtime.StatusRequest) ([]triggers.Status, error) {
	rep, err := statusCall(ctx, nc, req)
	if err != nil {
		return nil, err
	}
	for _, b := range rep.Omitted {
		one := req
		one.Binding = b
		full, err := statusCall(ctx, nc, one)
		if err != nil {
			return nil, err
		}
		for _, s := range full.Statuses {
			for i := range rep.Statuses {
				if rep.Statuses[i].Binding == s.Binding {
					rep.Statuses[i] = s
				}
			}
		}
	}
	return rep.Statuses, nil
}

func statusCall(ctx context.Context, nc *nats.Conn, req runtime.StatusRequest) (runtime.StatusReply, error) {
	var rep runtime.StatusReply
	body, err := json.Marshal(req)
	if err != nil {
		return rep, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, runtime.StatusSubject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return rep, fmt.Errorf("no runtime answers status requests on %s (is `sluice run` running?)", runtime.StatusSubject)
	case err != nil:
		return rep, fmt.Errorf("status of %s: %w", req.ID, err)
	}
	if e := m.Header.Get(micro.ErrorHeader); e != "" {
		return rep, fmt.Errorf("status of %s: %s", req.ID, e)
	}
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return rep, fmt.Errorf("status of %s: bad answer: %w", req.ID, err)
	}
	return rep, nil
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
