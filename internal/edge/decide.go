package edge

import (
	"math"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// This file holds the edge's pure decisions: what a response's Cache-Control
// means, how long CloudFront would keep it, whether a stored object may be
// served, which Vary values survive, and whether a Range header is one
// CloudFront honours. They take values, not the Edge, and are table-tested.

// cacheControl is a parsed Cache-Control response header. Durations are -1
// when the directive is absent.
type cacheControl struct {
	maxAge, sMaxAge, staleWhileRevalidate, staleIfError        time.Duration
	noStore, noCache, private, mustRevalidate, proxyRevalidate bool
}

// maxDelta is RFC 9111's cap for delta-seconds that overflow (2^31 s).
const maxDelta = 2147483648 * time.Second

// parseDelta parses delta-seconds. Values that are not a non-negative integer
// count as 0 (a malformed freshness lifetime makes the response stale, RFC
// 9111 §4.2.1); values beyond 2^31 are capped at 2^31 seconds.
func parseDelta(v string) time.Duration {
	v = strings.Trim(v, `"`)
	if v == "" {
		return 0
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > int64(maxDelta/time.Second) {
		return maxDelta
	}
	return time.Duration(n) * time.Second
}

// parseCacheControl parses every Cache-Control field value. Unknown
// directives are ignored; the first occurrence of a directive wins.
func parseCacheControl(values []string) cacheControl {
	cc := cacheControl{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1}
	seen := map[string]bool{}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(part), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" || seen[name] {
				continue
			}
			seen[name] = true
			arg = strings.TrimSpace(arg)
			switch name {
			case "max-age":
				cc.maxAge = parseDelta(arg)
			case "s-maxage":
				cc.sMaxAge = parseDelta(arg)
			case "stale-while-revalidate":
				cc.staleWhileRevalidate = parseDelta(arg)
			case "stale-if-error":
				cc.staleIfError = parseDelta(arg)
			case "no-store":
				cc.noStore = true
			case "no-cache":
				cc.noCache = true
			case "private":
				cc.private = true
			case "must-revalidate":
				cc.mustRevalidate = true
			case "proxy-revalidate":
				cc.proxyRevalidate = true
			}
		}
	}
	return cc
}

// storeDecision says whether and how long CloudFront would cache a response.
type storeDecision struct {
	store bool
	// ttl is the freshness lifetime.
	ttl time.Duration
	// swr and sie are the stale-while-revalidate and stale-if-error windows;
	// -1 when the origin sent none.
	swr, sie time.Duration
	// noStale forbids serving the object once stale (must-revalidate,
	// proxy-revalidate, or a cached error).
	noStale bool
	// isError marks a cached error response.
	isError bool
	// reason explains a refusal, for logs and tests.
	reason string
}

// Status codes CloudFront caches as errors (HTTPStatusCodes.md): always, or
// only when the origin sends max-age or s-maxage.
var (
	errorsAlwaysCached      = map[int]bool{404: true, 405: true, 414: true, 500: true, 501: true, 502: true, 503: true, 504: true}
	errorsCachedWithMaxAge  = map[int]bool{400: true, 403: true, 412: true, 415: true}
	heuristicallyCacheable  = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 308: true, 410: true}
	cacheableWithFreshness  = map[int]bool{302: true, 303: true, 307: true}
	defaultVaryStarRefusal  = "Vary: * with min TTL 0"
	defaultNoStoreRefusal   = "no-store, no-cache or private with min TTL 0"
	defaultNoFreshnessNotOK = "status is cached only with explicit freshness"
)

// decideStore applies CloudFront's expiration rules (Expiration.md) to a
// response for a caching behaviour:
//
//   - s-maxage wins over max-age, which wins over Expires; the value is
//     clamped to [MinTTL, MaxTTL]. With none of them, DefaultTTL applies.
//   - no-store, no-cache and private are honoured when MinTTL is 0;
//     otherwise the object is cached for MinTTL.
//   - Vary: * is not cached when MinTTL is 0 (every request goes to the
//     origin, unconditionally); otherwise it is dropped and the object cached.
//   - 404, 405, 414 and 5xx are cached for max(errorMinTTL, s-maxage or
//     max-age); 400, 403, 412 and 415 only when the origin sent s-maxage or
//     max-age. Other statuses are not cached, except 302, 303 and 307 with
//     explicit freshness.
//
// errorMinTTL ≤ 0 disables error caching. now is the edge's clock, used for
// Expires when the response carries no Date.
func decideStore(p CachePolicy, status int, h http.Header, now time.Time, errorMinTTL time.Duration) storeDecision {
	if !p.Caching() {
		return storeDecision{reason: "caching disabled"}
	}
	cc := parseCacheControl(h.Values("Cache-Control"))
	d := storeDecision{swr: cc.staleWhileRevalidate, sie: cc.staleIfError, noStale: cc.mustRevalidate || cc.proxyRevalidate}
	restricted := cc.noStore || cc.noCache || cc.private

	if errorsAlwaysCached[status] || errorsCachedWithMaxAge[status] {
		explicit := cc.sMaxAge
		if explicit < 0 {
			explicit = cc.maxAge
		}
		switch {
		case errorMinTTL <= 0:
			return storeDecision{reason: "error caching disabled"}
		case restricted:
			return storeDecision{reason: "error response restricted by Cache-Control"}
		case errorsCachedWithMaxAge[status] && explicit < 0:
			return storeDecision{reason: "status is cached only with max-age or s-maxage"}
		}
		return storeDecision{store: true, ttl: max(errorMinTTL, explicit), swr: -1, sie: -1, noStale: true, isError: true}
	}
	if !heuristicallyCacheable[status] && !cacheableWithFreshness[status] {
		return storeDecision{reason: "status " + strconv.Itoa(status) + " is not cached"}
	}

	varyStar := false
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(f) == "*" {
				varyStar = true
			}
		}
	}
	if varyStar && p.MinTTL == 0 {
		return storeDecision{reason: defaultVaryStarRefusal}
	}
	if restricted {
		if p.MinTTL == 0 {
			return storeDecision{reason: defaultNoStoreRefusal}
		}
		d.store, d.ttl = true, p.MinTTL
		return d
	}

	clamp := func(v time.Duration) time.Duration { return min(max(v, p.MinTTL), p.MaxTTL) }
	switch {
	case cc.sMaxAge >= 0:
		d.ttl = clamp(cc.sMaxAge)
	case cc.maxAge >= 0:
		d.ttl = clamp(cc.maxAge)
	case len(h.Values("Expires")) > 0:
		d.ttl = clamp(expiresLifetime(h, now))
	case heuristicallyCacheable[status]:
		d.ttl = p.DefaultTTL
	default:
		return storeDecision{reason: defaultNoFreshnessNotOK}
	}
	d.store = true
	return d
}

// expiresLifetime is Expires − Date (RFC 9111 §4.2.1), with the edge's clock
// standing in for a missing or invalid Date. An invalid Expires means
// "already expired".
func expiresLifetime(h http.Header, now time.Time) time.Duration {
	exp, err := http.ParseTime(h.Get("Expires"))
	if err != nil {
		return 0
	}
	base := now
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		base = d
	}
	return max(exp.Sub(base), 0)
}

// initialAge is the origin's Age header in whole seconds (RFC 9111 §4.2.3),
// 0 when absent or invalid.
func initialAge(h http.Header) time.Duration {
	v := h.Get("Age")
	if v == "" {
		return 0
	}
	return parseDelta(v)
}

// freshState is how a stored object may be used at a given age.
type freshState int

const (
	// stateFresh: serve from cache.
	stateFresh freshState = iota
	// stateStaleWhileRevalidate: serve from cache and revalidate in the background.
	stateStaleWhileRevalidate
	// stateStale: revalidate with the origin before serving.
	stateStale
)

// freshness classifies an object of the given age.
func freshness(age, ttl, swr time.Duration, noStale bool) freshState {
	switch {
	case age < ttl:
		return stateFresh
	case !noStale && swr > 0 && age < ttl+swr:
		return stateStaleWhileRevalidate
	default:
		return stateStale
	}
}

// staleOnError reports whether a stale object may be served because its
// origin failed. With stale-if-error the object may be served while its
// staleness is within the window. Without it CloudFront keeps serving an
// expired object while its origin is unavailable (RequestAndResponseBehavior-
// CustomOrigin.md, "Origin Unavailable"). must-revalidate forbids both.
func staleOnError(age, ttl, sie time.Duration, noStale bool) bool {
	if noStale {
		return false
	}
	if sie < 0 {
		return true
	}
	return age-ttl <= sie
}

// normalizeEncoding is CloudFront's normalized Accept-Encoding: "br,gzip",
// "br", "gzip" or "" from what the viewer accepts and the cache policy
// enables. HTTP/1.0 viewers get "".
func normalizeEncoding(r *http.Request, gzipOK, brOK bool) string {
	if (!gzipOK && !brOK) || (r.ProtoMajor == 1 && r.ProtoMinor == 0) {
		return ""
	}
	var gz, br bool
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if q, ok := strings.CutPrefix(strings.ReplaceAll(strings.TrimSpace(params), " ", ""), "q="); ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 || math.IsNaN(f) {
					continue
				}
			}
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "gzip":
				gz = gzipOK
			case "br":
				br = brOK
			}
		}
	}
	switch {
	case br && gz:
		return "br,gzip"
	case br:
		return "br"
	case gz:
		return "gzip"
	}
	return ""
}

// Compression limits CloudFront applies (ServingCompressedFiles.md).
const (
	compressMinBytes = 1000
	compressMaxBytes = 10000000
)

// compressibleTypes are the Content-Types CloudFront compresses.
var compressibleTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range strings.Fields(`application/dash+xml application/eot application/font
	application/font-sfnt application/javascript application/json application/opentype
	application/otf application/pkcs7-mime application/protobuf application/rss+xml
	application/truetype application/ttf application/vnd.apple.mpegurl
	application/vnd.ms-fontobject application/xhtml+xml application/xml
	application/x-font-opentype application/x-font-truetype application/x-font-ttf
	application/x-httpd-cgi application/x-javascript application/x-mpegurl
	application/x-opentype application/x-otf application/x-perl application/x-ttf font/eot
	font/opentype font/otf font/ttf image/svg+xml text/css text/csv text/html
	text/javascript text/js text/plain text/richtext text/tab-separated-values text/xml
	text/x-component text/x-java-source text/x-script vnd.apple.mpegurl`) {
		m[t] = true
	}
	return m
}()

// compressible reports whether CloudFront would gzip a response: status 200,
// a compressible Content-Type, a Content-Length from 1,000 to 10,000,000
// bytes, and no Content-Encoding.
func compressible(status int, h http.Header, contentLength int64) bool {
	if status != http.StatusOK || len(h.Values("Content-Encoding")) > 0 {
		return false
	}
	if contentLength < compressMinBytes || contentLength > compressMaxBytes {
		return false
	}
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return compressibleTypes[strings.ToLower(strings.TrimSpace(mt))]
}

// weakETag turns a strong ETag weak, as CloudFront does for objects it
// compresses; weak ones are kept and invalid ones (not starting with " or W/)
// are dropped ("").
func weakETag(etag string) string {
	switch {
	case strings.HasPrefix(etag, `W/"`):
		return etag
	case strings.HasPrefix(etag, `"`):
		return "W/" + etag
	}
	return ""
}

// filterVary keeps the Vary values CloudFront returns to viewers: Accept-
// Encoding, Cookie, and headers the behaviour puts in the cache key (inKey);
// every other value, and "*", is dropped (RequestAndResponseBehavior-
// CustomOrigin.md). Names come back canonicalised, in order, without
// duplicates.
func filterVary(values []string, inKey func(string) bool) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			name := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f))
			if name == "" || name == "*" || seen[name] {
				continue
			}
			if name == "Accept-Encoding" || name == "Cookie" || inKey(name) {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

// rangeHonoured reports whether CloudFront serves a Range header as ranges
// (RangeGETs.md): a "bytes=" unit, every range valid, in ascending order and
// not overlapping. Otherwise CloudFront answers 200 with the whole object.
// Suffix ranges (-N) must come last, since their position is relative to the
// end. size is the object's length.
func rangeHonoured(h string, size int64) bool {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || spec == "" || len(h) > 1024 {
		return false
	}
	prevEnd := int64(-1)
	parts := strings.Split(spec, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		first, last, ok := strings.Cut(p, "-")
		if !ok {
			return false
		}
		if first == "" { // suffix range
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n <= 0 || i != len(parts)-1 || !digits(last) {
				return false
			}
			return size-n > prevEnd || prevEnd < 0
		}
		start, err := strconv.ParseInt(first, 10, 64)
		if err != nil || !digits(first) || start <= prevEnd {
			return false
		}
		end := int64(math.MaxInt64)
		if last != "" {
			if end, err = strconv.ParseInt(last, 10, 64); err != nil || !digits(last) || end < start {
				return false
			}
		}
		prevEnd = end
	}
	return true
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

var dotDecoder = strings.NewReplacer("%2e", ".", "%2f", "/", "%5c", "/", "\\", "/")

// dotSegment reports whether a path has a "." or ".." segment, raw or
// percent-encoded. The edge refuses such paths: a pattern-matched behaviour
// could otherwise reach an object outside it on an origin that resolves them.
func dotSegment(rawPath string) bool {
	if !strings.Contains(rawPath, "/.") && !strings.ContainsAny(rawPath, "%\\") {
		return false // a dot segment needs "/." unless something is encoded
	}
	s := dotDecoder.Replace(strings.ToLower(rawPath))
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
