package config

import (
	"bufio"
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

// maxSnippet is the longest source line shown whole in a diagnostic.
const maxSnippet = 160

// Error renders every diagnostic: severity and summary, the position as
// file:line:col with the enclosing block, the source lines with the subject
// underlined, and the detail.
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
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteString("\n")
		}
		e.writeDiagnostic(&b, d)
	}
	return strings.TrimRight(b.String(), "\n")
}

func (e *DiagnosticsError) writeDiagnostic(b *strings.Builder, d *hcl.Diagnostic) {
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
			writeSnippet(b, file.Bytes, *s)
		}
		b.WriteString("\n")
	}
	if d.Detail != "" {
		b.WriteString(d.Detail)
		b.WriteString("\n")
	}
}

// writeSnippet writes the source lines of rng, each with a line of carets
// under the part rng covers.
func writeSnippet(b *strings.Builder, src []byte, rng hcl.Range) {
	if rng.Empty() {
		// Show an empty range (such as a missing item) as one character.
		rng.End.Byte++
		rng.End.Column++
	}
	sc := hcl.NewRangeScanner(src, rng.Filename, bufio.ScanLines)
	for sc.Scan() {
		line := sc.Range()
		if !line.Overlaps(rng) {
			continue
		}
		before, hl, _ := line.PartitionAround(rng)
		text := sc.Bytes()
		fmt.Fprintf(b, "  %4d: ", line.Start.Line)
		if utf8.RuneCount(text) > maxSnippet {
			b.WriteString(truncate(text, maxSnippet))
			b.WriteString("\n")
			continue
		}
		b.Write(text)
		b.WriteString("\n")
		if hl.Empty() {
			continue
		}
		pad := bytes.Map(func(r rune) rune {
			if r == '\t' {
				return '\t'
			}
			return ' '
		}, before.SliceBytes(src))
		n := utf8.RuneCount(hl.SliceBytes(src))
		if n == 0 {
			n = 1
		}
		fmt.Fprintf(b, "        %s%s\n", pad, strings.Repeat("^", n))
	}
}

// truncate cuts text to n characters and marks the cut.
func truncate(text []byte, n int) string {
	i := 0
	for ; n > 0 && i < len(text); n-- {
		_, size := utf8.DecodeRune(text[i:])
		i += size
	}
	return string(text[:i]) + " …"
}
