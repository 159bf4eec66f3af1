package config

import (
	"bytes"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Format returns the canonical formatting of an HCL file, for `sluice fmt`:
// the layout of hclwrite.Format (two-space indents by bracket depth, one
// space between most tokens, '=' and trailing comments aligned across
// consecutive lines). Only whitespace changes. It works on tokens, so a file
// with syntax errors is formatted as well as it can be.
//
// It follows hclwrite.Format's rules rather than calling it because the
// hclwrite package pulls in a module (go-cmp) that sluice does not otherwise
// need.
func Format(src []byte) []byte {
	native, _ := hclsyntax.LexConfig(src, "", hcl.InitialPos)
	toks := make([]*fmtToken, len(native))
	last := 0
	for i, t := range native {
		toks[i] = &fmtToken{typ: t.Type, bytes: t.Bytes, spaces: t.Range.Start.Byte - last}
		last = t.Range.End.Byte
	}
	lines := formatLines(toks)
	formatIndent(lines)
	formatSpaces(lines)
	formatAlign(lines)
	var buf bytes.Buffer
	for _, t := range toks {
		for range t.spaces {
			buf.WriteByte(' ')
		}
		buf.Write(t.bytes)
	}
	return buf.Bytes()
}

// fmtToken is a token and the number of spaces written before it.
type fmtToken struct {
	typ    hclsyntax.TokenType
	bytes  []byte
	spaces int
}

type fmtTokens []*fmtToken

// columns is the width of ts on one line, in characters.
func (ts fmtTokens) columns() int {
	n := 0
	for _, t := range ts {
		n += t.spaces + utf8.RuneCount(t.bytes)
	}
	return n
}

// fmtLine is one source line in up to three cells: lead (everything up to
// the others), assign (from the '=' of an attribute whose value ends on
// this line) and comment (a trailing single-line comment). Assign and
// comment cells line up across consecutive lines.
type fmtLine struct {
	lead, assign, comment fmtTokens
}

func isNewline(t *fmtToken) bool {
	// Single-line comments include their newline.
	return t.typ == hclsyntax.TokenNewline ||
		t.typ == hclsyntax.TokenComment && len(t.bytes) > 0 && t.bytes[len(t.bytes)-1] == '\n'
}

func bracketChange(t *fmtToken) int {
	switch t.typ {
	case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
		hclsyntax.TokenTemplateControl, hclsyntax.TokenTemplateInterp:
		return 1
	case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen, hclsyntax.TokenTemplateSeqEnd:
		return -1
	}
	return 0
}

func formatLines(toks fmtTokens) []fmtLine {
	var lines []fmtLine
	start := 0
	for i, t := range toks {
		if t.typ == hclsyntax.TokenEOF {
			lines = append(lines, fmtLine{lead: toks[start:i]})
			start = len(toks)
			break
		}
		if isNewline(t) {
			lines = append(lines, fmtLine{lead: toks[start : i+1]})
			start = i + 1
		}
	}
	if start < len(toks) {
		lines = append(lines, fmtLine{lead: toks[start:]})
	}
	for i := range lines {
		l := &lines[i]
		if len(l.lead) > 1 && l.lead[len(l.lead)-1].typ == hclsyntax.TokenComment {
			l.comment = l.lead[len(l.lead)-1:]
			l.lead = l.lead[:len(l.lead)-1]
		}
		for j, t := range l.lead {
			if j == 0 || t.typ != hclsyntax.TokenEqual {
				continue
			}
			// Only a value that closes on this line forms an assign cell.
			net := 0
			for _, u := range l.lead[j:] {
				net += bracketChange(u)
			}
			if net == 0 {
				l.assign, l.lead = l.lead[j:], l.lead[:j]
			}
			break
		}
	}
	return lines
}

// formatIndent indents each line by two spaces per open bracket level. A
// line that opens several brackets adds one level, and closing them all
// takes that level away again.
func formatIndent(lines []fmtLine) {
	var levels []int // brackets opened by each indent level
	for i := range lines {
		l := &lines[i]
		if len(l.lead) == 0 {
			continue
		}
		if l.lead[0].typ == hclsyntax.TokenNewline {
			l.lead[0].spaces = 0
			continue
		}
		net := 0
		for _, t := range l.lead {
			net += bracketChange(t)
			if t.typ == hclsyntax.TokenOHeredoc {
				break
			}
		}
		for _, t := range l.assign {
			net += bracketChange(t)
		}
		switch {
		case net > 0:
			l.lead[0].spaces = 2 * len(levels)
			levels = append(levels, net)
		case net < 0:
			for closed := -net; closed > 0 && len(levels) > 0; {
				top := &levels[len(levels)-1]
				if closed < *top {
					*top -= closed
					break
				}
				closed -= *top
				levels = levels[:len(levels)-1]
			}
			l.lead[0].spaces = 2 * len(levels)
		default:
			l.lead[0].spaces = 2 * len(levels)
		}
	}
}

// formatSpaces sets the spaces between the tokens of each cell.
func formatSpaces(lines []fmtLine) {
	none := &fmtToken{typ: hclsyntax.TokenNil}
	cell := func(ts fmtTokens) {
		for i := 0; i+1 < len(ts); i++ {
			before := none
			if i > 0 {
				before = ts[i-1]
			}
			if spaceAfter(ts[i], before, ts[i+1]) {
				ts[i+1].spaces = 1
			} else {
				ts[i+1].spaces = 0
			}
		}
	}
	for _, l := range lines {
		cell(l.lead)
		if len(l.assign) > 0 {
			l.assign[0].spaces = 1
		}
		cell(l.assign)
	}
}

// formatAlign lines up the '=' of consecutive attribute lines, then the
// trailing comments of consecutive commented lines.
func formatAlign(lines []fmtLine) {
	align := func(has func(fmtLine) bool, width func(fmtLine) int, first func(fmtLine) *fmtToken) {
		start, widest := -1, 0
		flush := func(end int) {
			for _, l := range lines[start:end] {
				first(l).spaces = widest - width(l) + 1
			}
			start, widest = -1, 0
		}
		for i, l := range lines {
			if !has(l) {
				if start >= 0 {
					flush(i)
				}
				continue
			}
			if start < 0 {
				start = i
			}
			widest = max(widest, width(l))
		}
		if start >= 0 {
			flush(len(lines))
		}
	}
	align(func(l fmtLine) bool { return l.assign != nil },
		func(l fmtLine) int { return l.lead.columns() },
		func(l fmtLine) *fmtToken { return l.assign[0] })
	align(func(l fmtLine) bool { return l.comment != nil },
		func(l fmtLine) int { return l.lead.columns() + l.assign.columns() },
		func(l fmtLine) *fmtToken { return l.comment[0] })
}

// spaceAfter decides whether tok is followed by a space, given the tokens
// before and after it (before is TokenNil at the start of a cell).
func spaceAfter(tok, before, after *fmtToken) bool {
	switch {
	case after.typ == hclsyntax.TokenNewline || after.typ == hclsyntax.TokenNil:
		return false
	case tok.typ == hclsyntax.TokenIdent && after.typ == hclsyntax.TokenOParen:
		return false // a function call
	case tok.typ == hclsyntax.TokenIdent && after.typ == hclsyntax.TokenDoubleColon,
		tok.typ == hclsyntax.TokenDoubleColon && after.typ == hclsyntax.TokenIdent:
		return false // a namespaced function name
	case tok.typ == hclsyntax.TokenDot || after.typ == hclsyntax.TokenDot:
		return false // attribute access
	case after.typ == hclsyntax.TokenComma || after.typ == hclsyntax.TokenEllipsis:
		return false
	case tok.typ == hclsyntax.TokenComma:
		return true
	case tok.typ == hclsyntax.TokenQuotedLit, tok.typ == hclsyntax.TokenStringLit,
		tok.typ == hclsyntax.TokenOQuote, tok.typ == hclsyntax.TokenOHeredoc,
		after.typ == hclsyntax.TokenQuotedLit, after.typ == hclsyntax.TokenStringLit,
		after.typ == hclsyntax.TokenCQuote, after.typ == hclsyntax.TokenCHeredoc:
		return false // inside a template
	case tok.typ == hclsyntax.TokenIdent && string(tok.bytes) == "in" && before.typ == hclsyntax.TokenIdent:
		return true // the "in" of a for expression: [for x in [a]: x]
	case after.typ == hclsyntax.TokenOBrack &&
		(tok.typ == hclsyntax.TokenIdent || tok.typ == hclsyntax.TokenNumberLit || bracketChange(tok) < 0):
		return false // an index
	case tok.typ == hclsyntax.TokenBang:
		return false
	case tok.typ == hclsyntax.TokenMinus:
		// A negation when what comes before cannot end an operand.
		switch before.typ {
		case hclsyntax.TokenNil,
			hclsyntax.TokenOParen, hclsyntax.TokenOBrace, hclsyntax.TokenOBrack,
			hclsyntax.TokenEqual, hclsyntax.TokenColon, hclsyntax.TokenComma, hclsyntax.TokenQuestion,
			hclsyntax.TokenPlus, hclsyntax.TokenStar, hclsyntax.TokenSlash, hclsyntax.TokenPercent, hclsyntax.TokenMinus,
			hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual, hclsyntax.TokenGreaterThan,
			hclsyntax.TokenGreaterThanEq, hclsyntax.TokenLessThan, hclsyntax.TokenLessThanEq,
			hclsyntax.TokenAnd, hclsyntax.TokenOr, hclsyntax.TokenBang:
			return false
		}
		return true
	case tok.typ == hclsyntax.TokenOBrace || after.typ == hclsyntax.TokenCBrace:
		// Braces are spaced on both sides, except an empty pair: {}.
		return !(tok.typ == hclsyntax.TokenOBrace && after.typ == hclsyntax.TokenCBrace)
	case (tok.typ == hclsyntax.TokenTemplateInterp || tok.typ == hclsyntax.TokenTemplateControl) &&
		after.typ == hclsyntax.TokenOBrace:
		return true
	case tok.typ == hclsyntax.TokenCBrace && after.typ == hclsyntax.TokenTemplateSeqEnd:
		return true
	case tok.typ == hclsyntax.TokenTemplateSeqEnd &&
		(after.typ == hclsyntax.TokenTemplateInterp || after.typ == hclsyntax.TokenTemplateControl):
		return false
	case bracketChange(tok) > 0:
		return false
	case bracketChange(after) < 0:
		return false
	}
	return true
}
