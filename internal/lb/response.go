package lb

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
)

// readResponseFast parses the common target response without
// http.ReadResponse: an HTTP/1.1 status line with a status of 200-599
// other than 204 and 304, header fields that are all on one line each, one
// Content-Length, no Transfer-Encoding or Trailer, a Connection header
// naming at most keep-alive or close, to a request other than HEAD, and
// the whole head already in br's buffer. The head's text becomes one
// string the header values share, and the response and its body live in
// rs: the response costs the header map and that string. For anything
// else it reports false and consumes nothing; the caller then reads the
// response with http.ReadResponse, whose rules this path follows for the
// responses it takes.
func readResponseFast(br *bufio.Reader, req *http.Request, rs *reqState) (*http.Response, bool) {
	if req.Method == http.MethodHead {
		return nil, false
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 || !bytes.HasPrefix(buf, []byte("HTTP/1.1 ")) || len(buf) < 13 {
		return nil, false
	}
	c0, c1, c2 := buf[9], buf[10], buf[11]
	if c0 < '2' || c0 > '5' || c1 < '0' || c1 > '9' || c2 < '0' || c2 > '9' || (buf[12] != ' ' && buf[12] != '\r') {
		return nil, false
	}
	code := int(c0-'0')*100 + int(c1-'0')*10 + int(c2-'0')
	if code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	head := buf[:end+2] // through the last header line's CRLF
	statusEnd := bytes.IndexByte(head, '\n')
	if head[statusEnd-1] != '\r' {
		return nil, false
	}
	lines := bytes.Count(head[statusEnd+1:], []byte("\n"))
	text := string(head) // one allocation for every key and value below
	h := make(http.Header, lines)
	vals := make([]string, lines)
	n, cl, closeConn := 0, int64(-1), false
	for pos := statusEnd + 1; pos < len(text); {
		nl := pos + bytes.IndexByte(head[pos:], '\n')
		if nl < pos+1 || text[nl-1] != '\r' {
			return nil, false
		}
		line := text[pos : nl-1]
		pos = nl + 1
		colon := -1
		for i := 0; i < len(line); i++ {
			c := line[i]
			if c == ':' {
				colon = i
				break
			}
			if !isTokenByte(c) {
				return nil, false // a space before the colon, folding, a bad byte: ReadResponse decides
			}
		}
		if colon <= 0 {
			return nil, false
		}
		key, val := line[:colon], trimOWS(line[colon+1:])
		if !isCanonicalKey(key) {
			key = textproto.CanonicalMIMEHeaderKey(key)
		}
		switch key {
		case "Content-Length":
			if cl >= 0 {
				return nil, false
			}
			v, ok := parseContentLength(val)
			if !ok {
				return nil, false
			}
			cl = v
		case "Transfer-Encoding", "Trailer":
			return nil, false
		case "Connection":
			switch {
			case asciiEqualFold(val, "close"):
				closeConn = true
				continue // as ReadResponse: Close says it, the header goes
			case asciiEqualFold(val, "keep-alive"):
			default:
				return nil, false
			}
		}
		for i := 0; i < len(val); i++ {
			if c := val[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return nil, false
			}
		}
		vals[n] = val
		if old := h[key]; old == nil {
			h[key] = vals[n : n+1 : n+1]
		} else {
			h[key] = append(old, val)
		}
		n++
	}
	if cl < 0 {
		return nil, false
	}
	if _, err := br.Discard(end + 4); err != nil {
		return nil, false // cannot happen: the head is buffered
	}
	rs.body = contentBody{br: br, n: cl}
	rs.resp = http.Response{
		Status: text[9 : statusEnd-1], StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: cl, Close: closeConn, Request: req, Body: &rs.body,
	}
	return &rs.resp, true
}

// contentBody reads a body of known length from a target connection: a
// connection that ends before it is an unexpected EOF, not the end.
type contentBody struct {
	br *bufio.Reader
	n  int64
}

func (b *contentBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	switch {
	case err == io.EOF && b.n > 0:
		err = io.ErrUnexpectedEOF
	case err == nil && b.n == 0:
		err = io.EOF
	}
	return n, err
}

func (b *contentBody) Close() error { return nil }

func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// isCanonicalKey reports whether k is in textproto's canonical form
// (upper case after each hyphen and at the start, lower case elsewhere).
func isCanonicalKey(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && c >= 'a' && c <= 'z' || !upper && c >= 'A' && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseContentLength accepts 1 to 18 decimal digits.
func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int64(s[i]-'0')
	}
	return v, true
}

func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i]|0x20, t[i]|0x20
		if a != b {
			return false
		}
	}
	return true
}
