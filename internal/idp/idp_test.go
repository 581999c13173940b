package idp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	r := e.get(e.api, e.issuer+"/.well-known/openid-configuration")
	if r.status != http.StatusOK {
		t.Fatalf("discovery: %d %s", r.status, r.body)
	}
	var d struct {
		Issuer           string   `json:"issuer"`
		Authorization    string   `json:"authorization_endpoint"`
		Token            string   `json:"token_endpoint"`
		JWKS             string   `json:"jwks_uri"`
		Userinfo         string   `json:"userinfo_endpoint"`
		EndSession       string   `json:"end_session_endpoint"`
		Scopes           []string `json:"scopes_supported"`
		Claims           []string `json:"claims_supported"`
		Grants           []string `json:"grant_types_supported"`
		ResponseTypes    []string `json:"response_types_supported"`
		PKCEMethods      []string `json:"code_challenge_methods_supported"`
		IDTokenAlgs      []string `json:"id_token_signing_alg_values_supported"`
		TokenAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.Unmarshal([]byte(r.body), &d); err != nil {
		t.Fatal(err)
	}
	if d.Issuer != e.issuer {
		t.Errorf("issuer = %q, want %q", d.Issuer, e.issuer)
	}
	for name, got := range map[string]string{"authorization": d.Authorization, "token": d.Token, "jwks": d.JWKS, "userinfo": d.Userinfo, "end_session": d.EndSession} {
		if !strings.HasPrefix(got, e.issuer+"/") {
			t.Errorf("%s endpoint = %q, not under the issuer", name, got)
		}
	}
	if !slices.Equal(d.PKCEMethods, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported = %v, want [S256] only", d.PKCEMethods)
	}
	if !slices.Equal(d.IDTokenAlgs, []string{"RS256"}) {
		t.Errorf("id_token_signing_alg_values_supported = %v, want [RS256]", d.IDTokenAlgs)
	}
	for _, want := range []string{"openid", "profile", "email", "groups", "offline_access"} {
		if !slices.Contains(d.Scopes, want) {
			t.Errorf("scopes_supported %v lacks %s", d.Scopes, want)
		}
	}
	if !slices.Contains(d.Claims, "groups") {
		t.Errorf("claims_supported %v lacks groups", d.Claims)
	}
	for _, want := range []string{"authorization_code", "refresh_token"} {
		if !slices.Contains(d.Grants, want) {
			t.Errorf("grant_types_supported %v lacks %s", d.Grants, want)
		}
	}
	if !slices.Contains(d.TokenAuthMethods, "client_secret_basic") {
		t.Errorf("token_endpoint_auth_methods_supported = %v", d.TokenAuthMethods)
	}
	// The provider speaks HTTPS only.
	if r.header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS header")
	}
}

// TestCodeFlowWithPKCE: the whole flow as a relying party sees it, with the
// ID token verified by go-oidc against the discovery document's JWKS.
func TestCodeFlowWithPKCE(t *testing.T) {
	e := newEnv(t)
	pk := newPKCE()
	state, nonce := "st-"+randomID(), "n-"+randomID()
	page := e.authorize(authParams(pk, state, nonce))
	if page.status != http.StatusOK || !strings.Contains(page.body, "Courses") {
		t.Fatalf("login page: %d\n%s", page.status, page.body)
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://courses.example.edu") {
		t.Errorf("login page CSP = %q: the form's redirect to the client must be allowed", csp)
	}
	cb := e.toClient(e.login(page, "  Teacher1@Example.edu ", teacherPassword))
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != redirectURI {
		t.Fatalf("redirected to %s, want %s", got, redirectURI)
	}
	if cb.Query().Get("state") != state {
		t.Fatalf("state = %q", cb.Query().Get("state"))
	}
	tr := e.exchange(cb.Query().Get("code"), pk.verifier)
	if tr.status != http.StatusOK || tr.IDToken == "" || tr.AccessToken == "" {
		t.Fatalf("token exchange: %+v", tr)
	}
	if tr.RefreshToken != "" {
		t.Error("a refresh token without offline_access")
	}
	tok, c := e.verify(tr.IDToken)
	if c.Issuer != e.issuer || !slices.Equal(tok.Audience, []string{clientID}) || c.AZP != clientID {
		t.Errorf("iss %q aud %v azp %q", c.Issuer, tok.Audience, c.AZP)
	}
	if c.Nonce != nonce {
		t.Errorf("nonce = %q, want %q", c.Nonce, nonce)
	}
	if !slices.Equal(c.Groups, []string{GroupStaff}) || c.Email != teacherName || !c.EmailVerified || c.Name != "Ada Teacher" || c.Username != teacherName {
		t.Errorf("claims = %+v", c)
	}
	if want := e.p.cfg.Users[0].Subject; c.Subject != want || !strings.HasPrefix(want, "u") {
		t.Errorf("sub = %q, want the derived subject %q", c.Subject, want)
	}
	if got := tok.Expiry.Sub(tok.IssuedAt); got != DefaultIDTokenLifetime {
		t.Errorf("ID token lifetime = %s, want %s", got, DefaultIDTokenLifetime)
	}
	if err := tok.VerifyAccessToken(tr.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	// The userinfo endpoint answers for the access token, groups included.
	req, _ := http.NewRequest("GET", e.issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	ui := e.do(e.api, req)
	var info idClaims
	if err := json.Unmarshal([]byte(ui.body), &info); err != nil || ui.status != http.StatusOK {
		t.Fatalf("userinfo: %d %s", ui.status, ui.body)
	}
	if info.Subject != c.Subject || !slices.Equal(info.Groups, []string{GroupStaff}) || info.Email != teacherName {
		t.Errorf("userinfo = %+v", info)
	}
}

func TestStudentGetsStudentsGroup(t *testing.T) {
	e := newEnv(t)
	pk := newPKCE()
	tr := e.exchange(e.codeFlow(pk, studentName, studentPassword), pk.verifier)
	_, c := e.verify(tr.IDToken)
	if !slices.Equal(c.Groups, []string{GroupStudents}) {
		t.Errorf("groups = %v", c.Groups)
	}
}

// TestPKCERequired: an authorization request without an S256 challenge is
// refused at the authorize endpoint, back to the client with invalid_request.
func TestPKCERequired(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(url.Values)
	}{
		{"no challenge", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }},
		{"plain method", func(v url.Values) { v.Set("code_challenge_method", "plain") }},
		{"no method", func(v url.Values) { v.Del("code_challenge_method") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			v := authParams(newPKCE(), "s1", "n1")
			tc.mutate(v)
			r := e.get(e.hc, e.issuer+"/authorize?"+v.Encode())
			if r.location == nil || !strings.HasPrefix(r.location.String(), redirectURI) {
				t.Fatalf("want an error redirect to the client, got %d %v\n%s", r.status, r.location, r.body)
			}
			q := r.location.Query()
			if q.Get("error") != "invalid_request" || !strings.Contains(q.Get("error_description"), "PKCE") || q.Get("state") != "s1" || q.Get("code") != "" {
				t.Errorf("error redirect = %s", r.location)
			}
		})
	}
}

// TestCodeExchangeRefusals: each rule of the token endpoint, one at a time,
// on an otherwise valid exchange.
func TestCodeExchangeRefusals(t *testing.T) {
	e := newEnv(t)
	type ex struct {
		name      string
		form      func(code string, pk pkce) url.Values
		secret    string
		status    int
		errorCode string
	}
	base := func(code string, pk pkce) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {pk.verifier}}
	}
	for _, tc := range []ex{
		{"missing PKCE verifier", func(c string, pk pkce) url.Values { v := base(c, pk); v.Del("code_verifier"); return v }, clientSecret, 400, "invalid_request"},
		{"wrong PKCE verifier", func(c string, pk pkce) url.Values {
			v := base(c, pk)
			v.Set("code_verifier", newPKCE().verifier)
			return v
		}, clientSecret, 400, "invalid_grant"},
		{"other redirect_uri", func(c string, pk pkce) url.Values {
			v := base(c, pk)
			v.Set("redirect_uri", "https://courses.example.edu/other")
			return v
		}, clientSecret, 400, "invalid_grant"},
		{"wrong client secret", base, "not-the-secret", 401, "invalid_client"},
		{"unknown code", func(c string, pk pkce) url.Values { return base("made-up-"+randomID(), pk) }, clientSecret, 400, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pk := newPKCE()
			code := e.codeFlow(pk, teacherName, teacherPassword)
			tr := e.token(tc.form(code, pk), tc.secret)
			if tr.status != tc.status || tr.Error != tc.errorCode || tr.IDToken != "" || tr.AccessToken != "" {
				t.Errorf("got %d %s (%s), tokens %v; want %d %s", tr.status, tr.Error, tr.ErrorDescription, tr.IDToken != "", tc.status, tc.errorCode)
			}
			if tc.name == "unknown code" {
				return // the real code was never sent
			}
			// A refused exchange spends the code: it cannot be retried.
			if again := e.exchange(code, pk.verifier); again.status != 400 || again.Error != "invalid_grant" {
				t.Errorf("the code after a refused exchange: %d %s, want 400 invalid_grant", again.status, again.Error)
			}
		})
	}
	t.Run("another client's code", func(t *testing.T) {
		pk := newPKCE()
		code := e.codeFlow(pk, teacherName, teacherPassword)
		r := e.postForm(e.api, e.issuer+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {redirectURI}, "code_verifier": {pk.verifier}}, otherClientID, clientSecret)
		if r.status != 400 || !strings.Contains(r.body, "invalid_grant") {
			t.Errorf("other client redeeming the code: %d %s", r.status, r.body)
		}
	})
}

// TestCodeReplay: a code works once; a second exchange is refused and
// revokes the tokens the first one issued.
func TestCodeReplay(t *testing.T) {
	e := newEnv(t)
	pk := newPKCE()
	code := e.codeFlow(pk, teacherName, teacherPassword, "openid", "email", "offline_access")
	first := e.exchange(code, pk.verifier)
	if first.status != 200 || first.RefreshToken == "" {
		t.Fatalf("first exchange: %+v", first)
	}
	second := e.exchange(code, pk.verifier)
	if second.status != 400 || second.Error != "invalid_grant" || second.IDToken != "" {
		t.Fatalf("replayed code: %+v, want 400 invalid_grant", second)
	}
	if r := e.refresh(first.RefreshToken); r.status != 400 || r.Error != "invalid_grant" {
		t.Errorf("refresh token of a replayed code: %d %s, want it revoked", r.status, r.Error)
	}
	req, _ := http.NewRequest("GET", e.issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+first.AccessToken)
	if r := e.do(e.api, req); r.status == http.StatusOK {
		t.Errorf("access token of a replayed code still answers userinfo: %s", r.body)
	}
	if !strings.Contains(e.logs.String(), "authorization code replayed") {
		t.Error("the replay is not logged")
	}
}

func TestCodeExpires(t *testing.T) {
	clk := clock.NewFake(time.Now())
	e := newEnv(t, withFakeClock(clk))
	pk := newPKCE()
	code := e.codeFlow(pk, teacherName, teacherPassword)
	clk.Advance(DefaultCodeLifetime + time.Second)
	if tr := e.exchange(code, pk.verifier); tr.status != 400 || tr.Error != "invalid_grant" {
		t.Errorf("expired code: %d %s", tr.status, tr.Error)
	}
}

func TestRedirectURIMustBeRegistered(t *testing.T) {
	e := newEnv(t)
	v := authParams(newPKCE(), "s", "n")
	v.Set("redirect_uri", "https://evil.example/cb")
	r := e.get(e.hc, e.issuer+"/authorize?"+v.Encode())
	if r.status != http.StatusBadRequest || r.location != nil {
		t.Errorf("unregistered redirect_uri: %d, Location %v; want 400 without a redirect", r.status, r.location)
	}
}

// TestRefreshTokenRotation: a refresh gives new tokens and a new refresh
// token; the used one, sent again, revokes the whole family.
func TestRefreshTokenRotation(t *testing.T) {
	e := newEnv(t)
	pk := newPKCE()
	tr := e.exchange(e.codeFlow(pk, teacherName, teacherPassword, "openid", "profile", "offline_access"), pk.verifier)
	if tr.RefreshToken == "" {
		t.Fatal("no refresh token with offline_access")
	}
	r1 := e.refresh(tr.RefreshToken)
	if r1.status != 200 || r1.RefreshToken == "" || r1.RefreshToken == tr.RefreshToken || r1.IDToken == "" {
		t.Fatalf("refresh: %+v", r1)
	}
	_, c := e.verify(r1.IDToken)
	if !slices.Equal(c.Groups, []string{GroupStaff}) {
		t.Errorf("refreshed ID token groups = %v", c.Groups)
	}
	// Reuse of the spent token: refused, and the family is gone.
	if r := e.refresh(tr.RefreshToken); r.status != 400 || r.Error != "invalid_grant" {
		t.Fatalf("reused refresh token: %d %s", r.status, r.Error)
	}
	if r := e.refresh(r1.RefreshToken); r.status != 400 {
		t.Errorf("the family's newest token after a reuse: %d, want revoked", r.status)
	}
}

func TestRefreshTokenExpires(t *testing.T) {
	clk := clock.NewFake(time.Now())
	e := newEnv(t, withFakeClock(clk))
	pk := newPKCE()
	tr := e.exchange(e.codeFlow(pk, teacherName, teacherPassword, "openid", "offline_access"), pk.verifier)
	clk.Advance(DefaultRefreshTokenLifetime + time.Second)
	if r := e.refresh(tr.RefreshToken); r.status != 400 {
		t.Errorf("expired refresh token: %d", r.status)
	}
}

// TestSingleSignOn: a second authorization in the same browser skips the
// form; prompt=login and max_age force it; prompt=none without a session
// answers login_required.
func TestSingleSignOn(t *testing.T) {
	clk := clock.NewFake(time.Now())
	e := newEnv(t, withFakeClock(clk))
	// prompt=none before any sign-in.
	v := authParams(newPKCE(), "s0", "n0")
	v.Set("prompt", "none")
	cb := e.toClient(e.authorize(v))
	if cb.Query().Get("error") != "login_required" || cb.Query().Get("state") != "s0" {
		t.Errorf("prompt=none signed out: %s", cb)
	}

	e.codeFlow(newPKCE(), teacherName, teacherPassword)

	r := e.authorize(authParams(newPKCE(), "s1", "n1"))
	if r.status != http.StatusFound || r.location.Path != callbackPath {
		t.Fatalf("with a session: %d %v, want straight to the callback", r.status, r.location)
	}
	if e.toClient(r).Query().Get("code") == "" {
		t.Fatal("no code from the session")
	}
	v = authParams(newPKCE(), "s2", "n2")
	v.Set("prompt", "none")
	if cb := e.toClient(e.authorize(v)); cb.Query().Get("code") == "" {
		t.Errorf("prompt=none with a session: %s", cb)
	}
	v = authParams(newPKCE(), "s3", "n3")
	v.Set("prompt", "login")
	if r := e.authorize(v); r.status != 200 || !strings.Contains(r.body, `id="password"`) {
		t.Errorf("prompt=login: %d, want the form", r.status)
	}
	clk.Advance(10 * time.Minute)
	v = authParams(newPKCE(), "s4", "n4")
	v.Set("max_age", "300")
	if r := e.authorize(v); r.status != 200 || !strings.Contains(r.body, `id="password"`) {
		t.Errorf("max_age older than the sign-in: %d, want the form", r.status)
	}
	// The session ends after SessionLifetime.
	clk.Advance(DefaultSessionLifetime)
	if r := e.authorize(authParams(newPKCE(), "s5", "n5")); r.status != 200 {
		t.Errorf("after the session's lifetime: %d, want the form", r.status)
	}
}

// TestEndSession: RP-initiated logout with id_token_hint ends the browser's
// session at the provider, revokes the client's tokens and goes to the
// registered post_logout_redirect_uri.
func TestEndSession(t *testing.T) {
	e := newEnv(t)
	pk := newPKCE()
	tr := e.exchange(e.codeFlow(pk, teacherName, teacherPassword, "openid", "offline_access"), pk.verifier)
	if home := e.get(e.hc, e.issuer+"/"); !strings.Contains(home.body, `id="signed-in"`) {
		t.Fatalf("home page while signed in:\n%s", home.body)
	}
	// An unregistered post_logout_redirect_uri is refused.
	bad := e.get(e.hc, e.issuer+"/end_session?"+url.Values{"id_token_hint": {tr.IDToken}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode())
	if bad.status != http.StatusBadRequest || bad.location != nil {
		t.Errorf("unregistered post_logout_redirect_uri: %d %v", bad.status, bad.location)
	}
	r := e.get(e.hc, e.issuer+"/end_session?"+url.Values{"id_token_hint": {tr.IDToken}, "post_logout_redirect_uri": {postLogoutURI}, "state": {"bye"}}.Encode())
	if r.location == nil || r.location.Query().Get("state") != "bye" || !strings.HasPrefix(r.location.String(), "https://courses.example.edu/login?") {
		t.Fatalf("end_session: %d %v\n%s", r.status, r.location, r.body)
	}
	if home := e.get(e.hc, e.issuer+"/"); !strings.Contains(home.body, `id="signed-out"`) {
		t.Errorf("home page after end_session:\n%s", home.body)
	}
	if page := e.authorize(authParams(newPKCE(), "s", "n")); page.status != 200 || !strings.Contains(page.body, `id="password"`) {
		t.Errorf("authorize after end_session: %d, want the login form", page.status)
	}
	if rr := e.refresh(tr.RefreshToken); rr.status != 400 {
		t.Errorf("refresh token after end_session: %d, want revoked", rr.status)
	}
}

// TestEndSessionWithoutHintAsks: without an id_token_hint the provider ends
// nothing until the user confirms.
func TestEndSessionWithoutHintAsks(t *testing.T) {
	e := newEnv(t)
	e.codeFlow(newPKCE(), teacherName, teacherPassword)
	r := e.get(e.hc, e.issuer+"/end_session?"+url.Values{"client_id": {clientID}, "post_logout_redirect_uri": {postLogoutURI}}.Encode())
	if r.location == nil || r.location.Path != logoutPath {
		t.Fatalf("end_session without a hint: %d %v", r.status, r.location)
	}
	if home := e.get(e.hc, e.issuer+"/"); !strings.Contains(home.body, `id="signed-in"`) {
		t.Fatal("signed out without confirming")
	}
	page := e.get(e.hc, r.location.String())
	if page.status != 200 || !strings.Contains(page.body, "Do you want to sign out") {
		t.Fatalf("confirmation page: %d\n%s", page.status, page.body)
	}
	id := r.location.Query().Get("logout")
	done := e.postForm(e.hc, e.issuer+logoutPath, url.Values{"csrf_token": {match(t, csrfRe, page.body)}, "logout": {id}}, "", "")
	if done.location == nil || done.location.String() != postLogoutURI {
		t.Errorf("after confirming: %d %v, want %s", done.status, done.location, postLogoutURI)
	}
	if home := e.get(e.hc, e.issuer+"/"); !strings.Contains(home.body, `id="signed-out"`) {
		t.Error("still signed in after confirming")
	}
}

func TestLogoutFormNeedsCSRF(t *testing.T) {
	e := newEnv(t)
	e.codeFlow(newPKCE(), teacherName, teacherPassword)
	r := e.postForm(e.hc, e.issuer+logoutPath, url.Values{}, "", "")
	if r.status != http.StatusForbidden {
		t.Errorf("logout without a token: %d", r.status)
	}
	if home := e.get(e.hc, e.issuer+"/"); !strings.Contains(home.body, `id="signed-in"`) {
		t.Error("a forged logout form signed the user out")
	}
}

// TestLoginPageRefusals: wrong password, unknown user, a forged form, an
// expired sign-in: each a clear message, and no code.
func TestLoginPageRefusals(t *testing.T) {
	clk := clock.NewFake(time.Now())
	e := newEnv(t, withFakeClock(clk))
	page := e.authorize(authParams(newPKCE(), "s", "n"))
	for _, tc := range []struct{ user, pass string }{{teacherName, "wrong"}, {"nobody@example.edu", teacherPassword}} {
		r := e.login(page, tc.user, tc.pass)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, msgLoginMismatch) || r.location != nil {
			t.Errorf("%s/%s: %d, location %v", tc.user, tc.pass, r.status, r.location)
		}
		if !strings.Contains(r.body, `aria-invalid="true"`) || !strings.Contains(r.body, `role="alert"`) {
			t.Error("the error is not tied to the field for screen readers")
		}
		page = r
	}
	// A forged form: no CSRF cookie.
	forged := e.postForm(e.api, e.issuer+loginPath, url.Values{"authRequestID": {match(t, ridRe, page.body)},
		"csrf_token": {"x"}, "username": {teacherName}, "password": {teacherPassword}}, "", "")
	if forged.status != http.StatusForbidden || forged.location != nil {
		t.Errorf("forged login form: %d", forged.status)
	}
	clk.Advance(DefaultLoginLifetime + time.Second)
	r := e.login(page, teacherName, teacherPassword)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "expired") {
		t.Errorf("expired sign-in: %d\n%s", r.status, r.body)
	}
}

// TestLoginThrottle: an account that takes MaxFailedLogins wrong passwords
// is refused, even with the right one, until the window ends.
func TestLoginThrottle(t *testing.T) {
	clk := clock.NewFake(time.Now())
	e := newEnv(t, withFakeClock(clk))
	page := e.authorize(authParams(newPKCE(), "s", "n"))
	for range DefaultMaxFailedLogins {
		page = e.login(page, teacherName, "guess")
	}
	r := e.login(page, teacherName, teacherPassword)
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "sign-in is paused") || r.header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d\n%s", DefaultMaxFailedLogins, r.status, r.body)
	}
	// Once the window has passed, the right password works again.
	clk.Advance(DefaultFailedLoginWindow)
	page = e.authorize(authParams(newPKCE(), "s2", "n2"))
	if ok := e.login(page, teacherName, teacherPassword); ok.location == nil {
		t.Errorf("after the window: %d\n%s", ok.status, ok.body)
	}
}

// TestLoginThrottleIsPerAccount: one account's failures do not lock another.
func TestLoginThrottleIsPerAccount(t *testing.T) {
	e := newEnv(t)
	page := e.authorize(authParams(newPKCE(), "s", "n"))
	for range DefaultMaxFailedLogins + 1 {
		page = e.login(page, teacherName, "guess")
	}
	if ok := e.login(page, studentName, studentPassword); ok.location == nil {
		t.Errorf("another account is refused too: %d", ok.status)
	}
}

// TestKeyRotation: after RotateKey, new tokens carry the new key, the old
// key stays published for KeyRetention so tokens it signed still verify,
// and then it leaves the JWKS. The key set survives a restart.
func TestKeyRotation(t *testing.T) {
	clk := clock.NewFake(time.Now())
	e := newEnv(t, withFakeClock(clk))
	oldKid := e.p.Status().SigningKey
	pk := newPKCE()
	before := e.exchange(e.codeFlow(pk, teacherName, teacherPassword), pk.verifier)
	if kidOf(t, before.IDToken) != oldKid {
		t.Fatalf("token kid %s, signing key %s", kidOf(t, before.IDToken), oldKid)
	}
	newKid, err := e.p.RotateKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if newKid == oldKid {
		t.Fatal("rotation kept the key")
	}
	if got := e.jwks(); !slices.Equal(got, []string{oldKid, newKid}) {
		t.Fatalf("JWKS after rotation = %v, want [old new]", got)
	}
	pk2 := newPKCE()
	after := e.exchange(e.codeFlow(pk2, teacherName, teacherPassword), pk2.verifier)
	if kidOf(t, after.IDToken) != newKid {
		t.Errorf("a new token is signed by %s, want the new key %s", kidOf(t, after.IDToken), newKid)
	}
	e.verify(before.IDToken) // the old key still verifies its tokens
	e.verify(after.IDToken)
	st := e.p.Status()
	if len(st.Keys) != 2 || !st.Keys[1].Signing || st.Keys[0].Signing || st.Keys[0].PublishedUntil.IsZero() {
		t.Errorf("status keys = %+v", st.Keys)
	}
	// Past retention, the next schedule round unpublishes the old key.
	clk.Advance(DefaultKeyRetention)
	eventually(t, "the old key to leave the JWKS", func() bool { return len(e.p.Status().Keys) == 1 })
	if got := e.jwks(); !slices.Equal(got, []string{newKid}) {
		t.Errorf("JWKS after retention = %v", got)
	}

	// A restart from the same store signs with the same key.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	e2 := startEnv(t, e.keys, withFakeClock(clk))
	if got := e2.p.Status().SigningKey; got != newKid {
		t.Errorf("after restart the signing key is %s, want %s", got, newKid)
	}
}

// TestScheduledRotation: the schedule rotates the key by itself once it is
// KeyRotation old.
func TestScheduledRotation(t *testing.T) {
	clk := clock.NewFake(time.Now())
	e := newEnv(t, withFakeClock(clk), func(c *Config) { c.KeyRotation = 2 * time.Hour })
	first := e.p.Status().SigningKey
	clk.Advance(2 * time.Hour)
	eventually(t, "a scheduled rotation", func() bool { return e.p.Status().SigningKey != first })
	if got := e.jwks(); len(got) != 2 || got[0] != first {
		t.Errorf("JWKS = %v, want the old key kept", got)
	}
	if e.keys.saves < 2 {
		t.Errorf("key store saved %d times, want the rotation saved", e.keys.saves)
	}
}

func TestKeyStoreFailures(t *testing.T) {
	keys := &memKeyStore{}
	keys.fail(errBoom)
	// Start fails when the keys cannot be read, saying why.
	p, err := New(Config{Issuer: "https://127.0.0.1:1", Addr: "127.0.0.1:0", TLS: testTLS(t), Keys: keys, Users: testUsers(), Clients: testClients()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err == nil || !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "load signing keys") {
		t.Fatalf("start with a failing store: %v", err)
	}

	// A rotation that cannot be saved does not change the signing key.
	good := newEnv(t)
	kid := good.p.Status().SigningKey
	good.keys.fail(errBoom)
	if _, err := good.p.RotateKey(context.Background()); !errors.Is(err, errBoom) {
		t.Fatalf("rotate with a failing store: %v", err)
	}
	if got := good.p.Status().SigningKey; got != kid {
		t.Errorf("signing key changed to %s although the store refused it", got)
	}
	if got := good.jwks(); !slices.Equal(got, []string{kid}) {
		t.Errorf("JWKS = %v after a failed rotation", got)
	}
}

func TestStatusHoldsNoSecrets(t *testing.T) {
	e := newEnv(t)
	st := e.p.Status()
	if st.Issuer != e.issuer || st.Addr == "" || st.DiscoveryURL != e.issuer+"/.well-known/openid-configuration" {
		t.Errorf("status = %+v", st)
	}
	if len(st.Clients) != 2 || st.Clients[0].ID != clientID || !slices.Equal(st.Clients[0].RedirectURIs, []string{redirectURI}) {
		t.Errorf("clients = %+v", st.Clients)
	}
	if len(st.Keys) != 1 || st.Keys[0].ID != st.SigningKey || !st.Keys[0].Signing {
		t.Errorf("keys = %+v", st.Keys)
	}
	if !slices.Equal(st.Groups, []GroupStatus{{"staff", 1}, {"students", 1}}) || st.Users != 2 {
		t.Errorf("groups = %+v users %d", st.Groups, st.Users)
	}
	b, _ := json.Marshal(st)
	for _, h := range testHashes() {
		if strings.Contains(string(b), h) {
			t.Error("status JSON carries a hash")
		}
	}
	if strings.Contains(string(b), "$argon2id$") || strings.Contains(string(b), "private") {
		t.Errorf("status JSON: %s", b)
	}
}

// TestNoSecretInLogs: a full session's logs (sign-ins, failures, refreshes,
// a replay, logout) carry no password, client secret, code, token or cookie.
func TestNoSecretInLogs(t *testing.T) {
	e := newEnv(t)
	// zitadel/oidc logs protocol errors through slog.Default: catch those too.
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })
	page := e.authorize(authParams(newPKCE(), "s", "n"))
	e.login(page, teacherName, "a-wrong-password-123")
	pk := newPKCE()
	code := e.codeFlow(pk, teacherName, teacherPassword, "openid", "offline_access")
	tr := e.exchange(code, pk.verifier)
	e.exchange(code, pk.verifier) // replay
	pk2 := newPKCE()
	tr2 := e.exchange(e.codeFlow(pk2, teacherName, teacherPassword, "openid", "offline_access"), pk2.verifier)
	r := e.refresh(tr2.RefreshToken)
	e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.RefreshToken}}, "wrong-secret-456")
	e.get(e.hc, e.issuer+"/end_session?"+url.Values{"id_token_hint": {r.IDToken}, "post_logout_redirect_uri": {postLogoutURI}}.Encode())
	logs := e.logs.String()
	secrets := []string{teacherPassword, "a-wrong-password-123", clientSecret, "wrong-secret-456", code,
		tr.AccessToken, tr.IDToken, tr.RefreshToken, tr2.RefreshToken, r.RefreshToken, r.AccessToken, r.IDToken}
	for _, u := range e.hc.Jar.Cookies(&url.URL{Scheme: "https", Host: strings.TrimPrefix(e.issuer, "https://")}) {
		secrets = append(secrets, u.Value)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("a secret value reached the log: %.12s…", s)
		}
	}
	if !strings.Contains(logs, "signed in") || !strings.Contains(logs, "client authentication failed") || !strings.Contains(logs, "oidc_error") {
		t.Errorf("expected events missing from the log:\n%s", logs)
	}
}

func TestPagesAreAccessibleMarkup(t *testing.T) {
	e := newEnv(t)
	page := e.authorize(authParams(newPKCE(), "s", "n"))
	for _, want := range []string{`<html lang="en">`, `<main`, `<h1`, `<label for="username">`, `<label for="password">`,
		`autocomplete="username"`, `autocomplete="current-password"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if page.header.Get("Cache-Control") != "no-store" || page.header.Get("X-Frame-Options") != "DENY" || page.header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("login page headers: %v", page.header)
	}
	css := e.get(e.api, e.issuer+cssPath)
	if css.status != 200 || !strings.Contains(css.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %s", css.status, css.header.Get("Content-Type"))
	}
}

func TestExpiredLoginLink(t *testing.T) {
	e := newEnv(t)
	r := e.get(e.hc, e.issuer+loginPath+"?authRequestID=nope")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Go back to the application") {
		t.Errorf("unknown sign-in request: %d\n%s", r.status, r.body)
	}
}
