package edge

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/andybalholm/brotli"
)

// outcome is how a response was served; it picks the X-Cache value.
type outcome int

const (
	outHit outcome = iota
	outRefreshHit
	outMiss
)

// X-Cache values, as CloudFront's with the edge's name.
var (
	xCache = [...][]string{outHit: {"Hit from haven-edge"}, outRefreshHit: {"RefreshHit from haven-edge"},
		outMiss: {"Miss from haven-edge"}}
	xMiss  = xCache[outMiss]
	xError = []string{"Error from haven-edge"}
	xVia   = []string{viaValue}

	xAcceptRanges = []string{"bytes"}
)

// textEscaper escapes text content of XML and HTML bodies.
var textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	return w
}}

var brotliWriters = sync.Pool{New: func() any { return brotli.NewWriterLevel(io.Discard, brotli.DefaultCompression) }}

// compressBody encodes a whole body with gzip or br (Brotli).
func compressBody(coding string, body []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(body) / 3)
	if coding == "br" {
		bw := brotliWriters.Get().(*brotli.Writer)
		bw.Reset(&buf)
		_, _ = bw.Write(body)
		_ = bw.Close()
		brotliWriters.Put(bw)
	} else {
		zw := gzipWriters.Get().(*gzip.Writer)
		zw.Reset(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		gzipWriters.Put(zw)
	}
	return bytes.Clone(buf.Bytes())
}

// serveEntry writes a cached object: its stored headers, X-Cache, Via and
// Age, and for 200 objects conditional requests (304) and the byte ranges
// CloudFront honours (206, 416), through net/http's ServeContent.
// Age is sent for objects served from the cache, and on a miss only when the
// origin's response already had an age.
func (e *Edge) serveEntry(w http.ResponseWriter, r *http.Request, ent *entry, out outcome, age time.Duration) {
	h := w.Header()
	for k, v := range ent.header {
		h[k] = v
	}
	if ent.status >= 400 {
		h["X-Cache"] = xError
	} else {
		h["X-Cache"] = xCache[out]
	}
	h["Via"] = xVia
	if out != outMiss || age >= time.Second {
		h["Age"] = []string{strconv.FormatInt(int64(age/time.Second), 10)}
	}
	if _, ok := h["Content-Type"]; !ok && ent.status == http.StatusOK {
		h["Content-Type"] = nil // no sniffing: the origin sent none
	}
	if ent.status == http.StatusOK && plainGet(r) {
		// The common case, without ServeContent's work: the whole object.
		h["Accept-Ranges"] = xAcceptRanges
		h["Content-Length"] = ent.lengthValue
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(ent.body)
		}
		return
	}
	if ent.status == http.StatusOK {
		if rg := r.Header.Get("Range"); rg != "" && !rangeHonoured(rg, int64(len(ent.body))) {
			r.Header.Del("Range") // CloudFront answers 200 with the whole object
		}
		http.ServeContent(w, r, "", ent.modTime, bytes.NewReader(ent.body))
		return
	}
	if bodyAllowed(ent.status) {
		h["Content-Length"] = []string{strconv.Itoa(len(ent.body))}
	}
	w.WriteHeader(ent.status)
	if r.Method != http.MethodHead && bodyAllowed(ent.status) {
		_, _ = w.Write(ent.body)
	}
}

// plainGet reports a request with no range or conditional header.
func plainGet(r *http.Request) bool {
	h := r.Header
	return len(h["Range"]) == 0 && len(h["If-None-Match"]) == 0 && len(h["If-Modified-Since"]) == 0 &&
		len(h["If-Match"]) == 0 && len(h["If-Unmodified-Since"]) == 0 && len(h["If-Range"]) == 0
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// reject answers a malformed or oversized request.
func (e *Edge) reject(w http.ResponseWriter, status int, msg string) {
	e.stats.rejected.Add(1)
	writeError(w, status, msg)
}

// deny answers a request refused for its signature, with CloudFront's XML
// error body: MissingKey when the signing values are absent, AccessDenied
// otherwise.
func (e *Edge) deny(w http.ResponseWriter, err error) {
	code, msg := "AccessDenied", err.Error()
	var d *DeniedError
	if errors.As(err, &d) {
		msg = d.Reason
		if strings.HasPrefix(msg, "missing ") {
			code = "MissingKey"
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/xml")
	h["X-Cache"] = xError
	h["Via"] = xVia
	w.WriteHeader(http.StatusForbidden)
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error><Code>")
	b.WriteString(code)
	b.WriteString("</Code><Message>")
	b.WriteString(textEscaper.Replace(msg))
	b.WriteString("</Message></Error>\n")
	_, _ = io.WriteString(w, b.String())
}

// originFailure answers a request whose origin could not be reached (502)
// or did not answer in time (504), with nothing cached to serve instead.
func (e *Edge) originFailure(w http.ResponseWriter, err error) {
	status := http.StatusBadGateway
	msg := "the edge could not connect to the origin; it may be down"
	if errors.Is(err, errOriginTimeout) {
		status, msg = http.StatusGatewayTimeout, "the origin did not answer in time"
	}
	e.log.Info("origin failed", "status", status, "err", err)
	writeError(w, status, msg)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h["X-Cache"] = xError
	h["Via"] = xVia
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "<!DOCTYPE html><title>"+strconv.Itoa(status)+" "+http.StatusText(status)+
		"</title><h1>"+strconv.Itoa(status)+" ERROR</h1><p>The request could not be satisfied: "+
		textEscaper.Replace(msg)+".</p><p>Generated by haven-edge.</p>\n")
}
