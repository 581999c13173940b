// Package termsafe escapes the control characters of untrusted text (ESC, C0 and C1 controls, DEL, bidirectional overrides, invalid UTF-8) before it reaches an operator's terminal.
package termsafe

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// unsafe reports whether r must not reach a terminal as is: C0 controls
// (ESC among them) and DEL, C1 controls (U+0080–U+009F: 0x9B is a CSI on
// terminals that read 8-bit controls), and the Unicode bidirectional
// controls that reorder what is displayed (Trojan Source, CVE-2021-42574).
// Line feed and tab are safe only where the caller keeps them (Writer).
func unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // ALM, LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	}
	return false
}

// String returns s with every unsafe rune escaped as \u001b, \u202e...,
// tabs and newlines included (\t, \n, \r): a field printed with it stays
// on its line. Invalid UTF-8 bytes become \xNN. Safe text is returned
// unchanged. The escapes are JSON's too, so a JSON document (a log line)
// passed through it or through Writer stays valid JSON.
func String(s string) string {
	return escape(s, false)
}

func escape(s string, keepLayout bool) string {
	clean := true
	for i, r := range s {
		if (r == utf8.RuneError && isInvalid(s[i:])) || (unsafe(r) && !(keepLayout && (r == '\n' || r == '\t'))) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLayout && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case unsafe(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// isInvalid reports whether s starts with a byte that is not valid UTF-8
// (as opposed to a literal U+FFFD, which is printable).
func isInvalid(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return r == utf8.RuneError && n <= 1
}

// Writer returns a writer that escapes what String escapes, except that it
// keeps line feeds and tabs (the layout of tables and multi-line reports).
// Writes may split a UTF-8 sequence: its first bytes wait for the rest.
// Use it for every human-readable stream that carries text the daemon,
// an instance or a client sent.
func Writer(w io.Writer) io.Writer { return &writer{w: w} }

type writer struct {
	mu      sync.Mutex
	w       io.Writer
	pending []byte // an incomplete UTF-8 sequence from the last Write
}

func (t *writer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	buf := append(t.pending, p...)
	t.pending = nil
	// Keep back a trailing sequence that may still be completed.
	if cut := incompleteTail(buf); cut > 0 {
		t.pending = append([]byte(nil), buf[len(buf)-cut:]...)
		buf = buf[:len(buf)-cut]
	}
	if _, err := io.WriteString(t.w, escape(string(buf), true)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// incompleteTail returns how many trailing bytes of b begin a UTF-8
// sequence that is not complete yet (0 when none).
func incompleteTail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		c := b[len(b)-k]
		if c < 0x80 {
			return 0
		}
		if c >= 0xc0 { // the leading byte of the last sequence
			if !utf8.FullRune(b[len(b)-k:]) {
				return k
			}
			return 0
		}
	}
	return 0
}

// JSON escapes, inside an encoded JSON document, the runes String escapes
// that encoding/json leaves raw (DEL, C1 controls, bidirectional
// controls) as \u escapes: the document decodes to the same values but
// prints safely. encoding/json already escapes C0 controls.
func JSON(doc []byte) []byte {
	if !bytes.ContainsFunc(doc, func(r rune) bool { return r >= 0x7f && unsafe(r) }) {
		return doc
	}
	var b bytes.Buffer
	b.Grow(len(doc) + 16)
	for i := 0; i < len(doc); {
		r, n := utf8.DecodeRune(doc[i:])
		if r >= 0x7f && unsafe(r) {
			fmt.Fprintf(&b, `\u%04x`, r)
		} else {
			b.Write(doc[i : i+n])
		}
		i += n
	}
	return b.Bytes()
}
