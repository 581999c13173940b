package edge

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/iam"
)

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		in   []string
		want cacheControl
	}{
		{nil, cacheControl{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1}},
		{[]string{"max-age=60, s-maxage=300"}, cacheControl{maxAge: time.Minute, sMaxAge: 5 * time.Minute, staleWhileRevalidate: -1, staleIfError: -1}},
		{[]string{`Max-Age="30"`, "stale-while-revalidate=5", "stale-if-error=86400"}, cacheControl{maxAge: 30 * time.Second, sMaxAge: -1, staleWhileRevalidate: 5 * time.Second, staleIfError: 24 * time.Hour}},
		{[]string{"no-store, no-cache, private, must-revalidate, proxy-revalidate"}, cacheControl{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1, noStore: true, noCache: true, private: true, mustRevalidate: true, proxyRevalidate: true}},
		// A malformed max-age makes the object stale (0); the first occurrence wins.
		{[]string{"max-age=ten, max-age=60"}, cacheControl{maxAge: 0, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1}},
		{[]string{"max-age=-5"}, cacheControl{maxAge: 0, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1}},
		// Overflow is capped at 2^31 seconds.
		{[]string{"max-age=99999999999999999999"}, cacheControl{maxAge: maxDelta, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1}},
		{[]string{", ,=,max-age"}, cacheControl{maxAge: 0, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1}},
	}
	for _, tt := range tests {
		if got := parseCacheControl(tt.in); got != tt.want {
			t.Errorf("parseCacheControl(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestDecideStore walks CloudFront's expiration table (Expiration.md) for a
// policy with min 0 and one with min > 0, and its error caching rules
// (HTTPStatusCodes.md).
func TestDecideStore(t *testing.T) {
	now := epoch
	min0 := CachePolicy{MinTTL: 0, DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour}
	min60 := CachePolicy{MinTTL: time.Minute, DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour}
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	date := now.Format(http.TimeFormat)
	tests := []struct {
		name     string
		p        CachePolicy
		status   int
		hdr      http.Header
		store    bool
		ttl      time.Duration
		swr, sie time.Duration
		noStale  bool
	}{
		{"no headers: default TTL", min0, 200, h(), true, time.Hour, -1, -1, false},
		{"max-age below max", min0, 200, h("Cache-Control", "max-age=600"), true, 10 * time.Minute, -1, -1, false},
		{"max-age above max is clamped", min0, 200, h("Cache-Control", "max-age=31536000"), true, 24 * time.Hour, -1, -1, false},
		{"max-age below min is raised", min60, 200, h("Cache-Control", "max-age=5"), true, time.Minute, -1, -1, false},
		{"max-age 0 with min 0: stored, revalidated each time", min0, 200, h("Cache-Control", "max-age=0"), true, 0, -1, -1, false},
		{"s-maxage wins over max-age", min0, 200, h("Cache-Control", "max-age=60, s-maxage=300"), true, 5 * time.Minute, -1, -1, false},
		{"s-maxage clamped to min", min60, 200, h("Cache-Control", "s-maxage=1, max-age=9000"), true, time.Minute, -1, -1, false},
		{"max-age wins over Expires", min0, 200, h("Cache-Control", "max-age=120", "Expires", now.Add(30*24*time.Hour).Format(http.TimeFormat), "Date", date), true, 2 * time.Minute, -1, -1, false},
		{"Expires minus Date", min0, 200, h("Expires", now.Add(30*time.Minute).Format(http.TimeFormat), "Date", date), true, 30 * time.Minute, -1, -1, false},
		{"Expires beyond max", min0, 200, h("Expires", now.Add(90*24*time.Hour).Format(http.TimeFormat), "Date", date), true, 24 * time.Hour, -1, -1, false},
		{"invalid Expires is already expired, raised to min", min60, 200, h("Expires", "0"), true, time.Minute, -1, -1, false},
		{"no-store with min 0", min0, 200, h("Cache-Control", "no-store"), false, 0, 0, 0, false},
		{"no-cache with min 0", min0, 200, h("Cache-Control", "no-cache, max-age=600"), false, 0, 0, 0, false},
		{"private with min 0", min0, 200, h("Cache-Control", "private"), false, 0, 0, 0, false},
		{"no-store with min > 0: cached for min", min60, 200, h("Cache-Control", "no-store"), true, time.Minute, -1, -1, false},
		{"Vary * with min 0", min0, 200, h("Vary", "Accept, *"), false, 0, 0, 0, false},
		{"Vary * with min > 0", min60, 200, h("Vary", "*", "Cache-Control", "max-age=600"), true, 10 * time.Minute, -1, -1, false},
		{"stale directives", min0, 200, h("Cache-Control", "max-age=60, stale-while-revalidate=30, stale-if-error=600"), true, time.Minute, 30 * time.Second, 10 * time.Minute, false},
		{"must-revalidate", min0, 200, h("Cache-Control", "max-age=60, must-revalidate"), true, time.Minute, -1, -1, true},
		{"301 heuristically cacheable", min0, 301, h(), true, time.Hour, -1, -1, false},
		{"302 needs explicit freshness", min0, 302, h(), false, 0, 0, 0, false},
		{"302 with max-age", min0, 302, h("Cache-Control", "max-age=30"), true, 30 * time.Second, -1, -1, false},
		{"404 cached for the error TTL", min0, 404, h(), true, 10 * time.Second, -1, -1, true},
		{"503 with longer max-age", min0, 503, h("Cache-Control", "max-age=120"), true, 2 * time.Minute, -1, -1, true},
		{"403 without max-age is not cached", min0, 403, h(), false, 0, 0, 0, false},
		{"403 with max-age", min0, 403, h("Cache-Control", "max-age=5"), true, 10 * time.Second, -1, -1, true},
		{"404 with no-store", min0, 404, h("Cache-Control", "no-store"), false, 0, 0, 0, false},
		{"401 never cached", min0, 401, h("Cache-Control", "max-age=600"), false, 0, 0, 0, false},
		{"206 never cached", min0, 206, h(), false, 0, 0, 0, false},
		{"caching disabled", CachingDisabled(), 200, h("Cache-Control", "max-age=600"), false, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decideStore(tt.p, tt.status, tt.hdr, now, 10*time.Second)
			if d.store != tt.store {
				t.Fatalf("store = %v (%s), want %v", d.store, d.reason, tt.store)
			}
			if !d.store {
				if d.reason == "" {
					t.Errorf("a refusal must give a reason")
				}
				return
			}
			if d.ttl != tt.ttl || d.swr != tt.swr || d.sie != tt.sie || d.noStale != tt.noStale {
				t.Errorf("got ttl %s swr %s sie %s noStale %v, want %s %s %s %v", d.ttl, d.swr, d.sie, d.noStale, tt.ttl, tt.swr, tt.sie, tt.noStale)
			}
		})
	}
	if d := decideStore(min0, 404, h(), now, 0); d.store {
		t.Errorf("error caching disabled: 404 stored")
	}
}

func TestFreshnessAndStaleOnError(t *testing.T) {
	s := time.Second
	tests := []struct {
		age, ttl, swr time.Duration
		noStale       bool
		want          freshState
	}{
		{0, 10 * s, -1, false, stateFresh},
		{9 * s, 10 * s, -1, false, stateFresh},
		{10 * s, 10 * s, -1, false, stateStale},
		{10 * s, 10 * s, 5 * s, false, stateStaleWhileRevalidate},
		{14 * s, 10 * s, 5 * s, false, stateStaleWhileRevalidate},
		{15 * s, 10 * s, 5 * s, false, stateStale},
		{12 * s, 10 * s, 5 * s, true, stateStale},
		{0, 0, -1, false, stateStale},
	}
	for _, tt := range tests {
		if got := freshness(tt.age, tt.ttl, tt.swr, tt.noStale); got != tt.want {
			t.Errorf("freshness(%s, %s, %s, %v) = %d, want %d", tt.age, tt.ttl, tt.swr, tt.noStale, got, tt.want)
		}
	}
	errTests := []struct {
		age, ttl, sie time.Duration
		noStale       bool
		want          bool
	}{
		{20 * s, 10 * s, -1, false, true},               // no stale-if-error: CloudFront keeps serving
		{365 * 24 * time.Hour, 10 * s, -1, false, true}, // however old
		{20 * s, 10 * s, 10 * s, false, true},
		{21 * s, 10 * s, 10 * s, false, false},
		{20 * s, 10 * s, -1, true, false}, // must-revalidate
	}
	for _, tt := range errTests {
		if got := staleOnError(tt.age, tt.ttl, tt.sie, tt.noStale); got != tt.want {
			t.Errorf("staleOnError(%s, %s, %s, %v) = %v, want %v", tt.age, tt.ttl, tt.sie, tt.noStale, got, tt.want)
		}
	}
}

// TestMatchPattern checks that iam.Match, the shared wildcard matcher, has
// CloudFront's path-pattern and policy-resource semantics.
func TestMatchPattern(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"/static/*", "/static/app.css", true},
		{"/static/*", "/static/", true},
		{"/static/*", "/static", false},
		{"/static/*", "/Static/app.css", false},
		{"*", "/anything", true},
		{"/images/*.jpg", "/images/a/b.jpg", true},
		{"/images/*.jpg", "/images/a.png", false},
		{"/v?/x", "/v1/x", true},
		{"/v?/x", "/v10/x", false},
		{"https://d111.cloudfront.net/*game_download.zip*", "https://d111.cloudfront.net/example_game_download.zip?license=yes", true},
		{"http*://h/*", "https://h/a", true},
		{"*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, tt := range tests {
		if got := iam.Match(tt.p, tt.s); got != tt.want {
			t.Errorf("iam.Match(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func TestNormalizeEncoding(t *testing.T) {
	tests := []struct {
		ae       string
		gz, br   bool
		http10   bool
		expected string
	}{
		{"gzip, deflate, br", true, true, false, "br,gzip"},
		{"gzip, deflate, br", true, false, false, "gzip"},
		{"br", true, true, false, "br"},
		{"deflate, sdch", true, true, false, ""},
		{"gzip;q=0", true, true, false, ""},
		{"GZIP;q=0.5", true, true, false, "gzip"},
		{"gzip", false, false, false, ""},
		{"gzip", true, true, true, ""},
		{"gzip;q=nan", true, true, false, ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Encoding", tt.ae)
		if tt.http10 {
			r.ProtoMinor = 0
		}
		if got := normalizeEncoding(r, tt.gz, tt.br); got != tt.expected {
			t.Errorf("normalizeEncoding(%q, %v, %v) = %q, want %q", tt.ae, tt.gz, tt.br, got, tt.expected)
		}
	}
}

func TestCompressibleAndWeakETag(t *testing.T) {
	h := func(ct, ce string) http.Header {
		out := http.Header{"Content-Type": {ct}}
		if ce != "" {
			out.Set("Content-Encoding", ce)
		}
		return out
	}
	tests := []struct {
		status int
		h      http.Header
		n      int64
		want   bool
	}{
		{200, h("text/css; charset=utf-8", ""), 5000, true},
		{200, h("application/json", ""), 1000, true},
		{200, h("text/css", ""), 999, false},
		{200, h("text/css", ""), 10000001, false},
		{200, h("image/png", ""), 5000, false},
		{200, h("application/pdf", ""), 5000, false},
		{200, h("text/css", "gzip"), 5000, false},
		{200, h("text/css", "identity"), 5000, false},
		{404, h("text/html", ""), 5000, false},
	}
	for _, tt := range tests {
		if got := compressible(tt.status, tt.h, tt.n); got != tt.want {
			t.Errorf("compressible(%d, %v, %d) = %v, want %v", tt.status, tt.h, tt.n, got, tt.want)
		}
	}
	for in, want := range map[string]string{`"abc"`: `W/"abc"`, `W/"abc"`: `W/"abc"`, `abc`: ``, ``: ``} {
		if got := weakETag(in); got != want {
			t.Errorf("weakETag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFilterVary(t *testing.T) {
	inKey := func(n string) bool { return n == "Accept-Language" }
	got := filterVary([]string{"accept-encoding, User-Agent", "*, Accept-Language, Cookie", "Accept-Encoding"}, inKey)
	want := []string{"Accept-Encoding", "Accept-Language", "Cookie"}
	if !slices.Equal(got, want) {
		t.Errorf("filterVary = %v, want %v", got, want)
	}
	if got := filterVary([]string{"*"}, inKey); len(got) != 0 {
		t.Errorf("filterVary(*) = %v, want none", got)
	}
}

// TestRangeHonoured follows RangeGETs.md: ascending, non-overlapping, valid
// ranges are served as ranges; anything else gets the whole object.
func TestRangeHonoured(t *testing.T) {
	tests := []struct {
		h    string
		want bool
	}{
		{"bytes=0-99", true},
		{"bytes=100-", true},
		{"bytes=-500", true},
		{"bytes=100-200,300-400", true},
		{"bytes=0-0,5-5,-1", true},
		{"bytes=300-400,100-200", false}, // not ascending
		{"bytes=100-200,150-250", false}, // overlapping
		{"bytes=200-100", false},
		{"bytes=-0", false},
		{"bytes=-5,0-1", false}, // a suffix range must be last
		{"bytes=0-9,-995", false},
		{"bytes=a-b", false},
		{"bytes=+1-2", false},
		{"items=0-1", false},
		{"bytes=", false},
		{"bytes=0-1,", false},
		{"bytes=99999999999999999999-", false},
	}
	for _, tt := range tests {
		if got := rangeHonoured(tt.h, 1000); got != tt.want {
			t.Errorf("rangeHonoured(%q) = %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestDotSegment(t *testing.T) {
	for p, want := range map[string]bool{
		"/static/app.css":            false,
		"/static/..":                 true,
		"/static/../materials/x.pdf": true,
		"/static/%2e%2E/x":           true,
		"/static/.%2e/x":             true,
		"/static/..%2fmaterials/x":   true,
		"/static/x/./y":              true,
		"/static/a..b/c.":            false,
		"/static/..\\x":              true,
		"/static/%252e%252e/x":       false, // the origin decodes once: "%2e%2e" is a name
	} {
		if got := dotSegment(p); got != want {
			t.Errorf("dotSegment(%q) = %v, want %v", p, got, want)
		}
	}
}
