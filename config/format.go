package config

import (
	"bytes"
	"fmt"
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
