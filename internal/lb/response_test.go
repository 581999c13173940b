package lb

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// readResponseFast takes only what it can parse exactly as
// http.ReadResponse does, and leaves everything else to it untouched.
func TestReadResponseFastMatchesReadResponse(t *testing.T) {
	get, _ := http.NewRequest(http.MethodGet, "http://t/", nil)
	head, _ := http.NewRequest(http.MethodHead, "http://t/", nil)
	cases := []struct {
		name string
		req  *http.Request
		raw  string
		fast bool
	}{
		{"plain", get, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", true},
		{"repeated and odd-case keys", get, "HTTP/1.1 404 Not Found\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nx-TRACE:  v \t\r\nContent-Length: 0\r\n\r\n", true},
		{"close", get, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye", true},
		{"keep-alive header", get, "HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\nx", true},
		{"no reason", get, "HTTP/1.1 201\r\nContent-Length: 0\r\n\r\n", true},
		{"chunked", get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", false},
		{"no length", get, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", false},
		{"HTTP/1.0", get, "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false},
		{"HEAD", head, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false},
		{"204", get, "HTTP/1.1 204 No Content\r\n\r\n", false},
		{"304", get, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false},
		{"1xx", get, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"two lengths", get, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
		{"bad length", get, "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", false},
		{"folded", get, "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", false},
		{"space before colon", get, "HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n", false},
		{"bare LF", get, "HTTP/1.1 200 OK\nContent-Length: 0\n\n", false},
		{"Connection names a header", get, "HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n", false},
		{"trailer", get, "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 0\r\n\r\n", false},
		{"control byte", get, "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n", false},
		{"garbage", get, "NOT HTTP AT ALL\r\n\r\n", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(c.raw))
			br.Peek(1)
			rs := new(reqState)
			got, ok := readResponseFast(br, c.req, rs)
			if ok != c.fast {
				t.Fatalf("fast path took it: %v, want %v", ok, c.fast)
			}
			if !ok {
				if br.Buffered() != len(c.raw) {
					t.Fatalf("declined but consumed %d bytes", len(c.raw)-br.Buffered())
				}
				return
			}
			want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(c.raw)), c.req)
			if err != nil {
				t.Fatalf("ReadResponse refuses what the fast path took: %v", err)
			}
			if got.Status != want.Status || got.StatusCode != want.StatusCode || got.ContentLength != want.ContentLength ||
				got.Close != want.Close || got.Proto != want.Proto || !reflect.DeepEqual(got.Header, want.Header) {
				t.Errorf("fast %q %d len %d close %v %v\nwant %q %d len %d close %v %v", got.Status, got.StatusCode, got.ContentLength, got.Close, got.Header,
					want.Status, want.StatusCode, want.ContentLength, want.Close, want.Header)
			}
			gb, gerr := io.ReadAll(got.Body)
			wb, _ := io.ReadAll(want.Body)
			if gerr != nil || string(gb) != string(wb) {
				t.Errorf("body %q (%v), want %q", gb, gerr, wb)
			}
			if br.Buffered() != 0 {
				t.Errorf("%d bytes left after the body", br.Buffered())
			}
		})
	}
}

// A target that closes before the whole body is a cut response, not a
// complete one.
func TestContentBodyShortIsUnexpectedEOF(t *testing.T) {
	get, _ := http.NewRequest(http.MethodGet, "http://t/", nil)
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
	br.Peek(1)
	resp, ok := readResponseFast(br, get, new(reqState))
	if !ok {
		t.Fatal("fast path declined a plain response")
	}
	b, err := io.ReadAll(resp.Body)
	if string(b) != "abc" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read %q, %v; want abc and unexpected EOF", b, err)
	}
}

// The hand-written access-log encoder writes what encoding/json writes for
// the same entry.
func TestAccessLogMatchesEncodingJSON(t *testing.T) {
	start := time.Date(2026, 11, 30, 15, 4, 5, 123456789, time.FixedZone("x", 3600))
	entries := []accessEntry{
		{Component: "lb", RequestID: "r1", Client: "127.0.0.1:5", Method: "GET", Host: "h", Path: "/", Proto: "HTTP/1.1", Status: 200, TargetID: "i-1", TargetAddr: "10.0.0.1:80", Attempts: 1, DurationMS: 1.25, Bytes: 1024},
		{Component: "lb", RequestID: "r2", Client: "c", Method: "POST", Host: "<h&>", Path: "/a\"b\\c\n\t\x01\u2028é\xff", Proto: "HTTP/2.0", Status: 502, Attempts: 2, DurationMS: 0, Error: "cut", Aborted: true},
	}
	for _, e := range entries {
		e.Time = start.UTC().Format(time.RFC3339Nano)
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got := appendEntry(nil, start, &e)
		if string(got) != string(want)+"\n" {
			t.Errorf("access log line\n got %s\nwant %s", got, want)
		}
	}
}
