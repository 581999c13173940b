package termsafe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, ünïcödé ✓", "plain text, ünïcödé ✓"},
		{"\x1b[8mhidden", `\u001b[8mhidden`},
		{"a\nb\tc\rd", `a\nb\tc\rd`},
		{"bell\x07del\x7f", `bell\u0007del\u007f`},
		{"c1\u009bcsi", `c1\u009bcsi`},
		{"rlo\u202egnp.exe", `rlo\u202egnp.exe`},
		{"isolate\u2066x\u2069", `isolate\u2066x\u2069`},
		{"bad\xff\xfeutf8", `bad\xff\xfeutf8`},
		{"replacement \uFFFD stays", "replacement \uFFFD stays"},
		{"", ""},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestWriterKeepsLayoutAndJoinsSplitRunes(t *testing.T) {
	var b bytes.Buffer
	w := Writer(&b)
	in := "col1\tcol2\n\x1b]0;title\x07é✓\n"
	// Byte by byte: every multi-byte rune arrives split.
	for i := 0; i < len(in); i++ {
		if _, err := w.Write([]byte{in[i]}); err != nil {
			t.Fatal(err)
		}
	}
	want := "col1\tcol2\n\\u001b]0;title\\u0007é✓\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestJSONStaysEquivalent(t *testing.T) {
	v := map[string]string{"id": "a\x1b[2Jb\u202ec\u009bd\x7f"}
	doc, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	safe := JSON(doc)
	var back map[string]string
	if err := json.Unmarshal(safe, &back); err != nil {
		t.Fatalf("escaped document is not JSON: %v: %s", err, safe)
	}
	if back["id"] != v["id"] {
		t.Errorf("decoded %q, want %q", back["id"], v["id"])
	}
	for _, r := range string(safe) {
		if unsafe(r) && r != '\n' {
			t.Errorf("raw %U left in %s", r, safe)
		}
	}
}

// FuzzString: whatever the input, the output holds no unsafe rune and no
// invalid UTF-8, and text without them comes back unchanged.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "ok", "\x1b[31mred", "\u202e", "\xc3", "\xe2\x80", "a\\x1b", "\u009b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if !utf8.ValidString(out) {
			t.Fatalf("String(%q) = %q: invalid UTF-8", s, out)
		}
		for _, r := range out {
			if unsafe(r) {
				t.Fatalf("String(%q) = %q: holds %U", s, out, r)
			}
		}
		clean := utf8.ValidString(s) && !strings.ContainsFunc(s, unsafe)
		if clean && out != s {
			t.Fatalf("String(%q) changed safe text to %q", s, out)
		}
		var b bytes.Buffer
		w := Writer(&b)
		half := len(s) / 2
		_, _ = w.Write([]byte(s[:half]))
		_, _ = w.Write([]byte(s[half:]))
		for _, r := range b.String() {
			if unsafe(r) && r != '\n' && r != '\t' {
				t.Fatalf("Writer(%q) = %q: holds %U", s, b.String(), r)
			}
		}
	})
}
