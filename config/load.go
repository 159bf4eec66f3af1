package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Load reads and validates the file at path. Relative Module/Source/StoreDir
// paths are made absolute against the file's directory.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	defer f.Close()
	// One byte more than the limit is enough to know the file is too large.
	src, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return Parse(path, src)
}

// Parse validates src as if read from filename (used by tests and by Load).
// Relative paths resolve against filepath.Dir(filename) made absolute.
// Diagnostics name the file as filename is written. On error diagnostics
// the error is a *DiagnosticsError and the Config is nil.
func Parse(filename string, src []byte) (*Config, error) {
	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", filename, err)
	}
	path := ""
	if filename != "" {
		if path, err = filepath.Abs(filename); err != nil {
			return nil, fmt.Errorf("config %s: %w", filename, err)
		}
	}

	if diags := checkLimits(filename, src); diags.HasErrors() {
		files := map[string]*hcl.File{}
		if len(src) <= maxFileSize {
			files[filename] = &hcl.File{Bytes: src}
		}
		return nil, &DiagnosticsError{Diags: diags, Files: files}
	}

	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if file == nil || file.Body == nil {
		file = &hcl.File{Body: hcl.EmptyBody(), Bytes: src}
	}
	files := map[string]*hcl.File{filename: file}
	if syntaxErrors(diags) {
		// Decoding a body the parser could not make sense of adds only
		// confusion: report the syntax errors alone.
		return nil, newDiagnosticsError(diags, files)
	}

	d := &decoder{dir: dir, diags: diags}
	cfg := d.decodeFile(file.Body)
	cfg.Path = path
	cfg.setDefaults(dir)
	d.validate(cfg)
	if d.diags.HasErrors() {
		return nil, newDiagnosticsError(d.diags, files)
	}
	return cfg, nil
}

// syntaxErrors reports whether diags hold errors that leave the parsed body
// unreliable. A redefined attribute is not one: the parser keeps the first
// definition and the rest of the file is sound.
func syntaxErrors(diags hcl.Diagnostics) bool {
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Summary != "Attribute redefined" {
			return true
		}
	}
	return false
}

// DiagnosticsError is returned by Load/Parse when the file has errors.
// Error() renders every diagnostic like hcl.NewDiagnosticTextWriter does
// (file:line:col, the source line, summary and detail), no color, width 0
// or 100.
type DiagnosticsError struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

// newDiagnosticsError sorts diags by position, so they read in file order.
func newDiagnosticsError(diags hcl.Diagnostics, files map[string]*hcl.File) *DiagnosticsError {
	sorted := append(hcl.Diagnostics(nil), diags...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i].Subject, sorted[j].Subject
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Line != b.Start.Line:
			return a.Start.Line < b.Start.Line
		default:
			return a.Start.Column < b.Start.Column
		}
	})
	return &DiagnosticsError{Diags: sorted, Files: files}
}

// maxSnippet is the longest source line shown whole in a diagnostic;
// longer lines are shown as a window around the subject.
const maxSnippet = 120

// maxRendered is the most diagnostics Error renders; the rest are counted.
const maxRendered = 100

// Error renders every diagnostic (up to 100, then a count of the rest):
// severity and summary, the position as file:line:col with the enclosing
// block, the source lines with the subject underlined, and the detail.
//
//	Error: Unknown function
//
//	  on runtime.hcl:12:14, in queue "emails":
//	    12:   function = "smtp"
//	                     ^^^^^^
//
//	Queue "emails" names the function "smtp", which is not declared. ...
func (e *DiagnosticsError) Error() string {
	var b strings.Builder
	lines := map[string][]int{} // line start offsets, per file
	for i, d := range e.Diags {
		if i == maxRendered {
			fmt.Fprintf(&b, "\n(and %d more diagnostics)\n", len(e.Diags)-maxRendered)
			break
		}
		if i > 0 {
			b.WriteString("\n")
		}
		e.writeDiagnostic(&b, d, lines)
	}
	return strings.TrimRight(b.String(), "\n")
}

func (e *DiagnosticsError) writeDiagnostic(b *strings.Builder, d *hcl.Diagnostic, lines map[string][]int) {
	severity := "Error"
	if d.Severity == hcl.DiagWarning {
		severity = "Warning"
	}
	fmt.Fprintf(b, "%s: %s\n\n", severity, d.Summary)
	if s := d.Subject; s != nil {
		file := e.Files[s.Filename]
		context := ""
		if file != nil && file.Nav != nil {
			if nav, ok := file.Nav.(interface{ ContextString(int) string }); ok {
				if c := nav.ContextString(s.Start.Byte); c != "" {
					context = ", in " + c
				}
			}
		}
		fmt.Fprintf(b, "  on %s:%d:%d%s:\n", s.Filename, s.Start.Line, s.Start.Column, context)
		if file != nil && file.Bytes != nil {
			starts, ok := lines[s.Filename]
			if !ok {
				starts = lineStarts(file.Bytes)
				lines[s.Filename] = starts
			}
			writeSnippet(b, file.Bytes, starts, *s)
		}
		b.WriteString("\n")
	}
	if d.Detail != "" {
		b.WriteString(d.Detail)
		b.WriteString("\n")
	}
}

// lineStarts returns the byte offset of the start of every line of src.
func lineStarts(src []byte) []int {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// maxSnippetLines is the most source lines shown for one diagnostic.
const maxSnippetLines = 5

// writeSnippet writes the source lines rng covers, each with a line of
// carets under the part rng covers.
func writeSnippet(b *strings.Builder, src []byte, starts []int, rng hcl.Range) {
	first, last := rng.Start.Line, rng.End.Line
	if rng.End.Byte > rng.Start.Byte && rng.End.Column == 1 && last > first {
		last-- // a range ending at the start of a line does not cover it
	}
	if first < 1 || first > len(starts) || rng.Start.Byte < 0 || rng.End.Byte > len(src) || rng.End.Byte < rng.Start.Byte {
		return
	}
	last = min(last, len(starts), first+maxSnippetLines-1)
	for n := first; n <= last; n++ {
		lo, hi := starts[n-1], len(src)
		if n < len(starts) {
			hi = starts[n] - 1 // without the newline
		}
		if hi < lo {
			hi = lo
		}
		text := bytes.TrimRight(src[lo:hi], "\r")
		// The highlighted part of this line, in bytes of text.
		hlo, hhi := max(rng.Start.Byte-lo, 0), min(rng.End.Byte-lo, len(text))
		if hhi <= hlo {
			if rng.Empty() && n == first {
				hhi = hlo + 1 // an empty range (a missing item): one caret
			} else {
				hlo, hhi = 0, 0
			}
		}
		hlo = min(hlo, len(text))
		runes := []rune(string(text))
		// Rune offsets of the highlight.
		rlo := utf8.RuneCount(text[:hlo])
		rhi := rlo + utf8.RuneCount(text[hlo:min(hhi, len(text))])
		if hhi > len(text) {
			rhi++ // just past the end of the line
		}
		prefix, suffix := "", ""
		from, to := 0, len(runes)
		if len(runes) > maxSnippet {
			from = max(0, min(rlo-maxSnippet/4, len(runes)-maxSnippet))
			to = from + maxSnippet
			if from > 0 {
				prefix = "… "
			}
			if to < len(runes) {
				suffix = " …"
			}
		}
		fmt.Fprintf(b, "  %4d: %s%s%s\n", n, prefix, string(runes[from:to]), suffix)
		if rhi <= rlo || rlo >= to+1 {
			continue
		}
		pad := make([]rune, 0, rlo-from+2)
		for range utf8.RuneCountInString(prefix) {
			pad = append(pad, ' ')
		}
		for _, r := range runes[from:max(from, rlo)] {
			if r == '\t' {
				pad = append(pad, '\t')
			} else {
				pad = append(pad, ' ')
			}
		}
		carets := min(rhi, to+1) - max(rlo, from)
		fmt.Fprintf(b, "        %s%s\n", string(pad), strings.Repeat("^", max(carets, 1)))
	}
}

// Validation is the result of checking a config file (`sluice validate`).
type Validation struct {
	Config      string       `json:"config"`
	OK          bool         `json:"ok"`
	Functions   int          `json:"functions"`
	Bindings    int          `json:"bindings"`
	Diagnostics []Diagnostic `json:"diagnostics"`
}

// Validate loads the config file at path and sums up the result; err is
// Load's.
func Validate(path string) (Validation, error) {
	cfg, err := Load(path)
	v := Validation{Config: path, OK: err == nil, Diagnostics: Diagnostics(err)}
	if err == nil {
		v.Functions, v.Bindings = len(cfg.Functions), len(cfg.Bindings())
	}
	return v, err
}
