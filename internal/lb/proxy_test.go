package lb

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The proxy's own HTTP/1.1 client keeps what httputil.ReverseProxy did:
// hop-by-hop headers and those the Connection header names stay on their
// hop, both ways; the target's trailers reach the client; a response of
// unknown length is streamed as it comes; a large request body is
// streamed to the target whole; target connections are kept alive.
func TestProxyHeadersTrailersStreamingBodies(t *testing.T) {
	l, c := startLB(t, nil)
	release := make(chan struct{})
	b := newBackend(t, "e", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/headers":
			var seen []string
			for _, k := range []string{"Connection", "Keep-Alive", "X-Hop", "Proxy-Authorization", "Te", "X-End"} {
				if v := r.Header.Get(k); v != "" {
					seen = append(seen, k+"="+v)
				}
			}
			w.Header().Set("Connection", "X-Resp-Hop")
			w.Header().Set("X-Resp-Hop", "no")
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("X-Resp-End", "yes")
			io.WriteString(w, strings.Join(seen, ","))
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "data: two\n\n")
		case "/upload":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			w.Header().Set("X-Length", strconv.FormatInt(n, 10))
			w.Write(h.Sum(nil))
		}
	})
	register(t, l, "e", "za", b.addr())
	waitState(t, l, "e", StateHealthy)

	req, _ := http.NewRequest(http.MethodGet, l.HTTPSURL()+"/headers", nil)
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must-not-pass")
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-End", "passes")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "Te=trailers,X-End=passes" {
		t.Errorf("target saw %q, want only Te=trailers and X-End", body)
	}
	if resp.Header.Get("X-Resp-Hop") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Resp-End") != "yes" {
		t.Errorf("client got headers %v: want X-Resp-End and neither X-Resp-Hop nor Keep-Alive", resp.Header)
	}

	resp, err = c.Get(l.HTTPSURL() + "/trailer")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("trailer response: body %q, trailer %v; want body and X-Sum 42", body, resp.Trailer)
	}

	resp, err = c.Get(l.HTTPSURL() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() { line, _ := br.ReadString('\n'); first <- line }()
	select {
	case line := <-first:
		if line != "data: one\n" {
			t.Errorf("first event %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Error("the first event of a stream did not arrive before the stream ended: it was buffered")
	}
	close(release)
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if string(rest) != "\ndata: two\n\n" {
		t.Errorf("rest of the stream %q", rest)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), (3*maxBufferedBody)/16) // streamed, not buffered
	want := sha256.Sum256(big)
	resp, err = c.Post(l.HTTPSURL()+"/upload", "application/octet-stream", io.MultiReader(bytes.NewReader(big)) /* no length: chunked */)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want[:]) || resp.Header.Get("X-Length") != strconv.Itoa(len(big)) {
		t.Errorf("upload of %d bytes: status %d, length %s, digest match %v", len(big), resp.StatusCode, resp.Header.Get("X-Length"), bytes.Equal(body, want[:]))
	}

	// Kept alive: many requests, few target connections.
	l.mu.Lock()
	tg := l.targets["e"]
	l.mu.Unlock()
	for i := 0; i < 20; i++ {
		get(t, c, l.HTTPSURL()+"/headers")
	}
	tg.pool.mu.Lock()
	idle := len(tg.pool.idle)
	tg.pool.mu.Unlock()
	if idle < 1 || idle > 2 {
		t.Errorf("%d idle target connections after 20 sequential requests, want 1 or 2 (kept alive and reused)", idle)
	}
}
