package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// fetchResult is what one origin fetch of a cache key gives every request
// that waited for it.
type fetchResult struct {
	// ent is the object to serve; it may not have been stored (no-store, or
	// invalidated while in flight).
	ent *entry
	// refreshed reports an expired object the origin confirmed with 304.
	refreshed bool
	// stale reports an expired object served because the origin failed.
	stale bool
	// tooBig reports an object above MaxObjectBytes: every waiter streams
	// it from the origin uncached.
	tooBig bool
	// err reports an origin that could not be reached or timed out, with
	// nothing cached to serve instead.
	err error
}

// serveCached serves a GET or HEAD of a caching behaviour: from the cache
// when it may, else through one collapsed origin fetch per key.
func (e *Edge) serveCached(w http.ResponseWriter, r *http.Request, rq *request) {
	b := rq.b
	if r.Header.Get("Range") == "" {
		rq.enc = normalizeEncoding(r, b.gzip, b.br) // "" unless the cache policy enables it
	}
	rq.key = e.cacheKey(r, rq)
	now := e.clock.Now()
	old := e.store.get(rq.key)
	if old != nil {
		age := old.age(now)
		switch freshness(age, old.ttl, old.swr, old.noStale) {
		case stateFresh:
			e.stats.hits.Add(1)
			e.serveEntry(w, r, old, outHit, age)
			return
		case stateStaleWhileRevalidate:
			e.stats.hits.Add(1)
			e.stats.staleServed.Add(1)
			if !now.Before(old.failedUntil) {
				e.revalidateInBackground(r, rq, old)
			}
			e.serveEntry(w, r, old, outHit, age)
			return
		}
		if now.Before(old.failedUntil) && staleOnError(age, old.ttl, old.sie, old.noStale) {
			// The origin failed within the error caching TTL: do not ask again yet.
			e.stats.staleServed.Add(1)
			e.stats.staleIfError.Add(1)
			e.serveEntry(w, r, old, outHit, age)
			return
		}
	}
	gen := e.store.generation()
	or := e.fetchRequest(r, rq, old)
	res, joined, err := e.flights.do(r.Context(), flightKey(rq.key, gen), e.goFetch, func() fetchResult {
		return e.fetch(rq, or, old, gen)
	}, func() { e.stats.collapsed.Add(1) })
	if err != nil {
		return // the viewer went away; the fetch goes on for the others
	}
	now = e.clock.Now()
	switch {
	case res.tooBig:
		e.passThrough(w, r, rq)
	case res.err != nil:
		e.stats.misses.Add(1)
		e.originFailure(w, res.err)
	case res.stale:
		e.stats.staleServed.Add(1)
		e.stats.staleIfError.Add(1)
		e.serveEntry(w, r, res.ent, outHit, res.ent.age(now))
	case joined:
		e.stats.hits.Add(1)
		e.serveEntry(w, r, res.ent, outHit, res.ent.age(now))
	case res.refreshed:
		e.stats.refreshHits.Add(1)
		e.serveEntry(w, r, res.ent, outRefreshHit, res.ent.age(now))
	default:
		e.stats.misses.Add(1)
		e.serveEntry(w, r, res.ent, outMiss, res.ent.age(now))
	}
}

// flightKey scopes collapsing to one invalidation generation, so a request
// that arrives after an invalidation never joins a fetch started before it.
func flightKey(key string, gen uint64) string {
	return strconv.FormatUint(gen, 36) + " " + key
}

// goFetch runs an origin fetch in its own goroutine, which Stop waits for.
// Once Stop has begun it runs the fetch in the caller instead, so no
// goroutine is added while Stop waits for the others.
func (e *Edge) goFetch(run func()) {
	e.mu.Lock()
	stopping := e.stopped
	if !stopping {
		e.wg.Add(1)
	}
	e.mu.Unlock()
	if stopping {
		run()
		return
	}
	go func() {
		defer e.wg.Done()
		run()
	}()
}

// revalidateInBackground starts one revalidation of old unless one is in
// flight (stale-while-revalidate).
func (e *Edge) revalidateInBackground(r *http.Request, rq *request, old *entry) {
	gen := e.store.generation()
	or := e.fetchRequest(r, rq, old)
	bg := *rq
	bg.viewer = nil
	e.flights.launch(flightKey(rq.key, gen), e.goFetch, func() fetchResult {
		res := e.fetch(&bg, or, old, gen)
		if res.err != nil {
			e.log.Info("background revalidation failed", "path", bg.rawPath, "err", res.err)
		}
		return res
	})
}

// fetchRequest is the origin request that fills or revalidates a key: a
// GET with the forwarded values, the normalized Accept-Encoding, and the
// stored object's validators.
func (e *Edge) fetchRequest(r *http.Request, rq *request, old *entry) *originRequest {
	b := rq.b
	h := e.forwardedHeaders(r, rq, true)
	if rq.enc != "" {
		h.Set("Accept-Encoding", rq.enc)
	}
	if old != nil && !old.isError {
		if old.originETag != "" {
			h.Set("If-None-Match", old.originETag)
		}
		if old.lastModified != "" {
			h.Set("If-Modified-Since", old.lastModified)
		}
	}
	or := &originRequest{method: http.MethodGet, rawPath: rq.rawPath, header: h, contentLength: 0,
		rawQuery: filterQuery(rq.rawQuery, b.forwardQuery)}
	if b.forwardHost {
		or.host = r.Host
	}
	return or
}

// fetchContext is the context of one origin fetch: detached from the
// viewer that started it, cancelled by Stop.
func (e *Edge) fetchContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-e.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// errTooBig marks a body above MaxObjectBytes.
var errTooBig = errors.New("object is larger than max_object_bytes")

// fetch asks the origin for a key and stores what CloudFront would: the
// object, a 304's refresh, or an error response; when the origin fails it
// falls back to the stale object if that may be served.
func (e *Edge) fetch(rq *request, or *originRequest, old *entry, gen uint64) (res fetchResult) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("origin fetch panicked", "path", rq.rawPath, "panic", p)
			res = fetchResult{err: fmt.Errorf("fetch %s: internal error", rq.rawPath)}
		}
	}()
	ctx, cancel := e.fetchContext()
	defer cancel()
	resp, err := e.roundTrip(ctx, rq.b.target, or)
	if err != nil {
		return e.failed(old, err)
	}
	defer resp.Body.Close()
	now := e.clock.Now()
	if resp.StatusCode == http.StatusNotModified && old != nil {
		return e.refresh(rq, old, resp.Header, now, gen)
	}
	if resp.StatusCode >= 500 && old != nil && !old.isError && staleOnError(old.age(now), old.ttl, old.sie, old.noStale) {
		return e.failed(old, fmt.Errorf("origin answered %d", resp.StatusCode))
	}
	if resp.ContentLength > e.cfg.MaxObjectBytes {
		return fetchResult{tooBig: true}
	}
	body, err := readBody(resp, e.cfg.MaxObjectBytes, e.cfg.ResponseTimeout, cancel)
	if errors.Is(err, errTooBig) {
		return fetchResult{tooBig: true}
	}
	if err != nil {
		e.stats.originErrors.Add(1)
		return e.failed(old, fmt.Errorf("read body from origin: %w", err))
	}
	now = e.clock.Now()
	ent := e.newEntry(rq, resp, body, now)
	if d := decideStore(rq.b.cfg.CachePolicy, resp.StatusCode, resp.Header, now, e.errorTTL()); d.store {
		ent.ttl, ent.swr, ent.sie, ent.noStale, ent.isError = d.ttl, d.swr, d.sie, d.noStale, d.isError
		e.store.put(ent, gen)
	} else {
		e.log.Debug("not cached", "path", rq.rawPath, "status", resp.StatusCode, "reason", d.reason)
	}
	return fetchResult{ent: ent}
}

func (e *Edge) errorTTL() time.Duration {
	if e.cfg.DisableErrorCaching {
		return 0
	}
	return e.cfg.ErrorCachingMinTTL
}

// failed is an origin failure: the stale object if it may be served (marked
// so the origin is not asked again within the error caching TTL), else the
// error.
func (e *Edge) failed(old *entry, err error) fetchResult {
	if old == nil || old.isError {
		return fetchResult{err: err}
	}
	now := e.clock.Now()
	if !staleOnError(old.age(now), old.ttl, old.sie, old.noStale) {
		return fetchResult{err: err}
	}
	if ttl := e.errorTTL(); ttl > 0 {
		marked := old.with(func(c *entry) { c.failedUntil = now.Add(ttl) })
		if e.store.replace(old, marked) {
			old = marked
		}
	}
	e.log.Info("serving stale object, origin failed", "path", old.path, "err", err)
	e.emit(Event{Kind: EventServingStale, Subject: old.path, Message: fmt.Sprintf("serving %s stale: %v", old.path, err),
		Attrs: map[string]any{"reason": err.Error(), "age_s": int64(old.age(now) / time.Second)}})
	return fetchResult{ent: old, stale: true}
}

// refresh applies a 304 to a stored object: its headers are updated from the
// 304 (RFC 9111 §4.3.4), its TTL decided anew, and its age restarted.
func (e *Edge) refresh(rq *request, old *entry, h304 http.Header, now time.Time, gen uint64) fetchResult {
	upd := e.sanitize(rq.b, h304)
	for _, k := range []string{"Content-Length", "Content-Encoding", "Content-Range", "Content-Type"} {
		upd.Del(k)
	}
	h := old.header.Clone()
	for k, v := range upd {
		h[k] = v
	}
	if old.edgeCompressed { // the origin's Vary does not know the edge compressed
		h.Add("Vary", "Accept-Encoding")
		h["Vary"] = []string{strings.Join(filterVary(h.Values("Vary"), func(string) bool { return true }), ", ")}
	}
	originETag := old.originETag
	if et := h304.Get("ETag"); et != "" {
		originETag = et
		if old.edgeCompressed {
			if w := weakETag(et); w != "" {
				h.Set("ETag", w)
			} else {
				h.Del("ETag")
			}
		}
	}
	d := decideStore(rq.b.cfg.CachePolicy, old.status, h, now, e.errorTTL())
	ent := old.with(func(c *entry) {
		c.header, c.originETag, c.born, c.failedUntil = h, originETag, now.Add(-initialAge(h304)), time.Time{}
		if lm := h.Get("Last-Modified"); lm != "" {
			c.lastModified = lm
			c.modTime, _ = http.ParseTime(lm)
		}
		c.ttl, c.swr, c.sie, c.noStale = d.ttl, d.swr, d.sie, d.noStale
	})
	if d.store {
		e.store.put(ent, gen)
	}
	return fetchResult{ent: ent, refreshed: true}
}

// newEntry builds an entry from an origin response, compressed when the
// viewer's normalized encoding and CloudFront's rules allow.
func (e *Edge) newEntry(rq *request, resp *http.Response, body []byte, now time.Time) *entry {
	h := e.sanitize(rq.b, resp.Header)
	ent := &entry{key: rq.key, path: rq.rawPath, status: resp.StatusCode, header: h, body: body,
		born: now.Add(-initialAge(resp.Header)), originETag: resp.Header.Get("ETag"),
		lastModified: resp.Header.Get("Last-Modified"), swr: -1, sie: -1}
	if ent.lastModified != "" {
		ent.modTime, _ = http.ParseTime(ent.lastModified)
	}
	coding := ""
	switch {
	case strings.Contains(rq.enc, "br"):
		coding = "br" // CloudFront prefers Brotli when the viewer accepts both
	case strings.Contains(rq.enc, "gzip"):
		coding = "gzip"
	}
	if coding != "" && rq.b.cfg.Compress && resp.ContentLength >= 0 && compressible(resp.StatusCode, resp.Header, int64(len(body))) {
		ent.body, ent.edgeCompressed = compressBody(coding, body), true
		h.Set("Content-Encoding", coding)
		h.Add("Vary", "Accept-Encoding")
		h["Vary"] = []string{strings.Join(filterVary(h.Values("Vary"), func(string) bool { return true }), ", ")}
		if et := weakETag(ent.originETag); et != "" {
			h.Set("ETag", et)
		} else {
			h.Del("ETag")
		}
		e.stats.compressed.Add(1)
	}
	ent.lengthValue = []string{strconv.Itoa(len(ent.body))}
	return ent
}

// sanitize copies an origin's response headers as the edge keeps them:
// without hop-by-hop fields, Age, X-Cache, Via or Content-Length; without
// Set-Cookie unless the behaviour forwards cookies; with only the Vary
// values CloudFront returns.
func (e *Edge) sanitize(b *behavior, src http.Header) http.Header {
	h := src.Clone()
	for _, f := range h.Values("Connection") {
		for name := range strings.SplitSeq(f, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	for _, k := range []string{"Age", "X-Cache", "Via", "Content-Length"} {
		h.Del(k)
	}
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
	return h
}

// readBody reads a response body of at most limit bytes, failing if the
// origin pauses for longer than idle between reads.
func readBody(resp *http.Response, limit int64, idle time.Duration, cancel context.CancelFunc) ([]byte, error) {
	t := time.AfterFunc(idle, cancel)
	defer t.Stop()
	size := 32 << 10
	if resp.ContentLength >= 0 {
		size = int(resp.ContentLength) + 1
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	chunk := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(chunk)
		t.Reset(idle)
		buf.Write(chunk[:n])
		if int64(buf.Len()) > limit {
			return nil, errTooBig
		}
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}
