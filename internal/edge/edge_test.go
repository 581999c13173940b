package edge

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/iam"
)

func TestSecondRequestIsAHit(t *testing.T) {
	o := newOrigin(t, static("body{color:red}", "Content-Type", "text/css", "Cache-Control", "max-age=300"))
	e, clk := newTestEdge(t, o, nil)
	w := get(e, "/static/app.css")
	want(t, w, 200, miss, "body{color:red}")
	if _, ok := w.Header()["Age"]; ok {
		t.Errorf("a miss carries Age %q", w.Header().Get("Age"))
	}
	clk.Advance(100 * time.Second)
	w = get(e, "/static/app.css")
	want(t, w, 200, hit, "body{color:red}")
	if age := w.Header().Get("Age"); age != "100" {
		t.Errorf("Age = %q, want 100", age)
	}
	if o.count() != 1 {
		t.Errorf("origin requests = %d, want 1", o.count())
	}
	// HEAD is served from the same object.
	w = do(e, http.MethodHead, "/static/app.css")
	want(t, w, 200, hit, "")
	if w.Body.Len() != 0 || w.Header().Get("Content-Length") != "15" {
		t.Errorf("HEAD: body %d bytes, Content-Length %q", w.Body.Len(), w.Header().Get("Content-Length"))
	}
	// Query strings, cookies and headers outside the cache policy do not split the cache.
	want(t, get(e, "/static/app.css?v=2", "Cookie", "session=abc", "Accept-Language", "fr"), 200, hit, "")
	s := e.Stats()
	if s.Hits != 3 || s.Misses != 1 || s.Requests != 4 || s.HitRatio != 0.75 || s.Objects != 1 || s.Bytes <= 15 {
		t.Errorf("stats = %+v", s)
	}
	if r := o.last(); r.Header.Get("Cookie") != "" || r.URL.RawQuery != "" || r.Header.Get("X-Forwarded-For") != "192.0.2.1" {
		t.Errorf("origin request carried %v %q", r.Header, r.URL.RawQuery)
	}
}

// TestTTLExpiryAndRefresh moves the fake clock past the TTL: the edge asks
// the origin with the stored ETag, and a 304 is a RefreshHit.
func TestTTLExpiryAndRefresh(t *testing.T) {
	o := newOrigin(t, static("v1", "Cache-Control", "max-age=60", "ETag", `"v1"`, "Last-Modified", "Mon, 30 Nov 2026 06:00:00 GMT"))
	e, clk := newTestEdge(t, o, nil)
	want(t, get(e, "/static/a.js"), 200, miss, "v1")
	clk.Advance(59 * time.Second)
	want(t, get(e, "/static/a.js"), 200, hit, "v1")
	clk.Advance(time.Second)
	w := get(e, "/static/a.js")
	want(t, w, 200, refreshHit, "v1")
	if r := o.last(); r.Header.Get("If-None-Match") != `"v1"` || r.Header.Get("If-Modified-Since") == "" {
		t.Errorf("revalidation without validators: %v", r.Header)
	}
	if w.Header().Get("Age") != "0" {
		t.Errorf("Age after refresh = %q, want 0", w.Header().Get("Age"))
	}
	want(t, get(e, "/static/a.js"), 200, hit, "v1")
	// The object changes: the next expiry brings the new one as a miss.
	o.set(static("v2", "Cache-Control", "max-age=60", "ETag", `"v2"`))
	clk.Advance(61 * time.Second)
	want(t, get(e, "/static/a.js"), 200, miss, "v2")
	if o.count() != 3 {
		t.Errorf("origin requests = %d, want 3", o.count())
	}
	if s := e.Stats(); s.RefreshHits != 1 || s.Misses != 2 || s.Hits != 2 {
		t.Errorf("stats = %+v", s)
	}
}

// TestMaxTTLClampsOriginMaxAge: the behaviour's max TTL bounds the origin's max-age.
func TestMaxTTLClampsOriginMaxAge(t *testing.T) {
	o := newOrigin(t, static("x", "Cache-Control", "max-age=31536000"))
	e, clk := newTestEdge(t, o, func(c *Config) {
		c.Behaviors[0].CachePolicy.MaxTTL = 100 * time.Second
		c.Behaviors[0].CachePolicy.DefaultTTL = 100 * time.Second
	})
	get(e, "/static/x")
	clk.Advance(99 * time.Second)
	want(t, get(e, "/static/x"), 200, hit, "x")
	clk.Advance(2 * time.Second)
	want(t, get(e, "/static/x"), 200, miss, "x")
}

// TestNoStoreAndMinTTL: no-store is honoured with min TTL 0; with a min
// TTL the object is cached for it (CloudFront's rule).
func TestNoStoreAndMinTTL(t *testing.T) {
	o := newOrigin(t, static("x", "Cache-Control", "no-store, private"))
	e, clk := newTestEdge(t, o, func(c *Config) {
		c.Behaviors[0].CachePolicy.MinTTL = 0
		b := cachedBehavior("/min/*")
		b.CachePolicy.MinTTL = 30 * time.Second
		c.Behaviors = append(c.Behaviors, b)
	})
	get(e, "/static/x")
	get(e, "/static/x")
	if o.count() != 2 {
		t.Errorf("no-store with min TTL 0: origin requests = %d, want 2", o.count())
	}
	want(t, get(e, "/min/x"), 200, miss, "x")
	want(t, get(e, "/min/x"), 200, hit, "x")
	clk.Advance(30 * time.Second)
	want(t, get(e, "/min/x"), 200, miss, "x")
}

// TestVary: header values in the cache key split the cache and Vary on them
// is returned; Vary on other headers is dropped and does not split it;
// Vary: * with min TTL 0 is not cached.
func TestVary(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept-Language, User-Agent")
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	e, _ := newTestEdge(t, o, func(c *Config) {
		c.Behaviors[0].CachePolicy.Headers = Items{Behavior: Whitelist, Names: []string{"accept-language"}}
		star := cachedBehavior("/star/*")
		star.CachePolicy.MinTTL = 0
		c.Behaviors = append(c.Behaviors, star)
	})
	w := get(e, "/static/page", "Accept-Language", "en", "User-Agent", "a")
	want(t, w, 200, miss, "lang=en")
	if v := w.Header().Get("Vary"); v != "Accept-Language" {
		t.Errorf("Vary = %q, want Accept-Language", v)
	}
	want(t, get(e, "/static/page", "Accept-Language", "fr", "User-Agent", "a"), 200, miss, "lang=fr")
	want(t, get(e, "/static/page", "Accept-Language", "en", "User-Agent", "b"), 200, hit, "lang=en")
	want(t, get(e, "/static/page", "Accept-Language", "fr", "User-Agent", "c"), 200, hit, "lang=fr")
	if o.count() != 2 {
		t.Errorf("origin requests = %d, want 2 (one per language)", o.count())
	}
	if ua := o.last().Header.Get("User-Agent"); ua != "haven-edge" {
		t.Errorf("origin saw User-Agent %q; only key and policy headers are forwarded", ua)
	}

	o.set(static("star", "Vary", "*", "Cache-Control", "max-age=600"))
	before := o.count()
	get(e, "/star/x")
	get(e, "/star/x")
	if o.count()-before != 2 {
		t.Errorf("Vary: * with min TTL 0: origin requests = %d, want 2", o.count()-before)
	}
}

// TestCollapsing: N concurrent misses of one key make one origin request.
func TestCollapsing(t *testing.T) {
	release, open := gate(t)
	defer open()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "collapsed")
	})
	e, _ := newTestEdge(t, o, nil)
	const n = 25
	res := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { res[i] = get(e, "/static/exam.pdf") })
	}
	waitFor(t, "every request to join the one fetch", func() bool {
		return e.Stats().Collapsed == n-1 && o.count() == 1
	})
	open()
	wg.Wait()
	for i, w := range res {
		if w.Code != 200 || w.Body.String() != "collapsed" {
			t.Fatalf("request %d: %d %q", i, w.Code, w.Body)
		}
	}
	if o.count() != 1 {
		t.Errorf("origin requests = %d, want 1", o.count())
	}
	if s := e.Stats(); s.Misses != 1 || s.Hits != n-1 {
		t.Errorf("stats = %+v, want 1 miss and %d hits", s, n-1)
	}
}

// TestCollapsingUncacheable: requests that wait on a no-store response share
// it (CloudFront's traffic-spike exception) but the next request fetches again.
func TestCollapsingUncacheable(t *testing.T) {
	release, open := gate(t)
	defer open()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "fresh")
	})
	e, _ := newTestEdge(t, o, func(c *Config) { c.Behaviors[0].CachePolicy.MinTTL = 0 })
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { get(e, "/static/x") })
	}
	waitFor(t, "requests to join", func() bool { return e.Stats().Collapsed == 4 })
	open()
	wg.Wait()
	get(e, "/static/x")
	if o.count() != 2 {
		t.Errorf("origin requests = %d, want 2", o.count())
	}
}

// TestStaleWhileRevalidate serves the stale object at once and really
// revalidates in the background: once per object however many stale
// requests arrive while the revalidation is in flight.
func TestStaleWhileRevalidate(t *testing.T) {
	o := newOrigin(t, static("v1", "Cache-Control", "max-age=10, stale-while-revalidate=60", "ETag", `"v1"`))
	e, clk := newTestEdge(t, o, nil)
	want(t, get(e, "/static/s.css"), 200, miss, "v1")
	// The origin holds the revalidation until the test opens the gate, so
	// what the edge serves meanwhile does not depend on the scheduler.
	release, open := gate(t)
	defer open()
	v2 := static("v2", "Cache-Control", "max-age=10, stale-while-revalidate=60", "ETag", `"v2"`)
	o.set(func(w http.ResponseWriter, r *http.Request) { <-release; v2(w, r) })
	clk.Advance(15 * time.Second)
	w := get(e, "/static/s.css") // returns although the origin has not answered
	want(t, w, 200, hit, "v1")
	if w.Header().Get("Age") != "15" {
		t.Errorf("stale Age = %q, want 15", w.Header().Get("Age"))
	}
	waitFor(t, "the background revalidation to reach the origin", func() bool { return o.count() == 2 })
	// A second stale request while the revalidation is in flight is served
	// stale too and starts no revalidation of its own.
	want(t, get(e, "/static/s.css"), 200, hit, "v1")
	open()
	// Every revalidation a request launched is registered before that
	// request returns, so none in flight means all have been stored.
	waitFor(t, "the background revalidation to finish", func() bool { return e.flights.inFlight() == 0 })
	if r := o.last(); r.Header.Get("If-None-Match") != `"v1"` {
		t.Errorf("background revalidation sent If-None-Match %q", r.Header.Get("If-None-Match"))
	}
	want(t, get(e, "/static/s.css"), 200, hit, "v2")
	if o.count() != 2 {
		t.Errorf("origin requests = %d, want 2 (one fill, one revalidation)", o.count())
	}
	if s := e.Stats(); s.StaleServed != 2 || s.Hits != 3 || s.Misses != 1 {
		t.Errorf("stats = %+v, want 2 stale served, 3 hits, 1 miss", s)
	}
	// Past the window, the request waits for the origin.
	clk.Advance(100 * time.Second)
	want(t, get(e, "/static/s.css"), 200, refreshHit, "v2")
}

// TestStaleIfErrorOriginStopped stops the origin: the expired object is
// served within its stale-if-error window, then the error is.
func TestStaleIfErrorOriginStopped(t *testing.T) {
	o := newOrigin(t, static("cached", "Cache-Control", "max-age=10, stale-if-error=60"))
	var events eventLog
	e, clk := newTestEdge(t, o, func(c *Config) { c.ConnectionTimeout = time.Second; c.OnEvent = events.add })
	want(t, get(e, "/static/m.pdf"), 200, miss, "cached")
	o.srv.Close()
	clk.Advance(30 * time.Second)
	want(t, get(e, "/static/m.pdf"), 200, hit, "cached")
	s := e.Stats()
	if s.StaleIfError != 1 || s.OriginErrors == 0 {
		t.Fatalf("stats = %+v, want 1 stale-if-error and origin errors", s)
	}
	// Within the error caching TTL the edge does not ask the origin again.
	originReqs := s.OriginRequests
	want(t, get(e, "/static/m.pdf"), 200, hit, "cached")
	if got := e.Stats().OriginRequests; got != originReqs {
		t.Errorf("origin asked again within the error caching TTL: %d → %d", originReqs, got)
	}
	clk.Advance(11 * time.Second) // 41 s old, 31 s stale: still within 60 s
	want(t, get(e, "/static/m.pdf"), 200, hit, "cached")
	clk.Advance(40 * time.Second) // 71 s stale
	w := get(e, "/static/m.pdf")
	want(t, w, 502, errorX, "")
	if !strings.Contains(w.Body.String(), "could not connect to the origin") {
		t.Errorf("502 body %q", w.Body)
	}
	// One event per object and error caching TTL, not per request.
	if k := events.kinds(); len(k) != 2 || k[0] != EventServingStale || k[1] != EventServingStale {
		t.Errorf("events = %v, want two %s", k, EventServingStale)
	}
}

// TestStaleIfErrorOn5xx serves the stale object when the origin answers 503.
func TestStaleIfErrorOn5xx(t *testing.T) {
	o := newOrigin(t, static("good", "Cache-Control", "max-age=10, stale-if-error=60"))
	e, clk := newTestEdge(t, o, nil)
	get(e, "/static/x")
	o.set(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	clk.Advance(20 * time.Second)
	want(t, get(e, "/static/x"), 200, hit, "good")
	clk.Advance(100 * time.Second)
	w := get(e, "/static/x")
	want(t, w, 503, errorX, "down\n")
	// The 503 is cached for the error caching TTL.
	n := o.count()
	want(t, get(e, "/static/x"), 503, errorX, "")
	if o.count() != n {
		t.Errorf("cached 503 not served from cache")
	}
}

// TestOriginUnavailableWithoutStaleIfError: CloudFront serves an expired
// object while its origin is down; must-revalidate forbids it.
func TestOriginUnavailableWithoutStaleIfError(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "strict") {
			w.Header().Set("Cache-Control", "max-age=10, must-revalidate")
		} else {
			w.Header().Set("Cache-Control", "max-age=10")
		}
		io.WriteString(w, "old")
	})
	e, clk := newTestEdge(t, o, nil)
	get(e, "/static/lax")
	get(e, "/static/strict")
	o.srv.Close()
	clk.Advance(24 * time.Hour)
	want(t, get(e, "/static/lax"), 200, hit, "old")
	want(t, get(e, "/static/strict"), 502, errorX, "")
}

// TestErrorCaching: 404 is cached for the error caching TTL; 403 without
// max-age is not.
func TestErrorCaching(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "forbidden") {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		http.NotFound(w, r)
	})
	e, clk := newTestEdge(t, o, nil)
	want(t, get(e, "/static/missing"), 404, errorX, "")
	want(t, get(e, "/static/missing"), 404, errorX, "")
	if o.count() != 1 {
		t.Errorf("404 not cached: origin requests = %d", o.count())
	}
	clk.Advance(10 * time.Second)
	get(e, "/static/missing")
	if o.count() != 2 {
		t.Errorf("404 cached beyond the error caching TTL")
	}
	get(e, "/static/forbidden")
	get(e, "/static/forbidden")
	if o.count() != 4 {
		t.Errorf("403 without max-age cached: origin requests = %d, want 4", o.count())
	}
}

// TestInvalidation removes objects at once, by exact path and by prefix.
func TestInvalidation(t *testing.T) {
	o := newOrigin(t, static("x", "Cache-Control", "max-age=3600"))
	var events eventLog
	e, _ := newTestEdge(t, o, func(c *Config) { c.OnEvent = events.add })
	for _, p := range []string{"/static/a.css", "/static/b.css", "/static/img/c.png"} {
		get(e, p)
		get(e, p, "Accept-Encoding", "gzip") // a second variant of each
	}
	if o.count() != 6 {
		t.Fatalf("origin requests = %d, want 6", o.count())
	}
	n, err := e.Invalidate("/static/a.css")
	if err != nil || n != 2 {
		t.Fatalf("Invalidate(/static/a.css) = %d, %v; want 2 variants", n, err)
	}
	want(t, get(e, "/static/a.css"), 200, miss, "x")
	want(t, get(e, "/static/b.css"), 200, hit, "x")
	if n, err = e.Invalidate("/static/*"); err != nil || n != 5 {
		t.Fatalf("Invalidate(/static/*) = %d, %v; want 5", n, err)
	}
	want(t, get(e, "/static/b.css"), 200, miss, "x")
	want(t, get(e, "/static/img/c.png"), 200, miss, "x")
	for _, bad := range []string{"static/*", "/st*tic", "", "/a b"} {
		if _, err := e.Invalidate(bad); !errors.Is(err, ErrBadInvalidation) {
			t.Errorf("Invalidate(%q) = %v, want ErrBadInvalidation", bad, err)
		}
	}
	if s := e.Stats(); s.Invalidations != 2 || s.InvalidatedObjects != 7 {
		t.Errorf("stats = %+v", s)
	}
	if k := events.kinds(); len(k) != 2 || k[1] != EventInvalidated || events.events[1].Attrs["objects"] != 5 {
		t.Errorf("events = %+v", events.events)
	}
}

// TestInvalidationDuringFetch: an object fetched while an invalidation
// happens is served to its requester but not stored.
func TestInvalidationDuringFetch(t *testing.T) {
	release, open := gate(t)
	defer open()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-Block") == "" {
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, "old")
	})
	e, _ := newTestEdge(t, o, func(c *Config) {
		c.Behaviors[0].OriginRequestPolicy = OriginRequestPolicy{Headers: Items{Behavior: Whitelist, Names: []string{"X-Test-Block"}}}
	})
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- get(e, "/static/doc.pdf") }()
	waitFor(t, "the fetch to reach the origin", func() bool { return o.count() == 1 })
	if _, err := e.Invalidate("/static/*"); err != nil {
		t.Fatal(err)
	}
	open()
	want(t, <-done, 200, miss, "old")
	want(t, get(e, "/static/doc.pdf"), 200, miss, "old")
	if o.count() != 2 {
		t.Errorf("origin requests = %d, want 2: the invalidated fetch must not be stored", o.count())
	}
}

// TestRanges serves byte ranges from the cached object as CloudFront does.
func TestRanges(t *testing.T) {
	body := strings.Repeat("0123456789", 1000) // 10000 bytes
	o := newOrigin(t, static(body, "Content-Type", "application/pdf", "Cache-Control", "max-age=3600", "ETag", `"r1"`))
	e, _ := newTestEdge(t, o, nil)
	w := get(e, "/static/book.pdf", "Range", "bytes=0-99")
	want(t, w, 206, miss, body[:100])
	if cr := w.Header().Get("Content-Range"); cr != "bytes 0-99/10000" {
		t.Errorf("Content-Range = %q", cr)
	}
	if r := o.last(); r.Header.Get("Range") != "" {
		t.Errorf("the edge forwarded Range %q; it fetches the whole object", r.Header.Get("Range"))
	}
	want(t, get(e, "/static/book.pdf", "Range", "bytes=9990-"), 206, hit, body[9990:])
	want(t, get(e, "/static/book.pdf", "Range", "bytes=-5"), 206, hit, body[9995:])
	// Not ascending, overlapping or malformed: the whole object (CloudFront).
	for _, rg := range []string{"bytes=300-400,100-200", "bytes=100-200,150-250", "bytes=5-1", "lines=1-2", "bytes=x"} {
		want(t, get(e, "/static/book.pdf", "Range", rg), 200, hit, body)
	}
	w = get(e, "/static/book.pdf", "Range", "bytes=20000-")
	want(t, w, 416, "", "")
	if cr := w.Header().Get("Content-Range"); cr != "bytes */10000" {
		t.Errorf("416 Content-Range = %q", cr)
	}
	w = get(e, "/static/book.pdf", "Range", "bytes=0-0,5-5")
	want(t, w, 206, hit, "")
	mt, params, _ := mime.ParseMediaType(w.Header().Get("Content-Type"))
	if mt != "multipart/byteranges" {
		t.Fatalf("multi-range Content-Type = %q", w.Header().Get("Content-Type"))
	}
	mr := multipart.NewReader(w.Body, params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, string(b))
	}
	if strings.Join(parts, ",") != "0,5" {
		t.Errorf("parts = %q", parts)
	}
	// If-Range with the current ETag gets the range; with another, the whole object.
	want(t, get(e, "/static/book.pdf", "Range", "bytes=0-1", "If-Range", `"r1"`), 206, hit, "01")
	want(t, get(e, "/static/book.pdf", "Range", "bytes=0-1", "If-Range", `"old"`), 200, hit, body)
	if o.count() != 1 {
		t.Errorf("origin requests = %d, want 1", o.count())
	}
}

// TestConditionalRequests answers viewers' validators from the cache.
func TestConditionalRequests(t *testing.T) {
	lm := "Mon, 30 Nov 2026 06:00:00 GMT"
	o := newOrigin(t, static("data", "Cache-Control", "max-age=3600", "ETag", `"e1"`, "Last-Modified", lm))
	e, _ := newTestEdge(t, o, nil)
	get(e, "/static/d")
	w := get(e, "/static/d", "If-None-Match", `"e1"`)
	want(t, w, 304, hit, "")
	if w.Header().Get("ETag") != `"e1"` || w.Body.Len() != 0 {
		t.Errorf("304 headers %v body %q", w.Header(), w.Body)
	}
	want(t, get(e, "/static/d", "If-None-Match", `W/"e1", "x"`), 304, hit, "")
	want(t, get(e, "/static/d", "If-None-Match", `"e2"`), 200, hit, "data")
	want(t, get(e, "/static/d", "If-Modified-Since", lm), 304, hit, "")
	want(t, get(e, "/static/d", "If-Modified-Since", "Mon, 30 Nov 2026 05:00:00 GMT"), 200, hit, "data")
	// If-None-Match wins over If-Modified-Since.
	want(t, get(e, "/static/d", "If-None-Match", `"e2"`, "If-Modified-Since", lm), 200, hit, "data")
	want(t, get(e, "/static/d", "If-Match", `"zz"`), 412, hit, "")
	if o.count() != 1 {
		t.Errorf("origin requests = %d, want 1", o.count())
	}
	for _, r := range o.reqs {
		if r.Header.Get("If-None-Match") != "" {
			t.Errorf("viewer validators reached the origin")
		}
	}
}

// TestCompression compresses compressible objects with Brotli or gzip for
// viewers that accept them (Brotli first, as CloudFront), caches each
// encoding separately, and leaves the rest alone.
func TestCompression(t *testing.T) {
	css := strings.Repeat(".a{color:red}\n", 200)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/static/app.css":
			w.Header().Set("Content-Type", "text/css")
			w.Header().Set("ETag", `"c1"`)
			w.Header().Set("Content-Length", fmt.Sprint(len(css)))
			io.WriteString(w, css)
		case "/static/chunked.css":
			w.Header().Set("Content-Type", "text/css")
			io.WriteString(w, css) // no Content-Length: CloudFront does not compress
		case "/static/small.css":
			w.Header().Set("Content-Type", "text/css")
			io.WriteString(w, "a{}")
		case "/static/img.png":
			w.Header().Set("Content-Type", "image/png")
			io.WriteString(w, css)
		case "/static/pre.js":
			w.Header().Set("Content-Type", "text/javascript")
			w.Header().Set("Content-Encoding", "gzip")
			io.WriteString(w, "already-gzipped")
		}
	})
	e, _ := newTestEdge(t, o, nil)
	w := get(e, "/static/app.css", "Accept-Encoding", "gzip, deflate, br")
	want(t, w, 200, miss, "")
	if w.Header().Get("Content-Encoding") != "br" || w.Header().Get("ETag") != `W/"c1"` || w.Header().Get("Vary") != "Accept-Encoding" {
		t.Fatalf("headers %v", w.Header())
	}
	if ae := o.last().Header.Get("Accept-Encoding"); ae != "br,gzip" {
		t.Errorf("origin Accept-Encoding = %q, want the normalized br,gzip", ae)
	}
	if plain, _ := io.ReadAll(brotli.NewReader(w.Body)); string(plain) != css || w.Body.Len() >= len(css) {
		t.Errorf("br body does not decode to the object")
	}
	want(t, get(e, "/static/app.css", "Accept-Encoding", "br, gzip"), 200, hit, "")
	w = get(e, "/static/app.css", "Accept-Encoding", "gzip")
	want(t, w, 200, miss, "")
	if w.Header().Get("Content-Encoding") != "gzip" || w.Header().Get("ETag") != `W/"c1"` {
		t.Fatalf("gzip headers %v", w.Header())
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); string(plain) != css {
		t.Errorf("gzip body does not decode to the object")
	}
	w = get(e, "/static/app.css")
	want(t, w, 200, miss, css) // CloudFront fetches the identity variant on its own
	if w.Header().Get("Content-Encoding") != "" || w.Header().Get("ETag") != `"c1"` {
		t.Errorf("identity variant headers %v", w.Header())
	}
	for _, p := range []string{"/static/small.css", "/static/img.png", "/static/chunked.css"} {
		if w := get(e, p, "Accept-Encoding", "gzip"); w.Header().Get("Content-Encoding") != "" {
			t.Errorf("%s compressed", p)
		}
	}
	if w := get(e, "/static/pre.js", "Accept-Encoding", "gzip"); w.Body.String() != "already-gzipped" {
		t.Errorf("origin-compressed body changed: %q", w.Body)
	}
	// Range requests get the identity encoding.
	want(t, get(e, "/static/app.css", "Accept-Encoding", "gzip", "Range", "bytes=0-2"), 206, hit, ".a{")
	if s := e.Stats(); s.Compressed != 2 {
		t.Errorf("Compressed = %d, want 2 (br and gzip)", s.Compressed)
	}
}

// TestPassThrough forwards the default behaviour uncached, with cookies,
// Set-Cookie, methods, X-Forwarded-For and on-the-fly gzip.
func TestPassThrough(t *testing.T) {
	page := strings.Repeat("<p>dashboard</p>", 100)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s2"})
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Cache-Control", "max-age=600")
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "posted %s", b)
			return
		}
		io.WriteString(w, page)
	})
	e, _ := newTestEdge(t, o, nil)
	w := get(e, "/dashboard?tab=2", "Cookie", "session=s1", "X-Forwarded-For", "203.0.113.9", "User-Agent", "browser")
	want(t, w, 200, miss, page)
	get(e, "/dashboard?tab=2", "Cookie", "session=s1")
	if o.count() != 2 {
		t.Errorf("caching-disabled behaviour cached: origin requests = %d", o.count())
	}
	r := o.reqs[0]
	if r.Header.Get("Cookie") != "session=s1" || r.URL.RawQuery != "tab=2" || r.Header.Get("User-Agent") != "browser" ||
		r.Header.Get("X-Forwarded-For") != "203.0.113.9, 192.0.2.1" || r.Host != strings.TrimPrefix(o.srv.URL, "http://") {
		t.Errorf("origin request: host %q query %q headers %v", r.Host, r.URL.RawQuery, r.Header)
	}
	if w.Header().Get("Set-Cookie") != "session=s2" {
		t.Errorf("Set-Cookie not passed: %v", w.Header())
	}
	pr := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("user=a"))
	pw := httptest.NewRecorder()
	e.ServeHTTP(pw, pr)
	want(t, pw, 200, miss, "posted user=a")
	gz := get(e, "/dashboard", "Accept-Encoding", "gzip")
	if gz.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("pass-through not compressed: %v", gz.Header())
	}
	zr, _ := gzip.NewReader(gz.Body)
	if b, _ := io.ReadAll(zr); string(b) != page {
		t.Errorf("pass-through gzip body differs")
	}
	// Set-Cookie is dropped on a behaviour that forwards no cookies.
	if w := get(e, "/static/x"); w.Header().Get("Set-Cookie") != "" {
		t.Errorf("Set-Cookie on a cookie-less cached behaviour: %v", w.Header())
	}
}

// TestFailover retries GET on the secondary of an origin group, never POST.
func TestFailover(t *testing.T) {
	primary := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "primary down", http.StatusServiceUnavailable)
	})
	secondary := newOrigin(t, static("from secondary", "Cache-Control", "max-age=60"))
	var events eventLog
	e, _ := newTestEdge(t, primary, func(c *Config) {
		c.OnEvent = events.add
		c.Origins = append(c.Origins, Origin{ID: "s3-b", URL: secondary.srv.URL})
		c.OriginGroups = []OriginGroup{{ID: "bucket", Primary: "s3", Secondary: "s3-b"}}
		c.Behaviors[0].Target = "bucket"
		c.DefaultBehavior.Target = "bucket"
	})
	want(t, get(e, "/static/x"), 200, miss, "from secondary")
	want(t, get(e, "/other"), 200, miss, "from secondary")
	pr := httptest.NewRequest(http.MethodPost, "/other", strings.NewReader("x"))
	pw := httptest.NewRecorder()
	e.ServeHTTP(pw, pr)
	if pw.Code != 503 || secondary.count() != 2 {
		t.Errorf("POST failed over: status %d, secondary requests %d", pw.Code, secondary.count())
	}
	// The primary answers again: requests go back to it.
	primary.set(static("from primary"))
	want(t, get(e, "/other"), 200, miss, "from primary")
	// A primary that cannot be reached fails over too.
	primary.srv.Close()
	want(t, get(e, "/static/y"), 200, miss, "from secondary")
	if s := e.Stats(); s.Failovers != 3 {
		t.Errorf("Failovers = %d, want 3", s.Failovers)
	}
	if k := strings.Join(events.kinds(), " "); k != "origin-failover origin-recovered origin-failover" {
		t.Errorf("events = %v, want a failover, a recovery and a failover (not one per request)", k)
	}
}

// TestOACSignature: a bucket that verifies SigV4 (internal/iam's verifier)
// accepts the edge's identity, and only it.
func TestOACSignature(t *testing.T) {
	iss, err := iam.NewIssuer(iam.IssuerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	edgeCreds, err := iss.Issue("haven-edge", "edge")
	if err != nil {
		t.Fatal(err)
	}
	appCreds, err := iss.Issue("courses-app", "i-1")
	if err != nil {
		t.Fatal(err)
	}
	ver, err := iam.NewVerifier(iam.VerifierConfig{Keys: iss, Service: "s3", Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	var principals []string
	var mu sync.Mutex
	bucket := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		p, _, err := ver.Verify(r)
		if err != nil || p.Role != "haven-edge" {
			http.Error(w, "<Error><Code>AccessDenied</Code></Error>", http.StatusForbidden)
			return
		}
		mu.Lock()
		principals = append(principals, p.ARN())
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "object %s", r.URL.Path)
	})
	provider := func(c iam.Credentials) aws.CredentialsProvider {
		return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Source: "test"}, nil
		})
	}
	e, _ := newTestEdge(t, bucket, func(c *Config) {
		c.Origins[0].URL = bucket.srv.URL + "/courses-assets"
		c.Origins[0].OAC = &OAC{Region: "eu-west-1", Credentials: provider(edgeCreds)}
		c.Origins = append(c.Origins, Origin{ID: "app-identity", URL: bucket.srv.URL + "/courses-assets",
			OAC: &OAC{Region: "eu-west-1", Credentials: provider(appCreds)}})
		c.Behaviors = append(c.Behaviors, Behavior{PathPattern: "/wrong/*", Target: "app-identity", CachePolicy: CachingOptimized()})
	})
	want(t, get(e, "/static/app.css", "Origin", "https://courses.example", "Authorization", "Bearer viewer-token"), 200, miss, "object /courses-assets/static/app.css")
	if len(principals) != 1 || !strings.Contains(principals[0], "assumed-role/haven-edge/edge") {
		t.Errorf("bucket saw principals %v", principals)
	}
	if r := bucket.last(); !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+edgeCreds.AccessKeyID) ||
		r.Header.Get("X-Amz-Content-Sha256") != emptyPayloadHash {
		t.Errorf("origin request not signed by the edge: %v", r.Header)
	}
	// Another identity is refused by the bucket; the edge passes the 403 on.
	want(t, get(e, "/wrong/x"), 403, errorX, "")
	// An unsigned request straight to the bucket is refused.
	resp, err := http.Get(bucket.srv.URL + "/courses-assets/static/app.css")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("unsigned request to the bucket: %d", resp.StatusCode)
	}
}

// TestBadInput gets clear errors, never a panic.
func TestBadInput(t *testing.T) {
	o := newOrigin(t, static("x", "Cache-Control", "max-age=60"))
	e, _ := newTestEdge(t, o, func(c *Config) { c.MaxURLBytes = 1024; c.MaxRequestBytes = 4096 })
	long := "/static/" + strings.Repeat("a", 1100)
	w := get(e, long)
	want(t, w, 413, errorX, "")
	if !strings.Contains(w.Body.String(), "at most 1024") {
		t.Errorf("413 body %q", w.Body)
	}
	w = get(e, "/static/x", "X-Big", strings.Repeat("b", 5000))
	want(t, w, 413, errorX, "")
	for _, p := range []string{"/static/../materials/secret.pdf", "/static/%2e%2e/materials/secret.pdf", "/static/..%2Fmaterials/x"} {
		w = get(e, p)
		want(t, w, 400, errorX, "")
		if !strings.Contains(w.Body.String(), ". or .. segment") {
			t.Errorf("%s: body %q", p, w.Body)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/static/x", strings.NewReader("body"))
	w = httptest.NewRecorder()
	e.ServeHTTP(w, r)
	want(t, w, 403, errorX, "")
	w = do(e, http.MethodDelete, "/static/x")
	want(t, w, 403, errorX, "")
	if !strings.Contains(w.Body.String(), "method DELETE is not allowed") {
		t.Errorf("403 body %q", w.Body)
	}
	r = httptest.NewRequest(http.MethodGet, "/static/x", nil)
	r.RequestURI = "/static/%zz"
	w = httptest.NewRecorder()
	e.ServeHTTP(w, r)
	want(t, w, 400, errorX, "")
	if o.count() != 0 {
		t.Errorf("bad requests reached the origin: %d", o.count())
	}
	if s := e.Stats(); s.Rejected != 8 {
		t.Errorf("Rejected = %d, want 8", s.Rejected)
	}
}

// TestBoundedMemory keeps the cache within its byte budget, evicting the
// least recently used objects, and streams objects above the size bound.
func TestBoundedMemory(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		if strings.Contains(r.URL.Path, "big") {
			http.ServeContent(w, r, "", time.Time{}, strings.NewReader(strings.Repeat("z", 40<<10)))
			return
		}
		io.WriteString(w, strings.Repeat("z", 10<<10))
	})
	e, _ := newTestEdge(t, o, func(c *Config) { c.CacheBytes = 36 << 10; c.MaxObjectBytes = 32 << 10 })
	get(e, "/static/1")
	get(e, "/static/2")
	get(e, "/static/3")
	get(e, "/static/1") // 1 is now the most recently used
	get(e, "/static/4") // evicts 2
	if s := e.Stats(); s.Bytes > 36<<10 || s.Evictions != 1 || s.Objects != 3 {
		t.Fatalf("stats = %+v", s)
	}
	n := o.count()
	want(t, get(e, "/static/1"), 200, hit, "")
	want(t, get(e, "/static/2"), 200, miss, "")
	if o.count() != n+1 {
		t.Errorf("origin requests %d → %d", n, o.count())
	}
	w := get(e, "/static/big")
	if w.Code != 200 || w.Body.Len() != 40<<10 {
		t.Fatalf("big object: %d, %d bytes", w.Code, w.Body.Len())
	}
	// A range of an object too big to cache is forwarded to the origin.
	want(t, get(e, "/static/big", "Range", "bytes=0-9"), 206, "", "zzzzzzzzzz")
	if s := e.Stats(); s.Bytes > 36<<10 || s.PassThrough != 2 {
		t.Errorf("stats after big objects = %+v", s)
	}
}

// TestStartStopTLS serves over HTTPS with a region-CA certificate, and
// stops cleanly.
func TestStartStopTLS(t *testing.T) {
	root, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.IssueServer([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	o := newOrigin(t, static("tls", "Cache-Control", "max-age=60"))
	e, _ := newTestEdge(t, o, func(c *Config) { c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}} })
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: root.Pool()}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i, x := range []string{miss, hit} {
		resp, err := client.Get(e.URL() + "/static/a")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "tls" || resp.Header.Get("X-Cache") != x {
			t.Fatalf("request %d: %d %q %q", i, resp.StatusCode, b, resp.Header.Get("X-Cache"))
		}
	}
	if err := e.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(e.URL() + "/static/a"); err == nil {
		t.Errorf("edge still serving after Stop")
	}
}

// TestLogsHoldNoSecrets: signatures and OAC secrets never reach the logs.
func TestLogsHoldNoSecrets(t *testing.T) {
	testKeys(t)
	o := newOrigin(t, static("x", "Cache-Control", "max-age=60"))
	log, buf := testLogger(t)
	secret := "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	e, clk := newTestEdge(t, o, func(c *Config) {
		c.Logger = log
		c.Origins[0].OAC = &OAC{Region: "eu-west-1", Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: secret, SessionToken: "tok-secret"}, nil
		})}
		c.KeyGroups = []KeyGroup{{ID: "k", PublicKeys: []PublicKey{{ID: "K1", PEM: pemPublic(t, &rsaKey.PublicKey)}}}}
		b := cachedBehavior("/materials/*")
		b.TrustedKeyGroups = []string{"k"}
		c.Behaviors = append(c.Behaviors, b)
	})
	u := sdkSigned(t, "K1", rsaKey, "http://example.com/materials/a.pdf", epoch.Add(time.Minute))
	sig := u[strings.Index(u, "Signature=")+len("Signature=") : strings.Index(u, "&Key-Pair-Id")]
	serve(e, httpRequest(t, u))
	clk.Advance(2 * time.Minute)
	serve(e, httpRequest(t, u)) // expired: logged as refused
	o.srv.Close()
	clk.Advance(time.Hour)
	serve(e, httpRequest(t, strings.Replace(u, "Expires=", "Expires=9", 1)))
	get(e, "/static/x")
	logs := buf.String()
	if !strings.Contains(logs, "signed url refused") {
		t.Fatalf("expected refusals in the logs:\n%s", logs)
	}
	for _, s := range []string{sig, secret, "tok-secret"} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain a secret %q", s)
		}
	}
}

// TestStopCancelsBackgroundWork: Stop returns while a revalidation hangs on
// the origin.
func TestStopCancelsBackgroundWork(t *testing.T) {
	block, open := gate(t)
	defer open()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") != "" {
			<-block
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=600")
		w.Header().Set("ETag", `"a"`)
		io.WriteString(w, "a")
	})
	e, clk := newTestEdge(t, o, nil)
	get(e, "/static/x")
	clk.Advance(5 * time.Second)
	want(t, get(e, "/static/x"), 200, hit, "a")
	waitFor(t, "the revalidation to reach the origin", func() bool { return o.count() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOriginTimeout: an origin that sends no headers within ResponseTimeout
// gets 504; one that stalls in its body abandons the fill (502) and nothing
// is stored.
func TestOriginTimeout(t *testing.T) {
	stall, open := gate(t)
	defer open()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "body") {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
			w.(http.Flusher).Flush()
		}
		<-stall
	})
	e, _ := newTestEdge(t, o, func(c *Config) { c.ResponseTimeout = 50 * time.Millisecond })
	w := get(e, "/static/slow")
	want(t, w, 504, errorX, "")
	if !strings.Contains(w.Body.String(), "did not answer in time") {
		t.Errorf("504 body %q", w.Body)
	}
	want(t, get(e, "/static/slow-body"), 502, errorX, "")
	want(t, get(e, "/other"), 504, errorX, "") // uncached behaviour
	if s := e.Stats(); s.Objects != 0 || s.OriginErrors < 3 {
		t.Errorf("stats = %+v", s)
	}
}

// TestEncodingKeyWithoutCompress: a cache policy that enables encodings puts
// the normalized Accept-Encoding in the key and sends it to the origin even
// when the behaviour does not compress; the origin's own encoding is cached.
func TestEncodingKeyWithoutCompress(t *testing.T) {
	css := strings.Repeat(".a{color:red}\n", 200)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		w.Header().Set("Content-Length", fmt.Sprint(len(css)))
		w.Header().Set("X-Seen-Encoding", r.Header.Get("Accept-Encoding"))
		io.WriteString(w, css)
	})
	e, _ := newTestEdge(t, o, func(c *Config) { c.Behaviors[0].Compress = false })
	w := get(e, "/static/a.css", "Accept-Encoding", "gzip, br")
	want(t, w, 200, miss, css)
	if w.Header().Get("Content-Encoding") != "" || w.Header().Get("X-Seen-Encoding") != "br,gzip" {
		t.Errorf("headers %v", w.Header())
	}
	want(t, get(e, "/static/a.css", "Accept-Encoding", "br,gzip"), 200, hit, css)
	want(t, get(e, "/static/a.css"), 200, miss, css)
}

// TestRefreshCompressed: a 304 for an object the edge compressed keeps its
// encoding, its weak ETag and Vary: Accept-Encoding.
func TestRefreshCompressed(t *testing.T) {
	css := strings.Repeat(".b{color:blue}\n", 200)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"k1"`)
		if r.Header.Get("If-None-Match") == `"k1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/css")
		w.Header().Set("Content-Length", fmt.Sprint(len(css)))
		io.WriteString(w, css)
	})
	e, clk := newTestEdge(t, o, nil)
	want(t, get(e, "/static/b.css", "Accept-Encoding", "gzip"), 200, miss, "")
	clk.Advance(61 * time.Second)
	w := get(e, "/static/b.css", "Accept-Encoding", "gzip")
	want(t, w, 200, refreshHit, "")
	h := w.Header()
	if h.Get("Content-Encoding") != "gzip" || h.Get("ETag") != `W/"k1"` || h.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("refreshed headers %v", h)
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != css {
		t.Errorf("refreshed body does not decode to the object")
	}
	want(t, get(e, "/static/b.css", "Accept-Encoding", "gzip", "If-None-Match", `W/"k1"`), 304, hit, "")
}
