package config

import (
	"errors"

	"github.com/hashicorp/hcl/v2"
)

// Diagnostic is one problem of a config file, where it is, in the form
// tools read (`sluice validate --json`).
type Diagnostic struct {
	Severity string `json:"severity"` // "error" or "warning"
	Summary  string `json:"summary"`
	Detail   string `json:"detail"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
}

// Diagnostics lists the problems of a Load error: each HCL diagnostic of a
// DiagnosticsError with its position, or the error itself.
func Diagnostics(err error) []Diagnostic {
	out := []Diagnostic{}
	var derr *DiagnosticsError
	switch {
	case err == nil:
	case errors.As(err, &derr):
		for _, d := range derr.Diags {
			jd := Diagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
			if d.Severity == hcl.DiagWarning {
				jd.Severity = "warning"
			}
			if d.Subject != nil {
				jd.File, jd.Line, jd.Column = d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column
			}
			out = append(out, jd)
		}
	default:
		out = append(out, Diagnostic{Severity: "error", Summary: err.Error()})
	}
	return out
}
