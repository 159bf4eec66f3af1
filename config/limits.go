package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
)

// Limits checked before the HCL parser sees a file: the parser and the
// evaluator recurse once per level of nesting, and deep enough input crashes
// them (hcl issue #809).
const (
	// maxFileSize is the largest config file accepted, in bytes.
	maxFileSize = 1 << 20
	// maxNesting is the deepest nesting accepted: brackets, braces,
	// parentheses, template interpolations and directives, runs of unary
	// operators, chains of conditionals and splats all count.
	maxNesting = 32
	// maxOperators is the most operators one expression may chain: the
	// parser builds a chain like 1+1+1 as a tree as deep as it is long.
	maxOperators = 256
)

// checkLimits reports a file that is too large, nested too deeply or with
// too long a chain of operators, before parsing. The nesting scan is lexical and approximate (it follows strings,
// heredocs, templates and comments well enough for any real file), and errs
// on the side of counting too much.
func checkLimits(filename string, src []byte) hcl.Diagnostics {
	if len(src) > maxFileSize {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "config file too large",
			Detail:   fmt.Sprintf("A config file may be at most %d bytes (1 MiB).", maxFileSize),
			Subject:  &hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos},
		}}
	}
	s := &nestScanner{src: src, pos: hcl.InitialPos}
	if p, ok := s.scan(); !ok && s.tooComplex {
		end := p
		end.Byte++
		end.Column++
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "config expression too complex",
			Detail:   fmt.Sprintf("An expression may combine at most %d operators.", maxOperators),
			Subject:  &hcl.Range{Filename: filename, Start: p, End: end},
		}}
	} else if !ok {
		end := p
		end.Byte++
		end.Column++
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "config nested too deeply",
			Detail:   fmt.Sprintf("Blocks, lists, objects, parentheses, templates, unary operators, conditionals and splats may nest at most %d levels deep.", maxNesting),
			Subject:  &hcl.Range{Filename: filename, Start: p, End: end},
		}}
	}
	return nil
}

// frame kinds of the nesting scanner.
const (
	frameBracket = iota // { [ ( in code
	frameInterp         // ${ or %{ in a template: code until the matching }
	frameQuote          // "..."
	frameHeredoc        // <<EOF ... EOF
)

type frame struct {
	kind int
	// chain counts the conditionals and splats in the current expression
	// of a code frame: a ? b : c ? d : e and a[*][*] nest in the parser.
	chain int
	// operators counts the operators in the current expression.
	operators int
	open      byte   // the opening bracket of a bracket frame
	term      string // heredoc terminator
}

type nestScanner struct {
	src    []byte
	pos    hcl.Pos // of src[pos.Byte]
	stack  []frame
	top    frame // the top level: code
	depth  int   // frames that count (brackets and interpolations)
	unary  int   // length of the current run of unary operators
	direct int   // open template if/for directives
	ident  bool  // inside an identifier, where '-' is a letter
	prev   byte  // the last code character that is not a space
	// tooComplex says the scan stopped at too many operators, not at
	// too deep a nesting.
	tooComplex bool
}

// scan returns the position where nesting first exceeds maxNesting, or an
// expression maxOperators (then tooComplex is set), and false; or true when
// neither happens.
func (s *nestScanner) scan() (hcl.Pos, bool) {
	lineStart := true
	for s.pos.Byte < len(s.src) {
		c := s.src[s.pos.Byte]
		f := s.cur()
		switch f.kind {
		case frameQuote:
			switch {
			case c == '\n':
				s.pop() // unterminated: the parser reports it
			case c == '\\':
				s.advance(1)
			case c == '"':
				s.pop()
			default:
				if n, open := s.templateOpen(); n > 0 {
					if open && !s.push(frame{kind: frameInterp}) {
						return s.pos, false
					}
					if open && !s.directive() {
						return s.pos, false
					}
					s.advance(n)
					continue
				}
			}
		case frameHeredoc:
			if lineStart && s.heredocEnds(f.term) {
				s.pop()
				continue
			}
			if n, open := s.templateOpen(); n > 0 {
				if open && !s.push(frame{kind: frameInterp}) {
					return s.pos, false
				}
				if open && !s.directive() {
					return s.pos, false
				}
				s.advance(n)
				lineStart = false
				continue
			}
		default: // code: top level, brackets, interpolations
			if n := s.comment(); n > 0 {
				s.advance(n)
				continue
			}
			wasIdent := s.ident
			s.ident = c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 ||
				wasIdent && (c == '-' || c >= '0' && c <= '9')
			if s.ident || c != ' ' && c != '\t' && c != '\r' && c != '!' && c != '-' {
				s.unary = 0
			}
			switch {
			case s.ident:
			case c == '{', c == '[', c == '(':
				if !s.push(frame{kind: frameBracket, open: c}) {
					return s.pos, false
				}
			case c == '}', c == ']', c == ')':
				if len(s.stack) > 0 {
					s.pop()
				}
			case c == '"':
				s.stack = append(s.stack, frame{kind: frameQuote})
			case c == '!', c == '-':
				f.operators++
				if f.operators > maxOperators {
					s.tooComplex = true
					return s.pos, false
				}
				s.unary++
				if s.depth+s.unary+s.direct+f.chain > maxNesting {
					return s.pos, false
				}
			case c == '?':
				f.operators++
				f.chain++
				if s.depth+s.direct+f.chain > maxNesting {
					return s.pos, false
				}
			case c == '*' && (s.prev == '[' || s.prev == '.'):
				// A splat, [*] or .*, counts in the expression around it.
				g := f
				if s.prev == '[' && len(s.stack) > 0 {
					g = &s.top
					if len(s.stack) > 1 {
						g = &s.stack[len(s.stack)-2]
					}
				}
				g.chain++
				if s.depth+s.direct+g.chain > maxNesting {
					return s.pos, false
				}
			case c == '<' && s.heredocAhead():
				term, n := s.heredocStart()
				s.stack = append(s.stack, frame{kind: frameHeredoc, term: term})
				s.advance(n)
				lineStart = true
				continue
			case c == '+', c == '/', c == '%', c == '<', c == '>', c == '*',
				c == '=' && s.next() == '=',
				c == '&' && s.next() != '&', c == '|' && s.next() != '|':
				f.operators++
				if f.operators > maxOperators {
					s.tooComplex = true
					return s.pos, false
				}
			case c == ',':
				f.chain, f.operators = 0, 0
			case c == '\n':
				// Newlines end an expression in a body or an object, not
				// in a list or parentheses.
				if f.kind != frameBracket || f.open == '{' {
					f.chain, f.operators = 0, 0
				}
			}
		}
		if f.kind != frameQuote && f.kind != frameHeredoc && c != ' ' && c != '\t' && c != '\r' {
			s.prev = c
		}
		lineStart = c == '\n'
		s.advance(1)
	}
	return s.pos, true
}

// cur returns the innermost frame, the top level when none is open.
func (s *nestScanner) cur() *frame {
	if len(s.stack) == 0 {
		return &s.top
	}
	return &s.stack[len(s.stack)-1]
}

func (s *nestScanner) push(f frame) bool {
	s.depth++
	if s.depth+s.direct > maxNesting {
		return false
	}
	s.stack = append(s.stack, f)
	return true
}

func (s *nestScanner) pop() {
	f := s.stack[len(s.stack)-1]
	s.stack = s.stack[:len(s.stack)-1]
	if f.kind == frameBracket || f.kind == frameInterp {
		s.depth--
	}
}

// advance moves n bytes forward, keeping line and column (in characters).
func (s *nestScanner) advance(n int) {
	for ; n > 0 && s.pos.Byte < len(s.src); n-- {
		c := s.src[s.pos.Byte]
		s.pos.Byte++
		switch {
		case c == '\n':
			s.pos.Line++
			s.pos.Column = 1
		case c&0xC0 != 0x80: // not a UTF-8 continuation byte
			s.pos.Column++
		}
	}
}

// next returns the byte after the current one, or 0.
func (s *nestScanner) next() byte {
	if s.pos.Byte+1 < len(s.src) {
		return s.src[s.pos.Byte+1]
	}
	return 0
}

// rest returns the source from the current position.
func (s *nestScanner) rest() []byte { return s.src[s.pos.Byte:] }

// comment returns the length of the comment starting here, or 0.
func (s *nestScanner) comment() int {
	r := s.rest()
	switch {
	case len(r) > 0 && r[0] == '#', len(r) > 1 && r[0] == '/' && r[1] == '/':
		n := 0
		for n < len(r) && r[n] != '\n' {
			n++
		}
		return n
	case len(r) > 1 && r[0] == '/' && r[1] == '*':
		for n := 2; n+1 < len(r); n++ {
			if r[n] == '*' && r[n+1] == '/' {
				return n + 2
			}
		}
		return len(r)
	}
	return 0
}

// templateOpen returns the length of a template sequence starting here ($${
// and %%{ escapes, ${ and %{ openings) and whether it opens an
// interpolation; 0 when there is none.
func (s *nestScanner) templateOpen() (int, bool) {
	r := s.rest()
	if len(r) >= 3 && (r[0] == '$' || r[0] == '%') && r[1] == r[0] && r[2] == '{' {
		return 3, false
	}
	if len(r) >= 2 && (r[0] == '$' || r[0] == '%') && r[1] == '{' {
		return 2, true
	}
	return 0, false
}

// directive counts a template "if" or "for" directive opening here (at %{)
// as a level, and an "endif" or "endfor" as closing one; false when the
// count exceeds the limit.
func (s *nestScanner) directive() bool {
	r := s.rest()
	if len(r) < 2 || r[0] != '%' {
		return true
	}
	i := 2
	for i < len(r) && (r[i] == '~' || r[i] == ' ' || r[i] == '\t') {
		i++
	}
	word := i
	for word < len(r) && r[word] >= 'a' && r[word] <= 'z' {
		word++
	}
	switch string(r[i:word]) {
	case "if", "for":
		s.direct++
		return s.depth+s.direct <= maxNesting
	case "endif", "endfor":
		if s.direct > 0 {
			s.direct--
		}
	}
	return true
}

// heredocStart returns the terminator and length of a heredoc introducer
// (<<EOF or <<-EOF and the newline) starting here, or 0.
func (s *nestScanner) heredocStart() (string, int) {
	r := s.rest()
	if len(r) < 3 || r[0] != '<' || r[1] != '<' {
		return "", 0
	}
	i := 2
	if r[i] == '-' {
		i++
	}
	start := i
	for i < len(r) && (r[i] == '_' || r[i] == '-' || r[i] >= 'a' && r[i] <= 'z' || r[i] >= 'A' && r[i] <= 'Z' || r[i] >= '0' && r[i] <= '9') {
		i++
	}
	if i == start {
		return "", 0
	}
	term := string(r[start:i])
	if i < len(r) && r[i] == '\r' {
		i++
	}
	if i >= len(r) || r[i] != '\n' {
		return "", 0
	}
	return term, i + 1
}

func (s *nestScanner) heredocAhead() bool {
	_, n := s.heredocStart()
	return n > 0
}

// heredocEnds reports whether the line starting here ends the heredoc
// (optional indentation, the terminator, the end of the line), and if so
// consumes the terminator.
func (s *nestScanner) heredocEnds(term string) bool {
	r := s.rest()
	i := 0
	for i < len(r) && (r[i] == ' ' || r[i] == '\t') {
		i++
	}
	if len(r)-i < len(term) || string(r[i:i+len(term)]) != term {
		return false
	}
	j := i + len(term)
	if j < len(r) && r[j] == '\r' {
		j++
	}
	if j < len(r) && r[j] != '\n' {
		return false
	}
	s.advance(i + len(term))
	return true
}
