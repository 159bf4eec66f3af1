package config

import (
	"bytes"
	"fmt"
	"os"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns the canonical formatting of an HCL file, for `sluice fmt`
// (hclwrite's layout; only whitespace changes). src that is not UTF-8 is
// returned unchanged.
func Format(src []byte) []byte {
	if !utf8.Valid(src) {
		return bytes.Clone(src)
	}
	return hclwrite.Format(src)
}

// CheckSyntax reports the syntax errors of an HCL file as a
// *DiagnosticsError, or nil: `sluice fmt` refuses to rewrite a file it
// cannot parse, since hclwrite would reflow it into something else.
func CheckSyntax(filename string, src []byte) error {
	if !utf8.Valid(src) {
		return fmt.Errorf("%s: not UTF-8 text", filename)
	}
	// The limits first: deep nesting can crash the parser.
	if diags := checkLimits(filename, src); diags.HasErrors() {
		files := map[string]*hcl.File{}
		if len(src) <= maxFileSize {
			files[filename] = &hcl.File{Bytes: src}
		}
		return newDiagnosticsError(diags, files)
	}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		files := map[string]*hcl.File{}
		if file != nil {
			files[filename] = file
		}
		return newDiagnosticsError(diags, files)
	}
	return nil
}

// FormatFile formats the config file at path and reports whether that
// changes it; with write it rewrites the file (same mode) when it does. A
// file with syntax errors is an error and never reformatted: the parser
// cannot read it, so a reflow would make it into something else.
func FormatFile(path string, write bool) (formatted []byte, changed bool, err error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	if err := CheckSyntax(path, src); err != nil {
		return nil, false, err
	}
	formatted = Format(src)
	changed = !bytes.Equal(src, formatted)
	if write && changed {
		info, err := os.Stat(path)
		if err != nil {
			return nil, false, err
		}
		return formatted, true, os.WriteFile(path, formatted, info.Mode())
	}
	return formatted, changed, nil
}
