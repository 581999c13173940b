// Package edge provides the region's edge cache, a caching reverse proxy with CloudFront semantics: behaviours by path pattern, cache and origin request policies, request collapsing, stale serving, origin failover, OAC-signed origin requests, signed URLs and invalidations.
package edge

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
)

// Sentinel errors callers may branch on.
var (
	// ErrStopped is returned by calls made after Stop.
	ErrStopped = errors.New("edge stopped")
	// ErrBadInvalidation is wrapped by Invalidate for a malformed path.
	ErrBadInvalidation = errors.New("invalid invalidation path")
)

// Edge is the edge cache. Create it with New; Start listens on HTTPS, and
// the Edge is also an http.Handler for tests and for embedding.
type Edge struct {
	cfg       Config
	log       *slog.Logger
	clock     clock.Clock
	behaviors []*behavior
	def       *behavior
	origins   []*originConn
	store     *store
	flights   flightGroup
	stats     counters
	proxy     *httputil.ReverseProxy
	quit      chan struct{} // closed by Stop: cancels origin fetches
	wg        sync.WaitGroup

	mu      sync.Mutex
	started bool
	stopped bool
	ln      net.Listener
	srv     *http.Server
}

var _ interface {
	Start(context.Context) error
	Stop(context.Context) error
} = (*Edge)(nil)

var _ http.Handler = (*Edge)(nil)

// itemSet is a compiled Items.
type itemSet struct {
	mode  string
	names map[string]bool
}

func compileItems(it Items, canonical bool) itemSet {
	s := itemSet{mode: it.Behavior, names: map[string]bool{}}
	if s.mode == "" {
		s.mode = None
	}
	for _, n := range it.Names {
		if canonical {
			n = textproto.CanonicalMIMEHeaderKey(n)
		}
		s.names[n] = true
	}
	return s
}

func (s itemSet) has(name string) bool {
	switch s.mode {
	case All, AllViewer:
		return true
	case Whitelist:
		return s.names[name]
	case AllExcept:
		return !s.names[name]
	}
	return false
}

// behavior is a compiled Behavior.
type behavior struct {
	cfg     Behavior
	name    string
	target  *target
	caching bool
	keys    keyring // nil: no signature required
	methods map[string]bool

	keyQuery, orpQuery   itemSet
	keyHeaders           []string // canonical, sorted
	keyHeader, orpHeader itemSet
	keyCookie, orpCookie itemSet
	forwardCookies       bool // Set-Cookie reaches viewers only if cookies reach the origin
	forwardHost          bool
	gzip, br             bool // Accept-Encoding in the cache key
}

func (b *behavior) forwardQuery(name string) bool {
	return b.keyQuery.has(name) || b.orpQuery.has(name)
}
func (b *behavior) forwardHeader(name string) bool {
	return b.keyHeader.has(name) || b.orpHeader.has(name)
}
func (b *behavior) forwardCookie(name string) bool {
	return b.keyCookie.has(name) || b.orpCookie.has(name)
}

// New validates cfg, applies defaults and returns an edge that is not yet
// listening.
func New(cfg Config) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new edge: %w", err)
	}
	cfg = cfg.withDefaults()
	e := &Edge{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "edge", "edge", cfg.Name),
		clock: cfg.Clock,
		store: newStore(cfg.CacheBytes),
		quit:  make(chan struct{}),
	}
	targets := map[string]*target{}
	conns := map[string]*originConn{}
	for _, o := range cfg.Origins {
		oc := newOriginConn(o, cfg)
		conns[o.ID] = oc
		e.origins = append(e.origins, oc)
		targets[o.ID] = &target{id: o.ID, primary: oc}
	}
	for _, g := range cfg.OriginGroups {
		t := &target{id: g.ID, primary: conns[g.Primary], secondary: conns[g.Secondary], failover: map[int]bool{}}
		for _, c := range g.FailoverStatusCodes {
			t.failover[c] = true
		}
		targets[g.ID] = t
	}
	keys := map[string]keyring{}
	for _, kg := range cfg.KeyGroups {
		kr := keyring{}
		for _, k := range kg.PublicKeys {
			pk, _ := parsePublicKey(k.PEM) // validated
			kr[k.ID] = pk
		}
		keys[kg.ID] = kr
	}
	compile := func(b Behavior, name string) *behavior {
		cb := &behavior{cfg: b, name: name, target: targets[b.Target], caching: b.CachePolicy.Caching(), methods: map[string]bool{}}
		for _, m := range b.AllowedMethods {
			cb.methods[m] = true
		}
		if len(b.TrustedKeyGroups) > 0 {
			cb.keys = keyring{}
			for _, g := range b.TrustedKeyGroups {
				for id, k := range keys[g] {
					cb.keys[id] = crypto.PublicKey(k)
				}
			}
		}
		cp, orp := b.CachePolicy, b.OriginRequestPolicy
		cb.keyQuery, cb.orpQuery = compileItems(cp.QueryStrings, false), compileItems(orp.QueryStrings, false)
		cb.keyHeader, cb.orpHeader = compileItems(cp.Headers, true), compileItems(orp.Headers, true)
		cb.keyCookie, cb.orpCookie = compileItems(cp.Cookies, false), compileItems(orp.Cookies, false)
		for n := range cb.keyHeader.names {
			cb.keyHeaders = append(cb.keyHeaders, n)
		}
		slices.Sort(cb.keyHeaders)
		cb.forwardCookies = cb.keyCookie.mode != None || cb.orpCookie.mode != None
		cb.forwardHost = cb.forwardHeader("Host")
		cb.gzip, cb.br = cp.EnableAcceptEncodingGzip, cp.EnableAcceptEncodingBrotli
		return cb
	}
	e.def = compile(cfg.DefaultBehavior, "default")
	for _, b := range cfg.Behaviors {
		e.behaviors = append(e.behaviors, compile(b, b.PathPattern))
	}
	e.proxy = &httputil.ReverseProxy{
		Rewrite:        e.rewrite,
		Transport:      proxyTransport{e},
		ModifyResponse: e.modifyResponse,
		ErrorHandler:   e.proxyError,
		ErrorLog:       slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	return e, nil
}

// Start binds the HTTPS listener and serves. It needs Config.TLS.
func (e *Edge) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.stopped:
		return ErrStopped
	case e.started:
		return errors.New("start edge: already started")
	case e.cfg.TLS == nil:
		return errors.New("start edge: edge.tls: a server certificate is required to listen; set Config.TLS")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", e.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen https %s: %w", e.cfg.Addr, err)
	}
	e.ln = ln
	e.srv = &http.Server{
		Handler:           e,
		TLSConfig:         e.cfg.TLS.Clone(),
		ReadHeaderTimeout: e.cfg.IdleTimeout,
		IdleTimeout:       e.cfg.IdleTimeout,
		MaxHeaderBytes:    e.cfg.MaxRequestBytes,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	srv := e.srv
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("https listener stopped", "err", err)
		}
	}()
	e.started = true
	e.log.Info("edge started", "https", ln.Addr().String(), "behaviors", len(e.behaviors)+1)
	return nil
}

// Stop closes the listener and waits, until ctx ends, for requests in
// flight; then it cancels origin fetches (background revalidations
// included) and waits for them.
func (e *Edge) Stop(ctx context.Context) error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil
	}
	e.stopped = true
	srv := e.srv
	e.mu.Unlock()
	var err error
	if srv != nil {
		if err = srv.Shutdown(ctx); err != nil {
			srv.Close()
			err = fmt.Errorf("shut down edge listener: %w", err)
		}
	}
	close(e.quit)
	e.wg.Wait()
	for _, o := range e.origins {
		o.tr.CloseIdleConnections()
	}
	e.log.Info("edge stopped")
	return err
}

// Addr returns the bound address of the HTTPS listener ("" before Start).
func (e *Edge) Addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln == nil {
		return ""
	}
	return e.ln.Addr().String()
}

// URL returns "https://<bound address>" ("" before Start).
func (e *Edge) URL() string {
	if a := e.Addr(); a != "" {
		return "https://" + a
	}
	return ""
}

// Invalidate removes every cached object whose path matches one of paths,
// at once: a path ends in * to match a prefix ("/static/*"), and covers all
// of an object's variants. Fetches in flight when it is called do not store
// what it removed. It returns how many objects it removed; a malformed path
// fails the whole call with ErrBadInvalidation and removes nothing.
func (e *Edge) Invalidate(paths ...string) (int, error) {
	if len(paths) == 0 {
		return 0, fmt.Errorf("invalidate: %w: no path given", ErrBadInvalidation)
	}
	for _, p := range paths {
		if err := checkInvalidationPath(p); err != nil {
			return 0, fmt.Errorf("invalidate: %w: %v", ErrBadInvalidation, err)
		}
	}
	n := e.store.invalidate(slices.Clone(paths))
	e.stats.invalidations.Add(uint64(len(paths)))
	e.stats.invalidatedObjects.Add(uint64(n))
	e.log.Info("invalidated", "paths", paths, "objects", n)
	e.emit(Event{Kind: EventInvalidated, Subject: strings.Join(paths, " "),
		Message: fmt.Sprintf("invalidated %s: %d objects removed", strings.Join(paths, ", "), n),
		Attrs:   map[string]any{"paths": slices.Clone(paths), "objects": n}})
	return n, nil
}

// match returns the behaviour for a decoded path.
func (e *Edge) match(path string) *behavior {
	for _, b := range e.behaviors {
		if iam.Match(b.cfg.PathPattern, path) {
			return b
		}
	}
	return e.def
}

// request is one viewer request, prepared.
type request struct {
	b        *behavior
	viewer   *http.Request // valid only while the handler runs
	rawPath  string
	rawQuery string // the viewer's query without signing parameters
	client   netip.Addr
	enc      string // normalized Accept-Encoding in the cache key
	key      string
}

type requestKey struct{}

// ServeHTTP serves one viewer request.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.stats.requests.Add(1)
	rawURI := r.RequestURI
	if rawURI == "" {
		rawURI = r.URL.RequestURI()
	}
	if len(rawURI) > e.cfg.MaxURLBytes {
		e.reject(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the URL is %d bytes; the edge accepts at most %d", len(rawURI), e.cfg.MaxURLBytes))
		return
	}
	if n := requestBytes(r, rawURI); n > e.cfg.MaxRequestBytes {
		e.reject(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request line and headers are %d bytes; the edge accepts at most %d", n, e.cfg.MaxRequestBytes))
		return
	}
	rawPath, rawQuery, decoded, err := splitRequestURI(rawURI)
	if err != nil {
		e.reject(w, http.StatusBadRequest, err.Error())
		return
	}
	if dotSegment(rawPath) {
		e.reject(w, http.StatusBadRequest, "the path has a . or .. segment; request the object by its plain path")
		return
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.ContentLength > 0 || len(r.TransferEncoding) > 0) {
		// CloudFront answers a GET with a body with 403.
		e.reject(w, http.StatusForbidden, "a GET or HEAD request must not carry a body")
		return
	}
	b := e.match(decoded)
	if !b.methods[r.Method] {
		e.reject(w, http.StatusForbidden, fmt.Sprintf("method %s is not allowed on this path (allowed: %s)", r.Method, strings.Join(b.cfg.AllowedMethods, ", ")))
		return
	}
	rq := &request{b: b, viewer: r, rawPath: rawPath, rawQuery: rawQuery, client: clientAddr(r)}
	if b.keys != nil {
		if err := e.checkSignature(r, rq); err != nil {
			e.stats.denied.Add(1)
			e.log.Debug("signed url refused", "path", rawPath, "reason", err.Error())
			e.deny(w, err)
			return
		}
	}
	if !b.caching || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		e.passThrough(w, r, rq)
		return
	}
	e.serveCached(w, r, rq)
}

// checkSignature verifies the signed URL or signed cookies of a request to a
// restricted behaviour, and strips the signing parameters from rq.rawQuery
// (CloudFront neither caches on them nor forwards them).
func (e *Edge) checkSignature(r *http.Request, rq *request) error {
	sp, rest, err := splitSigned(rq.rawQuery)
	if err != nil {
		return err
	}
	if !sp.any {
		if sp, err = signedCookies(r); err != nil {
			return err
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	resource := scheme + "://" + r.Host + rq.rawPath
	if rest != "" {
		resource += "?" + rest
	}
	if err := verifySigned(sp, rq.b.keys, resource, rq.client, e.clock.Now()); err != nil {
		return err
	}
	rq.rawQuery = rest
	return nil
}

// splitRequestURI splits a request target into its raw path, raw query and
// decoded path.
func splitRequestURI(uri string) (rawPath, rawQuery, decoded string, err error) {
	if !strings.HasPrefix(uri, "/") {
		u, perr := url.ParseRequestURI(uri)
		if perr != nil || u.Path == "" || !strings.HasPrefix(u.EscapedPath(), "/") {
			return "", "", "", fmt.Errorf("the request target %q is not a path", uri)
		}
		return u.EscapedPath(), u.RawQuery, u.Path, nil
	}
	rawPath, rawQuery, _ = strings.Cut(uri, "?")
	if decoded, err = url.PathUnescape(rawPath); err != nil {
		return "", "", "", fmt.Errorf("the path is not validly percent-encoded: %v", err)
	}
	return rawPath, rawQuery, decoded, nil
}

// requestBytes approximates the request line and headers as sent.
func requestBytes(r *http.Request, uri string) int {
	n := len(r.Method) + len(uri) + 12 + len(r.Host) + 8
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, _ := netip.ParseAddr(r.RemoteAddr)
		return a
	}
	return ap.Addr().Unmap()
}

// cacheKey is the request's key under its behaviour's cache policy: the
// path, the key's query strings in viewer order, the key's headers and
// cookies, and the normalized encoding. Values outside the policy do not
// split the cache.
func (e *Edge) cacheKey(r *http.Request, rq *request) string {
	b := rq.b
	q := filterQuery(rq.rawQuery, b.keyQuery.has)
	if q == "" && len(b.keyHeaders) == 0 && b.keyCookie.mode == None && rq.enc == "" {
		return rq.rawPath
	}
	var sb strings.Builder
	sb.WriteString(rq.rawPath)
	if q != "" {
		sb.WriteString("?")
		sb.WriteString(q)
	}
	for _, h := range b.keyHeaders {
		sb.WriteString("\nh:")
		sb.WriteString(h)
		sb.WriteString("=")
		sb.WriteString(strings.Join(r.Header.Values(h), ","))
	}
	if b.keyCookie.mode != None {
		for _, c := range r.Cookies() {
			if b.keyCookie.has(c.Name) {
				sb.WriteString("\nc:")
				sb.WriteString(c.Name)
				sb.WriteString("=")
				sb.WriteString(c.Value)
			}
		}
	}
	if rq.enc != "" {
		sb.WriteString("\ne:")
		sb.WriteString(rq.enc)
	}
	return sb.String()
}

// filterQuery keeps the parameters of a raw query whose name keep accepts,
// byte for byte and in order.
func filterQuery(raw string, keep func(string) bool) string {
	if raw == "" {
		return ""
	}
	var out []string
	all := true
	for part := range strings.SplitSeq(raw, "&") {
		rawName, _, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			name = rawName
		}
		if keep(name) {
			out = append(out, part)
		} else {
			all = false
		}
	}
	if all {
		return raw
	}
	return strings.Join(out, "&")
}

// filterCookies keeps the cookies of a Cookie header whose name keep accepts.
func filterCookies(r *http.Request, keep func(string) bool) string {
	var out []string
	for _, c := range r.Cookies() {
		if keep(c.Name) && !strings.HasPrefix(c.Name, "CloudFront-") {
			out = append(out, c.Name+"="+c.Value)
		}
	}
	return strings.Join(out, "; ")
}

// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded or stored.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// notForwardedOnFetch are viewer headers the edge sets itself on the
// requests it makes to fill its cache.
var notForwardedOnFetch = map[string]bool{"Host": true, "Accept-Encoding": true, "Cookie": true,
	"If-None-Match": true, "If-Modified-Since": true, "If-Match": true, "If-Unmodified-Since": true,
	"If-Range": true, "Range": true, "Content-Length": true, "Expect": true, "X-Forwarded-For": true,
	"Via": true}

// alwaysForwarded are viewer headers a forwarded (uncached) request keeps
// whatever its policies say: range and conditional requests, and the
// description of a body. CloudFront forwards them too.
var alwaysForwarded = map[string]bool{"Range": true, "If-Range": true, "If-Match": true,
	"If-None-Match": true, "If-Modified-Since": true, "If-Unmodified-Since": true,
	"Content-Type": true, "Content-Encoding": true, "Content-Language": true, "Content-Md5": true}

// forwardedHeaders builds the headers of an origin request: the viewer
// headers the behaviour forwards, its cookies, X-Forwarded-For with the
// viewer's address appended, and Via.
func (e *Edge) forwardedHeaders(r *http.Request, rq *request, fetch bool) http.Header {
	b := rq.b
	h := http.Header{}
	for name, vals := range r.Header {
		if (fetch && notForwardedOnFetch[name]) || name == "Cookie" || name == "X-Forwarded-For" || name == "Via" {
			continue
		}
		if b.forwardHeader(name) || (!fetch && alwaysForwarded[name]) {
			h[name] = slices.Clone(vals)
		}
	}
	for _, hop := range hopHeaders {
		delete(h, hop)
	}
	if c := filterCookies(r, b.forwardCookie); c != "" {
		h.Set("Cookie", c)
	}
	xff := rq.client.String()
	if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 && b.forwardHeader("X-Forwarded-For") {
		xff = strings.Join(prior, ", ") + ", " + xff
	}
	if rq.client.IsValid() {
		h.Set("X-Forwarded-For", xff)
	}
	h.Add("Via", viaValue)
	if !b.forwardHeader("User-Agent") {
		h.Set("User-Agent", "haven-edge")
	}
	return h
}

const viaValue = "1.1 haven-edge"
