package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"golang.org/x/oauth2"
)

// The end-to-end single sign-on tests (the real flow against an OpenID
// provider, every refusal, key rotation, the browser) live in
// internal/idp/ssotest: they run this binary against internal/idp, and this
// package imports nothing from internal/, even in tests. The tests here cover
// what needs no provider.

func TestRoleFor(t *testing.T) {
	for _, tc := range []struct {
		groups []string
		want   string
	}{
		{[]string{"staff"}, "teacher"},
		{[]string{"students"}, "student"},
		{[]string{"students", "staff"}, "teacher"},
		{[]string{"alumni"}, ""},
		{nil, ""},
		{[]string{"Staff"}, ""}, // group names are exact
	} {
		if got := roleFor(tc.groups, DefaultTeacherGroups, DefaultStudentGroups); got != tc.want {
			t.Errorf("roleFor(%v) = %q, want %q", tc.groups, got, tc.want)
		}
	}
	// Entra ID sends group object ids: configure those.
	entra := []string{"4b1c3e4e-0000-0000-0000-000000000001"}
	if got := roleFor(entra, entra, nil); got != "teacher" {
		t.Errorf("roleFor with configured ids = %q", got)
	}
}

func TestIdentityFrom(t *testing.T) {
	raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	id := map[string]json.RawMessage{"sub": raw("u1"), "email": raw("Teacher1@Example.edu "), "email_verified": raw(true),
		"name": raw("Ada"), "groups": raw([]string{"staff"})}
	got := identityFrom("https://idp", id, nil, "groups", false)
	want := ssoIdentity{Issuer: "https://idp", Subject: "u1", Email: "teacher1@example.edu", EmailVerified: true, Name: "Ada", Groups: []string{"staff"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("identityFrom = %+v, want %+v", got, want)
	}
	// Missing claims come from userinfo; a single group as a string; a
	// verified flag as a string; the name falls back to preferred_username.
	got = identityFrom("i", map[string]json.RawMessage{"sub": raw("u2")},
		map[string]json.RawMessage{"email": raw("s@x.edu"), "email_verified": raw("true"), "roles": raw("students"), "preferred_username": raw("s@x.edu")},
		"roles", false)
	if got.Email != "s@x.edu" || !got.EmailVerified || !slices.Equal(got.Groups, []string{"students"}) || got.Name != "s@x.edu" {
		t.Errorf("from userinfo: %+v", got)
	}
	// Unverified unless trusted.
	noFlag := map[string]json.RawMessage{"sub": raw("u3"), "email": raw("e@x.edu")}
	if identityFrom("i", noFlag, nil, "groups", false).EmailVerified {
		t.Error("an email without email_verified counted as verified")
	}
	if !identityFrom("i", noFlag, nil, "groups", true).EmailVerified {
		t.Error("TrustEmail did not trust the email")
	}
}

func TestAuthStyleFor(t *testing.T) {
	for _, tc := range []struct {
		methods []string
		want    oauth2.AuthStyle
	}{
		{nil, oauth2.AuthStyleInHeader},
		{[]string{"client_secret_basic", "client_secret_post"}, oauth2.AuthStyleInHeader},
		{[]string{"client_secret_post"}, oauth2.AuthStyleInParams},
		{[]string{"private_key_jwt"}, oauth2.AuthStyleInHeader},
	} {
		if got := authStyleFor(tc.methods); got != tc.want {
			t.Errorf("authStyleFor(%v) = %v, want %v", tc.methods, got, tc.want)
		}
	}
}

func TestSSOStateCookie(t *testing.T) {
	st := ssoState{State: "s", Nonce: "n", Verifier: "v", Next: "/courses/1/gradebook", Expires: 42}
	got, ok := decodeSSOState(encodeSSOState(st))
	if !ok || got != st {
		t.Errorf("round trip: %+v %v", got, ok)
	}
	for _, bad := range []string{"", "!!", encodeSSOState(ssoState{State: "s"})} {
		if _, ok := decodeSSOState(bad); ok {
			t.Errorf("decoded %q", bad)
		}
	}
}

func TestSafeNextRefusesSSOPaths(t *testing.T) {
	for _, p := range []string{"/login/sso", "/login/sso/callback?code=x&state=y", "/login/"} {
		if got := safeNext(p); got != "" {
			t.Errorf("safeNext(%q) = %q, want refused", p, got)
		}
	}
	if got := safeNext("/courses/1/gradebook?q=ana"); got != "/courses/1/gradebook?q=ana" {
		t.Errorf("safeNext refused a page: %q", got)
	}
}

func TestSSOConfigValidate(t *testing.T) {
	ok := SSOConfig{Issuer: "https://idp.example.edu", ClientID: "courses", ClientSecretID: "courses/oidc", PublicURL: "https://courses.example.edu/"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid: %v", err)
	}
	if ok.RedirectURL() != "https://courses.example.edu/login/sso/callback" || ok.PostLogoutURL() != "https://courses.example.edu/login?msg=sso-logged-out" {
		t.Errorf("URLs: %s %s", ok.RedirectURL(), ok.PostLogoutURL())
	}
	if !slices.Equal(ok.Scopes, DefaultSSOScopes) || ok.GroupsClaim != "groups" {
		t.Errorf("defaults: %+v", ok)
	}
	for _, tc := range []struct {
		name string
		c    SSOConfig
		want string
	}{
		{"off", SSOConfig{}, ""},
		{"staff only without SSO", SSOConfig{StaffSSOOnly: true}, "--sso-only-staff: needs --oidc-issuer"},
		{"client id without issuer", SSOConfig{ClientID: "x"}, "--oidc-issuer is not"},
		{"http issuer", SSOConfig{Issuer: "http://idp", ClientID: "c", ClientSecretID: "s", PublicURL: "https://c"}, "--oidc-issuer: want the provider's https issuer URL"},
		{"no client id", SSOConfig{Issuer: "https://idp", ClientSecretID: "s", PublicURL: "https://c"}, "--oidc-client-id: required"},
		{"no secret id", SSOConfig{Issuer: "https://idp", ClientID: "c", PublicURL: "https://c"}, "--oidc-client-secret-id: required"},
		{"no public url", SSOConfig{Issuer: "https://idp", ClientID: "c", ClientSecretID: "s"}, "--public-url"},
		{"public url with path", SSOConfig{Issuer: "https://idp", ClientID: "c", ClientSecretID: "s", PublicURL: "https://c/app"}, "--public-url"},
		{"http public url", SSOConfig{Issuer: "https://idp", ClientID: "c", ClientSecretID: "s", PublicURL: "http://courses.example.edu"}, "--public-url"},
		{"no openid scope", SSOConfig{Issuer: "https://idp", ClientID: "c", ClientSecretID: "s", PublicURL: "https://c", Scopes: []string{"email"}}, "--oidc-scopes: must include openid"},
	} {
		err := tc.c.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
	loop := SSOConfig{Issuer: "https://idp", ClientID: "c", ClientSecretID: "s", PublicURL: "http://127.0.0.1:8080"}
	if err := loop.Validate(); err != nil {
		t.Errorf("http on loopback for a developer: %v", err)
	}
}

func TestParseClientSecret(t *testing.T) {
	for in, want := range map[string]string{"abc123": "abc123", " abc123\n": "abc123", `{"client_secret":"xyz"}`: "xyz"} {
		if got, err := parseClientSecret(in); err != nil || got != want {
			t.Errorf("parseClientSecret(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", `{"client_secret":""}`, `{"client_secret":`, "two\nlines"} {
		_, err := parseClientSecret(bad)
		if err == nil {
			t.Errorf("parseClientSecret(%q) accepted", bad)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("the error repeats the secret: %v", err)
		}
	}
}

// countingFetcher answers GetSecretValue from a map and counts calls.
type countingFetcher struct {
	values map[string]string
	calls  int
}

func (f *countingFetcher) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.calls++
	if aws.ToString(in.VersionStage) != "AWSCURRENT" {
		return nil, errors.New("want AWSCURRENT")
	}
	v, ok := f.values[aws.ToString(in.SecretId)]
	if !ok {
		return nil, errors.New("ResourceNotFoundException")
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(v), VersionId: aws.String(fmt.Sprint("v", f.calls))}, nil
}

func TestClientSecretProviderCachesAndRefetches(t *testing.T) {
	f := &countingFetcher{values: map[string]string{"courses/oidc": `{"client_secret":"first"}`}}
	var logs lockedBuffer
	p := &ClientSecretProvider{client: f, secretID: "courses/oidc", log: newLogger(&logs)}
	ctx := context.Background()
	for range 3 {
		if s, err := p.Secret(ctx); err != nil || s != "first" {
			t.Fatalf("Secret = %q, %v", s, err)
		}
	}
	if f.calls != 1 {
		t.Errorf("%d fetches for three reads, want 1 (cached)", f.calls)
	}
	f.values["courses/oidc"] = "second"
	p.Invalidate()
	if s, _ := p.Secret(ctx); s != "second" || f.calls != 2 {
		t.Errorf("after Invalidate: %q with %d fetches", s, f.calls)
	}
	if strings.Contains(logs.String(), "first") || strings.Contains(logs.String(), "second") {
		t.Errorf("the secret reached the log: %s", logs.String())
	}
	bad := &ClientSecretProvider{client: f, secretID: "missing", log: newLogger(&logs)}
	if _, err := bad.Secret(ctx); err == nil || !strings.Contains(err.Error(), "get secret missing") {
		t.Errorf("missing secret: %v", err)
	}
}

// unreachableIssuer is an https URL on a closed loopback port.
func unreachableIssuer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "https://" + addr
}

// ssoTestServer is the app with single sign-on configured against an issuer
// nobody answers at.
func ssoTestServer(t *testing.T, db *DB, staffOnly bool) (*Server, string) {
	t.Helper()
	cfg := SSOConfig{Issuer: unreachableIssuer(t), ClientID: "courses", ClientSecretID: "courses/oidc",
		PublicURL: "https://courses.example.edu", StaffSSOOnly: staffOnly}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	secret := &ClientSecretProvider{client: &countingFetcher{values: map[string]string{"courses/oidc": "s"}}, secretID: "courses/oidc", log: testLogger(t)}
	s, err := NewServer(ServerConfig{DB: db, Logger: testLogger(t), SSO: newSSOClient(cfg, secret, systemClock{}, testLogger(t))})
	if err != nil {
		t.Fatal(err)
	}
	return s, newHTTPTestServer(t, s)
}

// TestSSOWithoutProvider: the login page offers single sign-on; when the
// provider cannot be reached the user is told so and password logins still
// work; a callback without this browser's state is refused before anything
// is sent anywhere.
func TestSSOWithoutProvider(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	_, base := ssoTestServer(t, db, false)
	c := newClient(t, base)

	_, page := c.get("/login?next=" + url.QueryEscape("/courses/1"))
	if !strings.Contains(page, `href="/login/sso?next=%2Fcourses%2F1"`) || !strings.Contains(page, "Sign in with your university account") {
		t.Errorf("login page lacks the single sign-on link:\n%s", page)
	}
	resp, page := c.get("/login/sso?next=/courses/1")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(page, "cannot be reached") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("provider down: %d\n%s", resp.StatusCode, page)
	}
	// A callback this browser did not start: refused on the state.
	resp, page = c.get("/login/sso/callback?code=stolen&state=guess")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "started in another browser or tab") {
		t.Errorf("callback without state: %d\n%s", resp.StatusCode, page)
	}
	// A forged state cookie with a different state: refused too.
	c.cookies[ssoCookie] = encodeSSOState(ssoState{State: "mine", Nonce: "n", Verifier: "v", Expires: time.Now().Add(time.Minute).Unix()})
	resp, _ = c.get("/login/sso/callback?code=stolen&state=theirs")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback with another state: %d", resp.StatusCode)
	}
	if _, ok := c.cookies[ssoCookie]; ok {
		t.Error("the state cookie survived a refused callback")
	}
	// Password logins go on.
	resp, _ = c.postForm("/login", url.Values{"csrf_token": {c.cookies[loginCSRFCookie]}, "email": {"student1@example.edu"}, "password": {testPassword}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/courses" {
		t.Errorf("password login with SSO configured: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The CSP lets the logout form's redirect through the provider.
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://127.0.0.1:") {
		t.Errorf("CSP = %q", csp)
	}
	// A password session logs out locally: no provider involved.
	_, home := c.get("/courses")
	resp, _ = c.postForm("/logout", url.Values{"csrf_token": {formToken(t, home)}})
	if resp.Header.Get("Location") != "/login?msg=logged-out" {
		t.Errorf("password session logout went to %s", resp.Header.Get("Location"))
	}
}

// TestStaffSSOOnly: with SSO-only for staff, a teacher's password login is
// refused with a clear message, even with the right password; students keep
// password logins.
func TestStaffSSOOnly(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	s, base := ssoTestServer(t, db, true)
	c := newClient(t, base)
	_, page := c.get("/login")
	if !strings.Contains(page, "Password login is turned off for staff") {
		t.Errorf("login page does not say staff use single sign-on:\n%s", page)
	}
	before := s.passwordChecks.Load()
	resp, page := c.postForm("/login", url.Values{"csrf_token": {c.cookies[loginCSRFCookie]}, "email": {"teacher1@example.edu"}, "password": {testPassword}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "password login is turned off for staff") || c.cookies[sessionCookie] != "" {
		t.Fatalf("teacher password login: %d\n%s", resp.StatusCode, page)
	}
	if !strings.Contains(page, `aria-invalid="true"`) || !strings.Contains(page, `value="teacher1@example.edu"`) {
		t.Error("the refusal is not tied to the form, or the email was lost")
	}
	if s.passwordChecks.Load() != before {
		t.Error("a refused staff login still checked the password")
	}
	body, _ := json.Marshal(map[string]string{"email": "TEACHER1@example.edu", "password": testPassword})
	resp, b := c.do("POST", "/api/login", "application/json", strings.NewReader(string(body)), nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(b, "single sign-on") {
		t.Errorf("teacher API login: %d %s", resp.StatusCode, b)
	}
	me := c.apiLogin("student1@example.edu", testPassword)
	if me.User.Role != "student" {
		t.Errorf("student API login: %+v", me.User)
	}
	c2 := newClient(t, base)
	c2.get("/login")
	resp, _ = c2.postForm("/login", url.Values{"csrf_token": {c2.cookies[loginCSRFCookie]}, "email": {"student2@example.edu"}, "password": {testPassword}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("student password login: %d", resp.StatusCode)
	}
}

// TestLinkSSOUser: the first sign-in links a seeded account by verified
// email or creates one without a password; later sign-ins find it by
// subject and follow the provider's groups; an unverified email links
// nothing.
func TestLinkSSOUser(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	st := &Store{db: db, clock: systemClock{}, ttl: time.Hour}
	ctx := context.Background()
	seeded, _, err := st.UserByEmail(ctx, "teacher1@example.edu")
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.LinkSSOUser(ctx, ssoIdentity{Issuer: "https://idp", Subject: "t1", Email: "teacher1@example.edu", EmailVerified: true, Name: "Ada T"}, "teacher")
	if err != nil || u.ID != seeded.ID || u.Name != "Ada T" || u.Role != "teacher" {
		t.Fatalf("link by email: %+v %v (seeded %d)", u, err, seeded.ID)
	}
	// Found by subject afterwards, even if the email claim changed.
	again, err := st.LinkSSOUser(ctx, ssoIdentity{Issuer: "https://idp", Subject: "t1", Email: "ada@new.example.edu", EmailVerified: true}, "teacher")
	if err != nil || again.ID != seeded.ID || again.Email != "teacher1@example.edu" {
		t.Errorf("by subject: %+v %v", again, err)
	}
	// The same subject at another issuer is another identity.
	if _, err := st.LinkSSOUser(ctx, ssoIdentity{Issuer: "https://other", Subject: "t1", Email: "teacher1@example.edu"}, "teacher"); !errors.Is(err, errUnverifiedEmail) {
		t.Errorf("unverified email at another issuer: %v", err)
	}
	// A new user: created, with no password that could ever match.
	nu, err := st.LinkSSOUser(ctx, ssoIdentity{Issuer: "https://idp", Subject: "n1", Email: "new.staff@example.edu", EmailVerified: true, Name: "New Staff"}, "teacher")
	if err != nil || nu.Role != "teacher" {
		t.Fatalf("create: %+v %v", nu, err)
	}
	_, hash, _ := st.UserByEmail(ctx, "new.staff@example.edu")
	if hash != ssoPasswordHash {
		t.Errorf("password hash of an SSO-created user = %q", hash)
	}
	// The provider's groups decide the role at each sign-in.
	demoted, _ := st.LinkSSOUser(ctx, ssoIdentity{Issuer: "https://idp", Subject: "n1"}, "student")
	if demoted.Role != "student" || demoted.Name != "New Staff" {
		t.Errorf("role change: %+v", demoted)
	}
	// Sessions keep the ID token for logout, and give it back once.
	tok, _, err := st.createSession(ctx, nu.ID, nil, "header.payload.sig")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.DeleteSession(ctx, tok); err != nil || got != "header.payload.sig" {
		t.Errorf("DeleteSession = %q, %v", got, err)
	}
	if got, err := st.DeleteSession(ctx, tok); err != nil || got != "" {
		t.Errorf("second DeleteSession = %q, %v", got, err)
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestSSOSecretRefusedIsRefetched: when the token endpoint answers
// invalid_client (the secret was rotated), the sign-in is refused and the
// cached secret dropped, so the next sign-in reads the new one. A provider
// without an end_session_endpoint means a local logout. The provider here is
// a stub that serves only discovery and a token endpoint that refuses.
func TestSSOSecretRefusedIsRefetched(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	var tokenCalls int
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"issuer": srv.URL, "authorization_endpoint": srv.URL + "/authorize",
			"token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/keys", "id_token_signing_alg_values_supported": []string{"RS256"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic"}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		tokenCalls++
		if _, secret, ok := r.BasicAuth(); !ok || secret == "" {
			t.Errorf("token request without HTTP Basic client authentication")
		}
		if r.PostFormValue("code_verifier") == "" {
			t.Errorf("token request without the PKCE verifier")
		}
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
	})
	f := &countingFetcher{values: map[string]string{"courses/oidc": "old-secret"}}
	cfg := SSOConfig{Issuer: srv.URL, ClientID: "courses", ClientSecretID: "courses/oidc", PublicURL: "https://courses.example.edu"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := newSSOClient(cfg, &ClientSecretProvider{client: f, secretID: "courses/oidc", log: testLogger(t)}, systemClock{}, testLogger(t))
	c.hc = srv.Client()
	ctx := context.Background()
	_, _, err := c.complete(ctx, ssoState{State: "s", Nonce: "n", Verifier: oauth2.GenerateVerifier()}, "a-code")
	var se *ssoError
	if !errors.As(err, &se) || se.status != http.StatusBadGateway || !strings.Contains(se.reason, "invalid_client") {
		t.Fatalf("complete = %v", err)
	}
	if tokenCalls != 1 {
		t.Errorf("%d token requests, want exactly 1 (a provider may spend the code on the first)", tokenCalls)
	}
	f.values["courses/oidc"] = "new-secret"
	if s, _ := c.secret.Secret(ctx); s != "new-secret" || f.calls != 2 {
		t.Errorf("after invalid_client the secret is %q after %d fetches, want the new one refetched", s, f.calls)
	}
	if u, ok := c.endSessionURL(ctx, "a.b.c"); ok {
		t.Errorf("end session URL %q from a provider that has none", u)
	}
}
