package lb

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The HTTPS listener serves HTTP/1.1 itself, and hands everything else to
// net/http. serveHTTPS accepts each connection and completes its TLS
// handshake; an HTTP/2 connection (ALPN h2) goes to net/http at once. An
// HTTP/1.1 connection is served here, request after request, while each
// request is a plain one (readRequestFast: HTTP/1.1, its head in one
// buffer, a Host, no Transfer-Encoding, Expect or Upgrade); the first
// request that is not goes to net/http with the connection, the bytes
// already read included, and net/http serves the connection from then on.
//
// Why: net/http's server costs, per request, a background read of the
// connection (an extra read(2) and two goroutine switches), five deadline
// changes and a sorted copy of the response headers; under wrk that was
// the largest part of the LB's own CPU left (docs/lb.md, "Performance").
//
// What changes: net/http notices a client that goes away while its
// request waits for a target (the background read); here it is noticed
// when the answer is written, and logged as 460 then, as ALB logs a client
// that closed before the load balancer could respond. Requests to targets
// are never cut for it in either case.

// h1Conn is one HTTP/1.1 connection served by the fast path.
type h1Conn struct {
	l      *LB
	tc     *tls.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string
	w      h1Writer
	// deadline is the read deadline last set (refreshDeadline's rule).
	deadline time.Time
	active   atomic.Bool // serving a request (Stop waits for it)
}

// h1Set tracks the fast path's connections, for Stop.
type h1Set struct {
	mu       sync.Mutex
	conns    map[*h1Conn]struct{}
	stopping bool
	wg       sync.WaitGroup
}

func (s *h1Set) add(c *h1Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	if s.conns == nil {
		s.conns = map[*h1Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *h1Set) remove(c *h1Conn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if ok {
		s.wg.Done()
	}
}

// shutdown closes the idle connections at once and lets the active ones
// end after their current response; when ctx ends first, it closes them.
func (s *h1Set) shutdown(ctx context.Context) {
	s.mu.Lock()
	s.stopping = true
	for c := range s.conns {
		if !c.active.Load() {
			_ = c.tc.Close()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.tc.Close()
		}
		s.mu.Unlock()
		<-done
	}
}

func (s *h1Set) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// handoffListener gives net/http the connections the fast path hands over.
type handoffListener struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (h *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoffListener) Close() error {
	h.closed.Do(func() { close(h.done) })
	return nil
}

func (h *handoffListener) Addr() net.Addr { return h.addr }

// give passes c to net/http, or closes it when net/http has stopped.
func (h *handoffListener) give(c net.Conn) {
	select {
	case h.ch <- c:
	case <-h.done:
		_ = c.Close()
	}
}

// replayConn is a connection handed over with bytes already read: they
// are read first.
type replayConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.br != nil && c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}

// serveHTTPS accepts on ln until it is closed.
func (l *LB) serveHTTPS(ln net.Listener, tlsCfg *tls.Config) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.log.Warn("accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return
		}
		delay = 0
		l.addHTTPSConns(1)
		go l.serveTLSConn(c, tlsCfg)
	}
}

// serveTLSConn completes the handshake and serves the connection, or
// hands it over.
func (l *LB) serveTLSConn(c net.Conn, tlsCfg *tls.Config) {
	tc := tls.Server(c, tlsCfg)
	_ = tc.SetDeadline(time.Now().Add(l.cfg.IdleTimeout))
	if err := tc.Handshake(); err != nil {
		l.log.Debug("TLS handshake", "remote", c.RemoteAddr().String(), "err", err)
		_ = tc.Close()
		l.addHTTPSConns(-1)
		return
	}
	_ = tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol != "" && tc.ConnectionState().NegotiatedProtocol != "http/1.1" {
		l.handoff.give(tc)
		l.addHTTPSConns(-1) // net/http counts it from here (connState)
		return
	}
	hc := &h1Conn{l: l, tc: tc, br: bufio.NewReaderSize(tc, 4<<10), bw: bufio.NewWriterSize(tc, 4<<10), remote: c.RemoteAddr().String()}
	hc.w.c = hc
	if !l.h1.add(hc) {
		_ = tc.Close()
		l.addHTTPSConns(-1)
		return
	}
	handedOver := false
	defer func() {
		l.h1.remove(hc)
		if !handedOver {
			_ = tc.Close()
			l.addHTTPSConns(-1)
		}
	}()
	for {
		hc.refreshDeadline(l.cfg.IdleTimeout)
		if _, err := hc.br.Peek(1); err != nil {
			return // the client closed, or stayed idle past the idle timeout
		}
		hc.active.Store(true)
		req, ok, err := hc.readRequestFast()
		if err != nil {
			return
		}
		if !ok {
			// Not a plain request: net/http takes the connection over.
			l.h1.remove(hc)
			handedOver = true
			_ = tc.SetDeadline(time.Time{})
			l.handoff.give(&replayConn{Conn: tc, br: hc.br})
			l.addHTTPSConns(-1) // net/http counts it from here (connState)
			return
		}
		if !hc.serve(req) || l.h1.isStopping() {
			return
		}
		hc.active.Store(false)
	}
}

// refreshDeadline makes the connection's read deadline now + idle, moving
// it only when it is more than idle/100 short (each move is a timer change).
func (hc *h1Conn) refreshDeadline(idle time.Duration) {
	want := time.Now().Add(idle)
	if want.Sub(hc.deadline) > idle/100 || hc.deadline.After(want) {
		hc.deadline = want
		_ = hc.tc.SetReadDeadline(want)
	}
}

// serve runs one request and writes its response; it reports whether the
// connection may serve another.
func (hc *h1Conn) serve(req *http.Request) (keep bool) {
	w := &hc.w
	w.reset(req)
	defer func() {
		if p := recover(); p != nil {
			// The handler cut the response (a target that stopped mid-way):
			// the client must not take it for complete.
			keep = false
			if p != http.ErrAbortHandler {
				hc.l.log.Error("panic serving a request", "remote", hc.remote, "panic", p)
			}
		}
	}()
	hc.l.ServeHTTP(w, req)
	if err := w.finish(); err != nil {
		return false
	}
	if b, ok := req.Body.(*contentBody); ok && b.n > 0 {
		return false // the handler left part of the body unread
	}
	return !w.closeAfter
}

// readRequestFast parses the request whose head is in the buffer (reading
// more while it fits). ok false: not a plain request, nothing consumed.
func (hc *h1Conn) readRequestFast() (*http.Request, bool, error) {
	br := hc.br
	var buf []byte
	for {
		buf, _ = br.Peek(br.Buffered())
		if bytes.Contains(buf, []byte("\r\n\r\n")) {
			break
		}
		if br.Buffered() == br.Size() {
			return nil, false, nil // a head this large: net/http's limits apply
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			if br.Buffered() > 0 && !errors.Is(err, io.EOF) {
				return nil, false, err
			}
			return nil, false, err
		}
	}
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	lineEnd := bytes.IndexByte(buf, '\n')
	if lineEnd < 1 || buf[lineEnd-1] != '\r' {
		return nil, false, nil
	}
	line := buf[:lineEnd-1]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || !bytes.HasSuffix(line, []byte(" HTTP/1.1")) {
		return nil, false, nil
	}
	method, target := line[:sp1], line[sp1+1:len(line)-len(" HTTP/1.1")]
	for _, c := range method {
		if !isTokenByte(c) {
			return nil, false, nil
		}
	}
	if len(target) == 0 || target[0] != '/' {
		return nil, false, nil
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return nil, false, nil
		}
	}
	head := buf[lineEnd+1 : end+2]
	lines := bytes.Count(head, []byte("\n"))
	text := string(buf[:end+2]) // one allocation for the method, target, keys and values
	h := make(http.Header, lines)
	vals := make([]string, lines)
	n, cl, closeConn, host, hosts := 0, int64(0), false, "", 0
	for pos := lineEnd + 1; pos < len(text); {
		nl := pos + bytes.IndexByte(buf[pos:end+2], '\n')
		if nl < pos+1 || text[nl-1] != '\r' {
			return nil, false, nil
		}
		hl := text[pos : nl-1]
		pos = nl + 1
		colon := -1
		for i := 0; i < len(hl); i++ {
			c := hl[i]
			if c == ':' {
				colon = i
				break
			}
			if !isTokenByte(c) {
				return nil, false, nil
			}
		}
		if colon <= 0 {
			return nil, false, nil
		}
		key, val := hl[:colon], trimOWS(hl[colon+1:])
		for i := 0; i < len(val); i++ {
			if c := val[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return nil, false, nil
			}
		}
		if !isCanonicalKey(key) {
			key = textproto.CanonicalMIMEHeaderKey(key)
		}
		switch key {
		case "Host":
			host, hosts = val, hosts+1
		case "Content-Length":
			v, ok := parseContentLength(val)
			if !ok || h["Content-Length"] != nil {
				return nil, false, nil
			}
			cl = v
		case "Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer":
			return nil, false, nil
		case "Connection":
			switch {
			case asciiEqualFold(val, "close"):
				closeConn = true
			case asciiEqualFold(val, "keep-alive"):
			default:
				return nil, false, nil
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
	if hosts != 1 || !validHost(host) {
		return nil, false, nil
	}
	uri := text[sp1+1 : sp1+1+len(target)]
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, false, nil
	}
	if _, err := br.Discard(end + 4); err != nil {
		return nil, false, err
	}
	req := &http.Request{
		Method: text[:sp1], URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Host: host, RemoteAddr: hc.remote, RequestURI: uri, Close: closeConn,
		ContentLength: cl, Body: http.NoBody,
	}
	if cl > 0 {
		req.Body = &contentBody{br: br, n: cl}
	}
	return req, true, nil
}

// validHost accepts what net/http's server accepts in a Host header.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			switch c {
			case '!', '$', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', ':', ';', '=', '[', ']', '_', '~':
			default:
				return false
			}
		}
	}
	return true
}

// h1Writer is the fast path's http.ResponseWriter: the response head is
// written when the first body byte or the end comes, with the body framed
// by the Content-Length the handler set, or chunked.
type h1Writer struct {
	c          *h1Conn
	req        *http.Request
	h          http.Header
	status     int
	wroteHead  bool
	noBody     bool  // HEAD, 1xx, 204, 304
	chunked    bool  // no Content-Length: chunked encoding
	length     int64 // the Content-Length, -1 when none
	written    int64
	closeAfter bool
	finished   bool
	err        error
}

func (w *h1Writer) reset(req *http.Request) {
	h := w.h
	if h == nil {
		h = make(http.Header, 16)
	}
	clear(h)
	*w = h1Writer{c: w.c, req: req, h: h, length: -1, closeAfter: req.Close}
}

func (w *h1Writer) Header() http.Header { return w.h }

func (w *h1Writer) WriteHeader(code int) {
	if w.wroteHead || w.status != 0 || code < 200 {
		return // 1xx responses are not passed on; the first final status wins
	}
	w.status = code
}

// writeHead writes the status line and the headers into the buffer.
func (w *h1Writer) writeHead() {
	if w.wroteHead {
		return
	}
	w.wroteHead = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	code := w.status
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if v := w.h["Content-Length"]; len(v) == 1 {
		if n, ok := parseContentLength(v[0]); ok {
			w.length = n
		}
	}
	if w.length < 0 {
		delete(w.h, "Content-Length")
		if !w.noBody {
			w.chunked = true
		}
	}
	for _, v := range w.h["Connection"] {
		if hasToken(v, "close") {
			w.closeAfter = true
		}
	}
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	var nb [3]byte
	bw.Write(strconv.AppendInt(nb[:0], int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
	for k, vv := range w.h {
		if k == "Connection" || k == "Transfer-Encoding" || len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if w.h["Date"] == nil {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if !w.wroteHead {
		w.writeHead()
	}
	if w.noBody {
		return len(p), nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.c.bw
	if w.chunked {
		var nb [16]byte
		bw.Write(strconv.AppendInt(nb[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, w.err = bw.WriteString("\r\n")
	} else {
		if w.written+int64(len(p)) > w.length {
			w.closeAfter = true
			return 0, http.ErrContentLength
		}
		_, w.err = bw.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	w.written += int64(len(p))
	return len(p), nil
}

// FlushError sends what is buffered (http.ResponseController's Flush).
func (w *h1Writer) FlushError() error {
	if w.err != nil {
		return w.err
	}
	if !w.wroteHead {
		w.writeHead()
	}
	w.err = w.c.bw.Flush()
	return w.err
}

// Flush is http.Flusher's.
func (w *h1Writer) Flush() { _ = w.FlushError() }

// finish ends the response (the last chunk and the trailers) and sends it;
// an error means the client is gone.
func (w *h1Writer) finish() error {
	if w.err != nil || w.finished {
		return w.err
	}
	w.finished = true
	if !w.wroteHead {
		w.writeHead()
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		for k, vv := range w.h {
			name := k
			switch {
			case len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix:
				name = k[len(http.TrailerPrefix):]
			case declaredTrailer(w.h, k):
			default:
				continue
			}
			for _, v := range vv {
				bw.WriteString(name)
				bw.WriteString(": ")
				bw.WriteString(v)
				bw.WriteString("\r\n")
			}
		}
		bw.WriteString("\r\n")
	} else if !w.noBody && w.written < w.length {
		w.closeAfter = true // a short body: the connection cannot carry another response
	}
	w.err = bw.Flush()
	return w.err
}

// declaredTrailer reports whether k is named by h's Trailer header.
func declaredTrailer(h http.Header, k string) bool {
	for _, v := range h["Trailer"] {
		if hasToken(v, k) {
			return true
		}
	}
	return false
}

// httpDate is the Date header's value, formatted once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.text
	}
	d := &cachedDate{sec: now, text: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.text
}

type cachedDate struct {
	sec  int64
	text string
}

var dateCache atomic.Pointer[cachedDate]
