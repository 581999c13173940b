package lb

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// dialLB opens a raw TLS connection to the LB, speaking HTTP/1.1.
func dialLB(t *testing.T, l *LB, c *http.Client) *tls.Conn {
	t.Helper()
	cfg := c.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", l.HTTPSAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	return conn
}

// The HTTP/1.1 loop serves pipelined requests in order on one connection
// (a HEAD without a body, a POST with one), answers with a Date, and hands
// the connection to net/http at the first request it does not take (a
// chunked body, a head larger than its buffer), the bytes it had already
// read included.
func TestHTTP1PipeliningAndHandover(t *testing.T) {
	l, c := startLB(t, nil)
	b := newBackend(t, "e", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body)+" "+r.Header.Get("X-Big")[:min(3, len(r.Header.Get("X-Big")))])
	})
	register(t, l, "e", "za", b.addr())
	waitState(t, l, "e", StateHealthy)

	conn := dialLB(t, l, c)
	big := strings.Repeat("y", 6000)
	reqs := "GET /one HTTP/1.1\r\nHost: x\r\n\r\n" +
		"HEAD /two HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /three HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /four HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /five HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n"
	if _, err := io.WriteString(conn, reqs); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for _, want := range []struct{ method, body string }{
		{"GET", "GET /one  "}, {"HEAD", ""}, {"POST", "POST /three hello "}, {"POST", "POST /four abc "}, {"GET", "GET /five  yyy"},
	} {
		req, _ := http.NewRequest(want.method, "https://x/", nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("response to %s %q: %v", want.method, want.body, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want.body || resp.Header.Get("Date") == "" || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s: %d %q (Date %q), want 200 %q with a Date and a request id", want.method, resp.StatusCode, body, resp.Header.Get("Date"), want.body)
		}
	}
}

// A client that goes away before its answer is logged as 460 (ALB's
// status for a client that closed before the load balancer could
// respond); the target's request runs to its end.
func TestHTTP1ClientGoneIs460(t *testing.T) {
	var logBuf syncBuffer
	l, c := startLB(t, func(cfg *Config) { cfg.AccessLog = &logBuf })
	done := make(chan struct{})
	b := newBackend(t, "e", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, strings.Repeat("z", 64<<10))
		close(done)
	})
	register(t, l, "e", "za", b.addr())
	waitState(t, l, "e", StateHealthy)
	conn := dialLB(t, l, c)
	if _, err := io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	conn.NetConn().(interface{ SetLinger(int) error }).SetLinger(0) // a reset: the LB cannot write to it
	conn.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the target's request was cut")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logBuf.String(), `"path":"/slow"`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if line := logBuf.String(); !strings.Contains(line, `"path":"/slow","proto":"HTTP/1.1","status":460`) {
		t.Errorf("access log %s: want the request logged as 460", line)
	}
}
