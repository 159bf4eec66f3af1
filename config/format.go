package config

import (
	"bytes"
	"unicode/utf8"

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
