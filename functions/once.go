package functions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
)

// Report is what one direct invocation did (`sluice invoke`).
type Report struct {
	Function string `json:"function"`
	Version  string `json:"version,omitempty"`
	// Outcome is "succeeded" or the Kind of the failure.
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
	// Result is the output as text, or base64 when ResultEncoding says so.
	Result         string   `json:"result,omitempty"`
	ResultEncoding string   `json:"result_encoding,omitempty"`
	Duration       string   `json:"duration"`
	Logs           []string `json:"logs"`
	// Published lists "SUBJECT DATA" of each publish: checked against the
	// function's allow list, not sent.
	Published []string `json:"published"`
}

// Succeeded reports whether the function succeeded.
func (r Report) Succeeded() bool { return r.Outcome == "succeeded" }

// InvokeOnce runs function fc once on ev, in a worker with its limits and
// without a broker, and reports its outcome, logs and publishes. A
// failure of the function is in the report; the error is for one that
// kept it from running (a module that does not load, say).
func InvokeOnce(ctx context.Context, fc config.Function, ev Event, cacheDir string) (Report, error) {
	rec := &recorder{}
	set, err := Load([]config.Function{fc}, Options{CacheDir: cacheDir, Publisher: rec, Logger: slog.New(rec)})
	if err != nil {
		return Report{}, err
	}
	defer set.Close()
	start := time.Now()
	res, err := set.Invoke(ctx, fc.Name, ev)
	r := Report{Function: fc.Name, Duration: time.Since(start).String()}
	var fe *Error
	switch {
	case err == nil:
		r.Outcome, r.Version = "succeeded", res.Version
		r.Result, r.ResultEncoding = client.TextOrBase64(res.Output)
	case errors.As(err, &fe):
		r.Outcome, r.Error, r.Version = string(fe.Kind), fe.Reason, fe.Version
	default:
		return Report{}, err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r.Logs, r.Published = slices.Clone(rec.logs), slices.Clone(rec.published)
	return r, nil
}

// recorder collects what one invocation logs and publishes.
type recorder struct {
	mu        sync.Mutex
	logs      []string
	published []string
}

func (r *recorder) Publish(_ context.Context, subject string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, subject+" "+string(data))
	return nil
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle keeps the attributes that tell a user why: the guest's source
// stream, a memory limit, a refused publish.
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "source" || a.Key == "limit_bytes" || a.Key == "subject" || a.Key == "allowed" {
			line += " " + a.String()
		}
		return true
	})
	r.logs = append(r.logs, line)
	return nil
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// Print writes the report for a person: logs, publishes, then the outcome.
func (r Report) Print(w io.Writer) {
	for _, l := range r.Logs {
		fmt.Fprintf(w, "log: %s\n", l)
	}
	for _, p := range r.Published {
		fmt.Fprintf(w, "publish (not sent): %s\n", p)
	}
	fmt.Fprintf(w, "outcome: %s in %s\n", r.Outcome, r.Duration)
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
	if r.Result != "" {
		fmt.Fprintf(w, "result: %s\n", r.Result)
	}
}
