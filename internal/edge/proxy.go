package edge

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
)

// passThrough forwards a request uncached, streaming both ways: behaviours
// with caching disabled, methods other than GET and HEAD, and objects above
// MaxObjectBytes. It goes through net/http/httputil's ReverseProxy, which
// handles hop-by-hop headers, trailers, flushing and protocol upgrades.
func (e *Edge) passThrough(w http.ResponseWriter, r *http.Request, rq *request) {
	e.stats.passThrough.Add(1)
	e.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestKey{}, rq)))
}

// rewrite builds the origin request from the viewer request per the
// behaviour's policies.
func (e *Edge) rewrite(pr *httputil.ProxyRequest) {
	rq := pr.In.Context().Value(requestKey{}).(*request)
	b := rq.b
	h := e.forwardedHeaders(pr.In, rq, false)
	if up := pr.Out.Header.Get("Upgrade"); up != "" {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", up)
	}
	if te := pr.Out.Header.Get("Te"); te != "" {
		h.Set("Te", te)
	}
	pr.Out.Header = h
	pr.Out.URL = b.target.primary.url(rq.rawPath, filterQuery(rq.rawQuery, b.forwardQuery))
	pr.Out.Host = ""
	if b.forwardHost {
		pr.Out.Host = pr.In.Host
	}
}

// proxyTransport sends the proxy's requests through the edge's origin
// round trip (failover, OAC signing, counters).
type proxyTransport struct{ e *Edge }

func (t proxyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rq := req.Context().Value(requestKey{}).(*request)
	or := &originRequest{method: req.Method, rawPath: rq.rawPath, rawQuery: req.URL.RawQuery,
		header: req.Header, host: req.Host, body: req.Body, contentLength: req.ContentLength}
	if req.Body == nil || req.Body == http.NoBody {
		or.body, or.contentLength = nil, 0
	}
	return t.e.roundTrip(req.Context(), rq.b.target, or)
}

// modifyResponse applies the edge's response rules to a forwarded response:
// Set-Cookie only when cookies are forwarded, CloudFront's Vary values,
// X-Cache and Via, and gzip for viewers that accept it.
func (e *Edge) modifyResponse(resp *http.Response) error {
	rq := resp.Request.Context().Value(requestKey{}).(*request)
	b := rq.b
	h := resp.Header
	if !b.forwardCookies {
		h.Del("Set-Cookie")
	}
	if v := h.Values("Vary"); len(v) > 0 {
		if kept := filterVary(v, b.forwardHeader); len(kept) > 0 {
			h["Vary"] = []string{strings.Join(kept, ", ")}
		} else {
			h.Del("Vary")
		}
	}
	h.Del("X-Cache")
	if resp.StatusCode >= 400 {
		h["X-Cache"] = xError
	} else {
		h["X-Cache"] = xMiss
	}
	h.Add("Via", viaValue)
	v := rq.viewer
	if b.cfg.Compress && v != nil && v.Method != http.MethodHead && v.Header.Get("Range") == "" &&
		strings.Contains(normalizeEncoding(v, true, false), "gzip") && compressible(resp.StatusCode, h, resp.ContentLength) {
		e.stats.compressed.Add(1)
		resp.Body = gzipStream(resp.Body)
		resp.ContentLength = -1
		h.Del("Content-Length")
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
		h["Vary"] = []string{strings.Join(filterVary(h.Values("Vary"), func(string) bool { return true }), ", ")}
		if et := weakETag(h.Get("ETag")); et != "" {
			h.Set("ETag", et)
		} else {
			h.Del("ETag")
		}
	}
	return nil
}

// gzipStream compresses body as it is read.
func gzipStream(body io.ReadCloser) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		zw := gzipWriters.Get().(*gzip.Writer)
		zw.Reset(pw)
		_, err := io.Copy(zw, body)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		gzipWriters.Put(zw)
		body.Close()
		pw.CloseWithError(err)
	}()
	return &pipeBody{PipeReader: pr, src: body}
}

// pipeBody closes the origin body when the viewer side is closed early.
type pipeBody struct {
	*io.PipeReader
	src io.Closer
}

func (p *pipeBody) Close() error {
	p.src.Close()
	return p.PipeReader.Close()
}

// proxyError answers a forwarded request that got no response.
func (e *Edge) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the viewer went away
	}
	e.originFailure(w, err)
}
