package idp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/clock"
)

// memKeyStore is the test KeyStore: the blob in memory, with a failpoint.
type memKeyStore struct {
	mu      sync.Mutex
	blob    []byte
	saves   int
	failErr error // returned by Load and Save while set
}

func (m *memKeyStore) Load(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failErr != nil {
		return nil, m.failErr
	}
	return bytes.Clone(m.blob), nil
}

func (m *memKeyStore) Save(_ context.Context, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failErr != nil {
		return m.failErr
	}
	m.blob = bytes.Clone(b)
	m.saves++
	return nil
}

func (m *memKeyStore) fail(err error) { m.mu.Lock(); m.failErr = err; m.mu.Unlock() }

// Test directory and client. The hashes are computed once per test binary.
const (
	teacherName     = "teacher1@example.edu"
	teacherPassword = "correct horse battery staple"
	studentName     = "student1@example.edu"
	studentPassword = "exam-week-2026"
	clientID        = "courses"
	clientSecret    = "s3cret-for-tests-only-0123456789"
	otherClientID   = "other-app"
	redirectURI     = "https://courses.example.edu/login/sso/callback"
	postLogoutURI   = "https://courses.example.edu/login?msg=logged-out"
)

var testHashes = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	for _, s := range []string{teacherPassword, studentPassword, clientSecret} {
		h, err := HashSecret(s)
		if err != nil {
			panic(err)
		}
		out[s] = h
	}
	return out
})

func testUsers() []User {
	h := testHashes()
	return []User{
		{Username: teacherName, Name: "Ada Teacher", Groups: []string{GroupStaff}, PasswordHash: h[teacherPassword]},
		{Username: studentName, Name: "Sam Student", Groups: []string{GroupStudents}, PasswordHash: h[studentPassword]},
	}
}

func testClients() []Client {
	h := testHashes()
	return []Client{
		{ID: clientID, Name: "Courses", SecretHash: h[clientSecret], RedirectURIs: []string{redirectURI}, PostLogoutRedirectURIs: []string{postLogoutURI}},
		{ID: otherClientID, Name: "Other", SecretHash: h[clientSecret], RedirectURIs: []string{"https://other.example.edu/cb"}},
	}
}

// env is a started provider and a browser-like client that trusts it.
type env struct {
	t      *testing.T
	p      *Provider
	keys   *memKeyStore
	clk    *clock.Fake // nil with the real clock
	issuer string
	logs   *logBuffer
	hc     *http.Client // browser: cookie jar, no redirects followed
	api    *http.Client // back channel: no cookies
}

type envOption func(*Config)

func withFakeClock(c *clock.Fake) envOption { return func(cfg *Config) { cfg.Clock = c } }

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	keys := &memKeyStore{}
	return startEnv(t, keys, opts...)
}

func startEnv(t *testing.T, keys *memKeyStore, opts ...envOption) *env {
	t.Helper()
	authority, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := authority.IssueServer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, keys: keys, issuer: "https://" + ln.Addr().String(), logs: &logBuffer{}}
	cfg := Config{
		Issuer:   e.issuer,
		Listener: ln,
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}},
		Keys:     keys,
		Users:    testUsers(),
		Clients:  testClients(),
		Logger:   slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if f, ok := cfg.Clock.(*clock.Fake); ok {
		e.clk = f
	}
	p, err := New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	e.p = p
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: authority.Pool()}}
	t.Cleanup(tr.CloseIdleConnections)
	jar, _ := cookiejar.New(nil)
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	e.hc = &http.Client{Transport: tr, Jar: jar, CheckRedirect: noRedirect, Timeout: 30 * time.Second}
	e.api = &http.Client{Transport: tr, CheckRedirect: noRedirect, Timeout: 30 * time.Second}
	return e
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// logBuffer collects log output, to check that no secret reaches it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }

// resp is a read response.
type resp struct {
	status   int
	header   http.Header
	body     string
	location *url.URL
}

func (e *env) do(c *http.Client, req *http.Request) resp {
	e.t.Helper()
	r, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	out := resp{status: r.StatusCode, header: r.Header, body: string(b)}
	if loc := r.Header.Get("Location"); loc != "" {
		u, err := req.URL.Parse(loc)
		if err != nil {
			e.t.Fatalf("bad Location %q: %v", loc, err)
		}
		out.location = u
	}
	return out
}

func (e *env) get(c *http.Client, u string) resp {
	e.t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(c, req)
}

func (e *env) postForm(c *http.Client, u string, v url.Values, basicUser, basicPass string) resp {
	e.t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(v.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	return e.do(c, req)
}

// pkce is a verifier and its S256 challenge.
type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := randomID()
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// authParams are the parameters of a standard authorization request.
func authParams(pk pkce, state, nonce string, scopes ...string) url.Values {
	if len(scopes) == 0 {
		scopes = []string{"openid", "profile", "email"}
	}
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {strings.Join(scopes, " ")},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {pk.challenge},
		"code_challenge_method": {"S256"},
	}
}

var (
	csrfRe = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	ridRe  = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)
)

func match(t *testing.T, re *regexp.Regexp, page string) string {
	t.Helper()
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no %s in page:\n%s", re, page)
	}
	return m[1]
}

// authorize starts an authorization request and returns the response of the
// provider's login step: the login form, or (with a session) the redirect
// to the callback.
func (e *env) authorize(params url.Values) resp {
	e.t.Helper()
	r := e.get(e.hc, e.issuer+"/authorize?"+params.Encode())
	if r.status != http.StatusFound || r.location == nil {
		e.t.Fatalf("authorize: status %d, want a redirect to the login page:\n%s", r.status, r.body)
	}
	if r.location.Path != loginPath {
		return r // an error redirect to the client
	}
	return e.get(e.hc, r.location.String())
}

// login fills in the login form of page and returns the response.
func (e *env) login(page resp, username, password string) resp {
	e.t.Helper()
	return e.postForm(e.hc, e.issuer+loginPath, url.Values{
		"csrf_token":    {match(e.t, csrfRe, page.body)},
		"authRequestID": {match(e.t, ridRe, page.body)},
		"username":      {username},
		"password":      {password},
	}, "", "")
}

// toClient follows the provider's redirects after the login step until one
// leaves for the client, and returns that URL.
func (e *env) toClient(r resp) *url.URL {
	e.t.Helper()
	for range 5 {
		if r.location == nil {
			e.t.Fatalf("want a redirect, got status %d:\n%s", r.status, r.body)
		}
		if !strings.HasPrefix(r.location.String(), e.issuer) {
			return r.location
		}
		r = e.get(e.hc, r.location.String())
	}
	e.t.Fatal("too many redirects inside the provider")
	return nil
}

// codeFlow runs authorize (with prompt=login, so the form is shown even
// when the browser is signed in) and login as username, and returns the code
// the client receives, checking the state comes back.
func (e *env) codeFlow(pk pkce, username, password string, scopes ...string) string {
	e.t.Helper()
	state, nonce := randomID(), randomID()
	v := authParams(pk, state, nonce, scopes...)
	v.Set("prompt", "login")
	page := e.authorize(v)
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="password"`) {
		e.t.Fatalf("want the login form, got %d:\n%s", page.status, page.body)
	}
	cb := e.toClient(e.login(page, username, password))
	if got := cb.Query().Get("state"); got != state {
		e.t.Fatalf("state at the client = %q, want %q", got, state)
	}
	code := cb.Query().Get("code")
	if code == "" {
		e.t.Fatalf("no code at the client: %s", cb)
	}
	return code
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	IDToken          string `json:"id_token"`
	RefreshToken     string `json:"refresh_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	status           int
}

func (e *env) token(v url.Values, secret string) tokenResponse {
	e.t.Helper()
	r := e.postForm(e.api, e.issuer+"/oauth/token", v, clientID, secret)
	var tr tokenResponse
	if err := json.Unmarshal([]byte(r.body), &tr); err != nil {
		e.t.Fatalf("token endpoint: status %d, body %q: %v", r.status, r.body, err)
	}
	tr.status = r.status
	return tr
}

func (e *env) exchange(code, verifier string) tokenResponse {
	e.t.Helper()
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
	if verifier != "" {
		v.Set("code_verifier", verifier)
	}
	return e.token(v, clientSecret)
}

func (e *env) refresh(rt string) tokenResponse {
	e.t.Helper()
	return e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, clientSecret)
}

// verifier is a standard relying party's ID token verifier (go-oidc),
// reading the discovery document and the JWKS over TLS.
func (e *env) verifier() *gooidc.IDTokenVerifier {
	e.t.Helper()
	ctx := gooidc.ClientContext(context.Background(), e.api)
	prov, err := gooidc.NewProvider(ctx, e.issuer)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := &gooidc.Config{ClientID: clientID}
	if e.clk != nil {
		cfg.Now = e.clk.Now
	}
	return prov.Verifier(cfg)
}

type idClaims struct {
	Issuer        string   `json:"iss"`
	Subject       string   `json:"sub"`
	Nonce         string   `json:"nonce"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"`
	Name          string   `json:"name"`
	Username      string   `json:"preferred_username"`
	Groups        []string `json:"groups"`
	AZP           string   `json:"azp"`
}

func (e *env) verify(raw string) (*gooidc.IDToken, idClaims) {
	e.t.Helper()
	tok, err := e.verifier().Verify(gooidc.ClientContext(context.Background(), e.api), raw)
	if err != nil {
		e.t.Fatalf("verify ID token: %v", err)
	}
	var c idClaims
	if err := tok.Claims(&c); err != nil {
		e.t.Fatal(err)
	}
	return tok, c
}

// kidOf returns the key id in a JWT's header.
func kidOf(t *testing.T, jwt string) string {
	t.Helper()
	h, _, _ := strings.Cut(jwt, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

// jwks returns the key ids the JWKS publishes.
func (e *env) jwks() []string {
	e.t.Helper()
	r := e.get(e.api, e.issuer+"/keys")
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			Use string `json:"use"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(r.body), &set); err != nil {
		e.t.Fatalf("jwks: %v: %s", err, r.body)
	}
	var ids []string
	for _, k := range set.Keys {
		if k.D != "" {
			e.t.Fatalf("the JWKS publishes a private key: %s", k.Kid)
		}
		if k.Alg != "RS256" || k.Use != "sig" {
			e.t.Errorf("key %s: alg %q use %q, want RS256 sig", k.Kid, k.Alg, k.Use)
		}
		ids = append(ids, k.Kid)
	}
	return ids
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errBoom = errors.New("store unavailable")

// testTLS is a server TLS config from a fresh CA.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	authority, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := authority.IssueServer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}
