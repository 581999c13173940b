package alarms_test

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// This file is a focused reader of the Terraform files the parity test
// compares with: the HCL native syntax subset they use (blocks with string
// labels, one attribute per line, strings, numbers, references, and
// bracketed expressions that may span lines). An expression is kept as its
// source text. Anything outside the subset (an unclosed heredoc, an unterminated
// string or bracket) is an error naming the line, so a change to the files
// cannot be misread silently. hashicorp/hcl/v2 is not a dependency of
// haven; docs/decisions.md says why this reader stands in for it.

type tfBlock struct {
	Type   string
	Labels []string
	Attrs  map[string]tfExpr
	Blocks []*tfBlock
	Line   int
}

type tfExpr struct {
	Src  string // source text, trimmed
	Line int
}

// str returns the expression as a quoted string's contents, or false.
func (e tfExpr) str() (string, bool) {
	if len(e.Src) >= 2 && e.Src[0] == '"' && e.Src[len(e.Src)-1] == '"' && !strings.Contains(e.Src[1:len(e.Src)-1], `"`) {
		return e.Src[1 : len(e.Src)-1], true
	}
	return "", false
}

// num returns the expression as a number literal, or false.
func (e tfExpr) num() (float64, bool) {
	f, err := strconv.ParseFloat(e.Src, 64)
	return f, err == nil
}

func (b *tfBlock) children(typ string) []*tfBlock {
	var out []*tfBlock
	for _, c := range b.Blocks {
		if c.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

type tfParser struct {
	src  string
	pos  int
	line int
}

// parseTF parses a file into a root block whose Blocks are its top-level
// blocks.
func parseTF(src string) (*tfBlock, error) {
	p := &tfParser{src: src, line: 1}
	root := &tfBlock{Attrs: map[string]tfExpr{}}
	if err := p.body(root, false); err != nil {
		return nil, err
	}
	return root, nil
}

func (p *tfParser) errf(format string, a ...any) error {
	return fmt.Errorf("line %d: %s (the parity test's Terraform reader handles a subset of HCL; extend tfparse_test.go)", p.line, fmt.Sprintf(format, a...))
}

// space skips blanks and comments; with newlines it also skips line ends.
func (p *tfParser) space(newlines bool) {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\n' && newlines:
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '#' || strings.HasPrefix(p.src[p.pos:], "//"):
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		case strings.HasPrefix(p.src[p.pos:], "/*"):
			end := strings.Index(p.src[p.pos+2:], "*/")
			if end < 0 {
				p.pos = len(p.src)
				return
			}
			p.line += strings.Count(p.src[p.pos:p.pos+2+end+2], "\n")
			p.pos += 2 + end + 2
		default:
			return
		}
	}
}

func (p *tfParser) ident() string {
	start := p.pos
	for p.pos < len(p.src) {
		r := rune(p.src[p.pos])
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-') {
			break
		}
		p.pos++
	}
	return p.src[start:p.pos]
}

// stringLit reads a quoted string (with ${...} interpolations kept).
func (p *tfParser) stringLit() (string, error) {
	start := p.pos
	p.pos++ // opening quote
	depth := 0
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\\':
			p.pos += 2
			continue
		case c == '\n':
			return "", p.errf("unterminated string")
		case strings.HasPrefix(p.src[p.pos:], "${"):
			depth++
			p.pos += 2
			continue
		case c == '}' && depth > 0:
			depth--
		case c == '"' && depth == 0:
			p.pos++
			return p.src[start:p.pos], nil
		}
		p.pos++
	}
	return "", p.errf("unterminated string")
}

// body parses attributes and blocks until '}' (nested) or the end.
func (p *tfParser) body(b *tfBlock, nested bool) error {
	for {
		p.space(true)
		if p.pos >= len(p.src) {
			if nested {
				return p.errf("block opened on line %d is not closed", b.Line)
			}
			return nil
		}
		if p.src[p.pos] == '}' {
			if !nested {
				return p.errf("unexpected '}'")
			}
			p.pos++
			return nil
		}
		line := p.line
		name := p.ident()
		if name == "" {
			return p.errf("expected an attribute or block name, found %q", p.src[p.pos:min(p.pos+10, len(p.src))])
		}
		p.space(false)
		if p.pos < len(p.src) && p.src[p.pos] == '=' && !strings.HasPrefix(p.src[p.pos:], "==") {
			p.pos++
			e, err := p.expr()
			if err != nil {
				return err
			}
			if _, dup := b.Attrs[name]; dup {
				return p.errf("attribute %s set twice", name)
			}
			b.Attrs[name] = tfExpr{Src: e, Line: line}
			continue
		}
		child := &tfBlock{Type: name, Attrs: map[string]tfExpr{}, Line: line}
		for {
			p.space(false)
			if p.pos < len(p.src) && p.src[p.pos] == '"' {
				s, err := p.stringLit()
				if err != nil {
					return err
				}
				child.Labels = append(child.Labels, s[1:len(s)-1])
				continue
			}
			break
		}
		if p.pos >= len(p.src) || p.src[p.pos] != '{' {
			return p.errf("expected '{' after block %s", name)
		}
		p.pos++
		if err := p.body(child, true); err != nil {
			return err
		}
		b.Blocks = append(b.Blocks, child)
	}
}

// heredoc skips a heredoc string (<<EOT or <<-EOT up to the line holding
// only its marker); the expression's source text keeps it whole.
func (p *tfParser) heredoc() error {
	rest := p.src[p.pos+2:]
	rest = strings.TrimPrefix(rest, "-")
	nl := strings.IndexByte(rest, '\n')
	if nl < 0 {
		return p.errf("heredoc without a body")
	}
	marker := strings.TrimSpace(rest[:nl])
	if marker == "" {
		return p.errf("heredoc without a marker")
	}
	body := p.pos + (len(p.src[p.pos:]) - len(rest)) + nl + 1
	for i := body; i < len(p.src); {
		end := strings.IndexByte(p.src[i:], '\n')
		if end < 0 {
			end = len(p.src) - i
		}
		p.line++
		if strings.TrimSpace(p.src[i:i+end]) == marker {
			p.pos = i + end
			return nil
		}
		i += end + 1
	}
	return p.errf("heredoc %s is not closed", marker)
}

// expr reads an expression up to the end of its line, across lines inside
// brackets, and returns its source text.
func (p *tfParser) expr() (string, error) {
	p.space(false)
	start := p.pos
	var stack []byte
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case strings.HasPrefix(p.src[p.pos:], "<<"):
			if err := p.heredoc(); err != nil {
				return "", err
			}
			continue
		case c == '"':
			if _, err := p.stringLit(); err != nil {
				return "", err
			}
			continue
		case c == '#' || strings.HasPrefix(p.src[p.pos:], "//") || strings.HasPrefix(p.src[p.pos:], "/*"):
			if len(stack) == 0 {
				end := p.pos
				p.space(false)
				return strings.TrimSpace(p.src[start:end]), nil
			}
			p.space(false)
			continue
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case c == ')' || c == ']' || c == '}':
			if len(stack) == 0 {
				if c == '}' { // the end of an enclosing one-line block
					return strings.TrimSpace(p.src[start:p.pos]), nil
				}
				return "", p.errf("unbalanced %q", c)
			}
			stack = stack[:len(stack)-1]
		case c == '\n':
			if len(stack) == 0 {
				return strings.TrimSpace(p.src[start:p.pos]), nil
			}
			p.line++
		}
		p.pos++
	}
	if len(stack) > 0 {
		return "", p.errf("unclosed %q", stack[len(stack)-1])
	}
	return strings.TrimSpace(p.src[start:p.pos]), nil
}
