package edge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/haven-platform/haven/internal/clock"
)

// Defaults applied by Config.withDefaults; each Config field documents its own
// and the CloudFront value it stands for.
const (
	DefaultName               = "edge"
	DefaultAddr               = "127.0.0.1:0"
	DefaultCacheBytes         = 256 << 20
	DefaultMaxObjectBytes     = 32 << 20
	DefaultMaxRequestBytes    = 20480
	DefaultMaxURLBytes        = 8192
	DefaultConnectionTimeout  = 2 * time.Second
	DefaultConnectionAttempts = 3
	DefaultResponseTimeout    = 30 * time.Second
	DefaultErrorCachingMinTTL = 10 * time.Second
	DefaultIdleTimeout        = 60 * time.Second
)

// Item behaviours of a cache policy or an origin request policy, with
// CloudFront's API names.
const (
	// None puts no item of the kind in the cache key or the origin request.
	None = "none"
	// Whitelist includes only the named items.
	Whitelist = "whitelist"
	// AllExcept includes every item but the named ones.
	AllExcept = "allExcept"
	// All includes every item (query strings and cookies).
	All = "all"
	// AllViewer includes every viewer header (origin request policy headers only).
	AllViewer = "allViewer"
)

// Config configures an edge. The zero value of every field selects the
// documented default, except Origins and DefaultBehavior, which are required,
// and TLS, which Start requires.
type Config struct {
	// Name identifies the edge in logs. Default "edge".
	Name string
	// Addr is the HTTPS listener address. Default "127.0.0.1:0" (an ephemeral
	// port; read it back with Addr after Start).
	Addr string
	// TLS is the viewer-facing server configuration; it must carry a
	// certificate for Start. ServeHTTP works without it. Default none.
	TLS *tls.Config
	// Origins are the servers the edge fetches from. Required.
	Origins []Origin
	// OriginGroups pair a primary and a secondary origin for failover.
	// Default none.
	OriginGroups []OriginGroup
	// DefaultBehavior serves every path no Behaviors entry matches
	// (CloudFront's default cache behavior, path pattern "*"). Required.
	DefaultBehavior Behavior
	// Behaviors are matched in order against the request path; the first
	// match wins (CloudFront's ordered cache behaviors). Default none.
	Behaviors []Behavior
	// KeyGroups hold the public keys that signed URLs may be signed with.
	// Default none.
	KeyGroups []KeyGroup
	// CacheBytes is the memory budget of cached bodies and headers; the least
	// recently used objects are evicted beyond it. Default 256 MiB
	// (CloudFront: managed by AWS).
	CacheBytes int64
	// MaxObjectBytes is the largest object the edge caches; larger ones are
	// streamed through uncached. Default 32 MiB (CloudFront: its developer
	// guide gives 30 GB as the largest response it serves).
	MaxObjectBytes int64
	// MaxRequestBytes bounds the request line and headers together; larger
	// requests get 413. Default 20480 (CloudFront's limit).
	MaxRequestBytes int
	// MaxURLBytes bounds the request URL; longer ones get 413. Default 8192
	// (CloudFront's limit).
	MaxURLBytes int
	// ConnectionTimeout bounds one attempt to connect to an origin. Default 2s
	// (CloudFront: 10s, allowed 1-10s).
	ConnectionTimeout time.Duration
	// ConnectionAttempts is how many times the edge tries to connect to an
	// origin before failing over or failing. Default 3 (CloudFront: 3, 1-3).
	ConnectionAttempts int
	// ResponseTimeout bounds the wait for an origin's response headers and
	// any pause between two reads of its body. Default 30s (CloudFront: 30s).
	ResponseTimeout time.Duration
	// ErrorCachingMinTTL is how long an error response from an origin is
	// cached on caching behaviours, and how long an expired object keeps
	// being served after its origin failed. Default 10s (CloudFront: 10s).
	ErrorCachingMinTTL time.Duration
	// DisableErrorCaching turns error caching off (ErrorCachingMinTTL 0 on
	// CloudFront). Default false.
	DisableErrorCaching bool
	// IdleTimeout is the idle timeout of viewer keep-alive connections and of
	// reading a request's headers. Default 60s.
	IdleTimeout time.Duration
	// Logger receives operational logs. Default slog.Default().
	Logger *slog.Logger
	// OnEvent, when set, is told of invalidations, of a target failing over
	// to its secondary origin and recovering, and of stale objects served
	// because an origin failed. It is called synchronously and must not
	// block. Default nil.
	OnEvent func(Event)
	// Clock is the time source of cache ages, TTLs and signed-URL expiry.
	// Default the real clock. Socket timeouts use the real clock.
	Clock clock.Clock
}

// Origin is a server the edge fetches from: an S3-compatible bucket or the
// load balancer.
type Origin struct {
	// ID names the origin in behaviours and origin groups. Required.
	ID string
	// URL is the origin's base URL, scheme and host with an optional path
	// prepended to every request (CloudFront's origin path), e.g.
	// "http://127.0.0.1:7070/assets" or "https://127.0.0.1:8443". Required.
	URL string
	// TLS is the client configuration for https origins (RootCAs for the
	// region CA). Default: the system roots.
	TLS *tls.Config
	// OAC, if set, signs every request to the origin with SigV4 (CloudFront's
	// origin access control). Default nil (unsigned).
	OAC *OAC
}

// OAC is an origin access control: the edge signs its origin requests with
// SigV4 using its own credentials, so a bucket can accept only the edge.
type OAC struct {
	// Region is the SigV4 signing region, e.g. "eu-west-1". Required.
	Region string
	// Service is the SigV4 signing name. Default "s3".
	Service string
	// Credentials provides the edge's identity; it is wrapped in an
	// aws.CredentialsCache. Required.
	Credentials aws.CredentialsProvider
}

// OriginGroup fails over from Primary to Secondary for GET, HEAD and OPTIONS
// requests when Primary cannot be reached, times out, or answers with one of
// FailoverStatusCodes.
type OriginGroup struct {
	// ID names the group in behaviours. Required.
	ID string
	// Primary and Secondary are origin IDs. Required.
	Primary, Secondary string
	// FailoverStatusCodes are the primary's status codes that trigger
	// failover; CloudFront allows 400, 403, 404, 416, 500, 502, 503, 504.
	// Default [500, 502, 503, 504].
	FailoverStatusCodes []int
}

// Behavior routes the requests whose path matches PathPattern to an origin,
// with a cache policy and an origin request policy.
type Behavior struct {
	// PathPattern is a CloudFront path pattern: case-sensitive, * matches any
	// run of characters and ? one character, e.g. "/static/*". Required for
	// Behaviors, ignored for DefaultBehavior.
	PathPattern string
	// Target is an origin ID or an origin group ID. Required.
	Target string
	// CachePolicy sets TTLs and the cache key. The zero value caches nothing
	// (CloudFront's managed CachingDisabled).
	CachePolicy CachePolicy
	// OriginRequestPolicy adds viewer values to origin requests beyond the
	// cache key. The zero value adds nothing.
	OriginRequestPolicy OriginRequestPolicy
	// Compress gzips compressible responses for viewers that accept gzip
	// (CloudFront's "compress objects automatically"). Default false.
	Compress bool
	// AllowedMethods is one of CloudFront's three sets: [GET HEAD],
	// [GET HEAD OPTIONS], or all seven methods. Other methods get 403.
	// Default [GET HEAD].
	AllowedMethods []string
	// TrustedKeyGroups, if non-empty, make the behaviour require a signed URL
	// or signed cookies made with a key of one of these key groups.
	// Default none (public).
	TrustedKeyGroups []string
}

// CachePolicy is a CloudFront cache policy: TTL bounds and the values in the
// cache key. Values in the key are also sent to the origin.
type CachePolicy struct {
	// Name is shown in logs. Default "".
	Name string
	// MinTTL, DefaultTTL and MaxTTL bound how long objects stay fresh:
	// the origin's s-maxage, max-age or Expires is clamped to
	// [MinTTL, MaxTTL]; DefaultTTL applies when the origin sends none. All
	// zero disables caching. Defaults 0 (CloudFront: 0, 86400s, 31536000s).
	MinTTL, DefaultTTL, MaxTTL time.Duration
	// QueryStrings in the cache key: None, Whitelist, AllExcept or All.
	// Default None.
	QueryStrings Items
	// Headers in the cache key: None or Whitelist. Default None.
	Headers Items
	// Cookies in the cache key: None, Whitelist, AllExcept or All.
	// Default None.
	Cookies Items
	// EnableAcceptEncodingGzip and EnableAcceptEncodingBrotli put the
	// viewer's normalized Accept-Encoding in the cache key and let Compress
	// serve gzip. Default false.
	EnableAcceptEncodingGzip, EnableAcceptEncodingBrotli bool
}

// OriginRequestPolicy is a CloudFront origin request policy: viewer values
// sent to the origin but not in the cache key.
type OriginRequestPolicy struct {
	// Name is shown in logs. Default "".
	Name string
	// Headers: None, Whitelist, AllViewer or AllExcept. Default None.
	Headers Items
	// Cookies: None, Whitelist, AllExcept or All. Default None.
	Cookies Items
	// QueryStrings: None, Whitelist, AllExcept or All. Default None.
	QueryStrings Items
}

// Items selects query strings, headers or cookies by name.
type Items struct {
	// Behavior is None, Whitelist, AllExcept, All or AllViewer. Default None.
	Behavior string
	// Names are the items Whitelist keeps or AllExcept drops. Header names
	// are case-insensitive; query strings and cookies are case-sensitive.
	Names []string
}

// KeyGroup is a CloudFront key group: public keys trusted for signed URLs.
type KeyGroup struct {
	// ID names the group in Behavior.TrustedKeyGroups. Required.
	ID string
	// PublicKeys are the group's keys. At least one is required.
	PublicKeys []PublicKey
}

// PublicKey is a trusted public key; its ID is the Key-Pair-Id of the URLs
// it verifies.
type PublicKey struct {
	// ID is the key's ID, e.g. "K2JCJMDEHXQW5F". Required.
	ID string
	// PEM is the public key, PKIX ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC
	// KEY"): RSA of at least 2048 bits, or ECDSA P-256. Required.
	PEM []byte
}

// CachingOptimized returns CloudFront's managed CachingOptimized cache policy.
func CachingOptimized() CachePolicy {
	return CachePolicy{Name: "CachingOptimized", MinTTL: time.Second, DefaultTTL: 86400 * time.Second,
		MaxTTL: 31536000 * time.Second, EnableAcceptEncodingGzip: true, EnableAcceptEncodingBrotli: true}
}

// CachingDisabled returns CloudFront's managed CachingDisabled cache policy.
func CachingDisabled() CachePolicy { return CachePolicy{Name: "CachingDisabled"} }

// AllViewerExceptHostHeader returns CloudFront's managed origin request policy
// of that name: every viewer header but Host, every cookie and query string.
func AllViewerExceptHostHeader() OriginRequestPolicy {
	return OriginRequestPolicy{Name: "AllViewerExceptHostHeader",
		Headers: Items{Behavior: AllExcept, Names: []string{"Host"}},
		Cookies: Items{Behavior: All}, QueryStrings: Items{Behavior: All}}
}

// AllViewerPolicy returns CloudFront's managed AllViewer origin request policy.
func AllViewerPolicy() OriginRequestPolicy {
	return OriginRequestPolicy{Name: "AllViewer", Headers: Items{Behavior: AllViewer},
		Cookies: Items{Behavior: All}, QueryStrings: Items{Behavior: All}}
}

// CORSS3Origin returns CloudFront's managed CORS-S3Origin origin request policy.
func CORSS3Origin() OriginRequestPolicy {
	return OriginRequestPolicy{Name: "CORS-S3Origin", Headers: Items{Behavior: Whitelist,
		Names: []string{"Origin", "Access-Control-Request-Headers", "Access-Control-Request-Method"}}}
}

// Caching reports whether the policy caches anything.
func (p CachePolicy) Caching() bool { return p.MinTTL > 0 || p.DefaultTTL > 0 || p.MaxTTL > 0 }

// withDefaults returns a copy of c with every unset field set to its default.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = min(DefaultMaxObjectBytes, c.CacheBytes)
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxURLBytes == 0 {
		c.MaxURLBytes = DefaultMaxURLBytes
	}
	if c.ConnectionTimeout == 0 {
		c.ConnectionTimeout = DefaultConnectionTimeout
	}
	if c.ConnectionAttempts == 0 {
		c.ConnectionAttempts = DefaultConnectionAttempts
	}
	if c.ResponseTimeout == 0 {
		c.ResponseTimeout = DefaultResponseTimeout
	}
	if c.ErrorCachingMinTTL == 0 {
		c.ErrorCachingMinTTL = DefaultErrorCachingMinTTL
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Clock = clock.Or(c.Clock)
	c.OriginGroups = slices.Clone(c.OriginGroups)
	for i := range c.OriginGroups {
		if len(c.OriginGroups[i].FailoverStatusCodes) == 0 {
			c.OriginGroups[i].FailoverStatusCodes = []int{500, 502, 503, 504}
		}
	}
	c.DefaultBehavior = c.DefaultBehavior.withDefaults()
	c.Behaviors = slices.Clone(c.Behaviors)
	for i := range c.Behaviors {
		c.Behaviors[i] = c.Behaviors[i].withDefaults()
	}
	return c
}

func (b Behavior) withDefaults() Behavior {
	if len(b.AllowedMethods) == 0 {
		b.AllowedMethods = []string{http.MethodGet, http.MethodHead}
	}
	return b
}

var (
	methodsGetHead        = []string{"GET", "HEAD"}
	methodsGetHeadOptions = []string{"GET", "HEAD", "OPTIONS"}
	methodsAll            = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}
)

// failoverCodesAllowed are the status codes CloudFront accepts as failover criteria.
var failoverCodesAllowed = []int{400, 403, 404, 416, 500, 502, 503, 504}

// Validate reports every invalid field of c (after defaults are applied),
// each error naming the field and what is allowed.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("edge.%s: "+format, append([]any{field}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("listen", "must be host:port, got %q", c.Addr)
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		bad("tls", "must carry a server certificate")
	}

	ids := map[string]string{} // id → "origin" or "origin group"
	if len(c.Origins) == 0 {
		bad("origins", "at least one origin is required")
	}
	for i, o := range c.Origins {
		f := fmt.Sprintf("origins[%d]", i)
		if o.ID == "" {
			bad(f+".id", "required")
		} else if _, dup := ids[o.ID]; dup {
			bad(f+".id", "duplicate id %q", o.ID)
		} else {
			ids[o.ID] = "origin"
		}
		if _, err := parseOriginURL(o.URL); err != nil {
			bad(f+".url", "%v", err)
		}
		if o.OAC != nil {
			if o.OAC.Region == "" {
				bad(f+".oac.region", "required (the SigV4 signing region, e.g. eu-west-1)")
			}
			if o.OAC.Credentials == nil {
				bad(f+".oac.credentials", "required (the edge's own credentials)")
			}
		}
	}
	for i, g := range c.OriginGroups {
		f := fmt.Sprintf("origin_groups[%d]", i)
		if g.ID == "" {
			bad(f+".id", "required")
		} else if _, dup := ids[g.ID]; dup {
			bad(f+".id", "duplicate id %q", g.ID)
		}
		for _, m := range []struct{ name, id string }{{"primary", g.Primary}, {"secondary", g.Secondary}} {
			if ids[m.id] != "origin" {
				bad(f+"."+m.name, "must name an origin (one of %s), got %q", originIDs(c.Origins), m.id)
			}
		}
		if g.Primary != "" && g.Primary == g.Secondary {
			bad(f+".secondary", "must differ from primary %q", g.Primary)
		}
		for _, code := range g.FailoverStatusCodes {
			if !slices.Contains(failoverCodesAllowed, code) {
				bad(f+".failover_status_codes", "%d is not allowed; CloudFront accepts %v", code, failoverCodesAllowed)
			}
		}
		if g.ID != "" {
			if _, dup := ids[g.ID]; !dup {
				ids[g.ID] = "origin group"
			}
		}
	}

	groups := map[string]bool{}
	for i, kg := range c.KeyGroups {
		f := fmt.Sprintf("key_groups[%d]", i)
		if kg.ID == "" {
			bad(f+".id", "required")
		} else if groups[kg.ID] {
			bad(f+".id", "duplicate id %q", kg.ID)
		}
		groups[kg.ID] = true
		if len(kg.PublicKeys) == 0 {
			bad(f+".public_keys", "at least one key is required")
		}
		for j, k := range kg.PublicKeys {
			kf := fmt.Sprintf("%s.public_keys[%d]", f, j)
			if k.ID == "" {
				bad(kf+".id", "required")
			}
			if _, err := parsePublicKey(k.PEM); err != nil {
				bad(kf+".pem", "%v", err)
			}
		}
	}

	check := func(f string, b Behavior, isDefault bool) {
		if !isDefault {
			if err := checkPathPattern(b.PathPattern); err != nil {
				bad(f+".path_pattern", "%v", err)
			}
		}
		if _, ok := ids[b.Target]; !ok {
			known := make([]string, 0, len(ids))
			for id := range ids {
				known = append(known, id)
			}
			slices.Sort(known)
			bad(f+".target", "unknown origin or origin group %q; known: %s", b.Target, strings.Join(known, ", "))
		}
		for _, err := range checkCachePolicy(b.CachePolicy) {
			bad(f+".cache_policy."+err.field, "%s", err.msg)
		}
		for _, err := range checkOriginRequestPolicy(b.OriginRequestPolicy) {
			bad(f+".origin_request_policy."+err.field, "%s", err.msg)
		}
		m := slices.Clone(b.AllowedMethods)
		slices.Sort(m)
		if !slices.Equal(m, methodsGetHead) && !slices.Equal(m, methodsGetHeadOptions) && !slices.Equal(m, methodsAll) {
			bad(f+".allowed_methods", "must be [GET HEAD], [GET HEAD OPTIONS] or all of %v, got %v", methodsAll, b.AllowedMethods)
		}
		for _, g := range b.TrustedKeyGroups {
			if !groups[g] {
				bad(f+".trusted_key_groups", "unknown key group %q", g)
			}
		}
	}
	check("default_behavior", c.DefaultBehavior, true)
	for i, b := range c.Behaviors {
		check(fmt.Sprintf("behaviors[%d]", i), b, false)
	}

	if c.CacheBytes < 0 {
		bad("cache_bytes", "must be > 0, got %d", c.CacheBytes)
	}
	if c.MaxObjectBytes < 0 || c.MaxObjectBytes > c.CacheBytes {
		bad("max_object_bytes", "must be > 0 and ≤ cache_bytes (%d), got %d", c.CacheBytes, c.MaxObjectBytes)
	}
	if c.MaxRequestBytes < 1024 {
		bad("max_request_bytes", "must be ≥ 1024, got %d", c.MaxRequestBytes)
	}
	if c.MaxURLBytes < 256 || c.MaxURLBytes > c.MaxRequestBytes {
		bad("max_url_bytes", "must be from 256 to max_request_bytes (%d), got %d", c.MaxRequestBytes, c.MaxURLBytes)
	}
	if c.ConnectionTimeout < 0 {
		bad("connection_timeout", "must be > 0, got %s", c.ConnectionTimeout)
	}
	if c.ConnectionAttempts < 1 || c.ConnectionAttempts > 3 {
		bad("connection_attempts", "must be 1-3 (as on CloudFront), got %d", c.ConnectionAttempts)
	}
	if c.ResponseTimeout < 0 {
		bad("response_timeout", "must be > 0, got %s", c.ResponseTimeout)
	}
	if c.ErrorCachingMinTTL < 0 {
		bad("error_caching_min_ttl", "must be > 0 (set disable_error_caching to turn it off), got %s", c.ErrorCachingMinTTL)
	}
	if c.IdleTimeout < 0 {
		bad("idle_timeout", "must be > 0, got %s", c.IdleTimeout)
	}
	return errors.Join(errs...)
}

func originIDs(os []Origin) string {
	var s []string
	for _, o := range os {
		s = append(s, o.ID)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func parseOriginURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return nil, errors.New("required")
	case err != nil:
		return nil, fmt.Errorf("must be an http or https URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("must be an http or https URL, got scheme %q", u.Scheme)
	case u.Host == "":
		return nil, fmt.Errorf("must name a host, got %q", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("must not carry a query, fragment or user info, got %q", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	return u, nil
}

type fieldErr struct{ field, msg string }

func checkItems(field string, it Items, allowed ...string) []fieldErr {
	b := it.Behavior
	if b == "" {
		b = None
	}
	if !slices.Contains(allowed, b) {
		return []fieldErr{{field + ".behavior", fmt.Sprintf("must be one of %v, got %q", allowed, it.Behavior)}}
	}
	if (b == Whitelist || b == AllExcept) != (len(it.Names) > 0) {
		if len(it.Names) == 0 {
			return []fieldErr{{field + ".names", fmt.Sprintf("behavior %q needs at least one name", b)}}
		}
		return []fieldErr{{field + ".names", fmt.Sprintf("names are only used with %q or %q, got behavior %q", Whitelist, AllExcept, b)}}
	}
	for _, n := range it.Names {
		if n == "" || strings.ContainsAny(n, " \t\r\n&=;,") {
			return []fieldErr{{field + ".names", fmt.Sprintf("invalid name %q", n)}}
		}
	}
	return nil
}

func checkCachePolicy(p CachePolicy) []fieldErr {
	var errs []fieldErr
	for _, d := range []struct {
		f string
		v time.Duration
	}{{"min_ttl", p.MinTTL}, {"default_ttl", p.DefaultTTL}, {"max_ttl", p.MaxTTL}} {
		if d.v < 0 {
			errs = append(errs, fieldErr{d.f, fmt.Sprintf("must be ≥ 0, got %s", d.v)})
		}
	}
	if p.MinTTL > p.MaxTTL {
		errs = append(errs, fieldErr{"min_ttl", fmt.Sprintf("must be ≤ max_ttl (%s), got %s", p.MaxTTL, p.MinTTL)})
	}
	if p.DefaultTTL < p.MinTTL || p.DefaultTTL > p.MaxTTL {
		errs = append(errs, fieldErr{"default_ttl", fmt.Sprintf("must be from min_ttl (%s) to max_ttl (%s), got %s", p.MinTTL, p.MaxTTL, p.DefaultTTL)})
	}
	errs = append(errs, checkItems("query_strings", p.QueryStrings, None, Whitelist, AllExcept, All)...)
	errs = append(errs, checkItems("headers", p.Headers, None, Whitelist)...)
	errs = append(errs, checkItems("cookies", p.Cookies, None, Whitelist, AllExcept, All)...)
	if !p.Caching() && (itemsSet(p.QueryStrings) || itemsSet(p.Headers) || itemsSet(p.Cookies) ||
		p.EnableAcceptEncodingGzip || p.EnableAcceptEncodingBrotli) {
		errs = append(errs, fieldErr{"max_ttl", "caching is disabled (all TTLs 0), so the cache key must be empty; put values for the origin in the origin request policy"})
	}
	return errs
}

func checkOriginRequestPolicy(p OriginRequestPolicy) []fieldErr {
	var errs []fieldErr
	errs = append(errs, checkItems("headers", p.Headers, None, Whitelist, AllViewer, AllExcept)...)
	errs = append(errs, checkItems("cookies", p.Cookies, None, Whitelist, AllExcept, All)...)
	errs = append(errs, checkItems("query_strings", p.QueryStrings, None, Whitelist, AllExcept, All)...)
	return errs
}

func itemsSet(it Items) bool { return it.Behavior != "" && it.Behavior != None }

// checkPathPattern accepts CloudFront path patterns: up to 255 characters
// from A-Z a-z 0-9 _ - . * $ / ~ " ' @ : + & with * and ? as wildcards.
func checkPathPattern(p string) error {
	if p == "" {
		return errors.New("required, e.g. /static/*")
	}
	if len(p) > 255 {
		return fmt.Errorf("must be at most 255 characters, got %d", len(p))
	}
	if p[0] != '/' && p[0] != '*' {
		return fmt.Errorf("must start with / or *, got %q", p)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.*$/~\"'@:+&?", r)) {
			return fmt.Errorf("character %q is not allowed in a path pattern %q", r, p)
		}
	}
	return nil
}

// parsePublicKey parses a PEM public key CloudFront would accept.
func parsePublicKey(b []byte) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not a PEM block; give the public key as -----BEGIN PUBLIC KEY-----")
	}
	var key any
	var err error
	switch blk.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM type %q is not a public key", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key has %d bits; CloudFront requires 2048", k.N.BitLen())
		}
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA key on %s; CloudFront requires P-256 (prime256v1)", k.Curve.Params().Name)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("%T keys are not supported; use RSA 2048 or ECDSA P-256", key)
	}
}
