package ssotest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// me asks the app who the browser is signed in as (0 and "" when nobody).
func (b *browser) me() (id int64, role string) {
	b.t.Helper()
	p := b.get(b.r.appURL + "/api/me")
	if p.status != http.StatusOK {
		return 0, ""
	}
	var m struct {
		User struct {
			ID   int64  `json:"id"`
			Role string `json:"role"`
		} `json:"user"`
	}
	if err := json.Unmarshal([]byte(p.body), &m); err != nil {
		b.t.Fatal(err)
	}
	return m.User.ID, m.User.Role
}

func (r *region) userID(email string) int64 {
	r.t.Helper()
	var id int64
	if err := r.db.QueryRow(context.Background(), "SELECT id FROM users WHERE email = $1", email).Scan(&id); err != nil {
		r.t.Fatalf("user %s: %v", email, err)
	}
	return id
}

// checkNoSecrets fails if any value reached the app's or the provider's log.
func (r *region) checkNoSecrets(values ...string) {
	r.t.Helper()
	logs := r.appLog.String() + r.idpLogs.String()
	for _, v := range append(values, clientSecret, idpPassword) {
		if len(v) >= 8 && strings.Contains(logs, v) {
			r.t.Errorf("a secret value reached a log: %.10s…", v)
		}
	}
}

// TestTeacherSignsIn: "Sign in with your university account" as the seed's
// teacher: the authorization request carries PKCE (S256), state and nonce;
// the provider's login page; back at the page asked for, signed in as the
// seeded teacher (linked by verified email), with the teacher role. The
// client secret came from Secrets Manager with the instance's credentials and
// is in no flag, variable or log.
func TestTeacherSignsIn(t *testing.T) {
	r := newRegion(t, options{})
	b := r.newBrowser()
	p, s := b.ssoLogin(teacherEmail, idpPassword, "/courses/1/gradebook")
	q := s.authorize.Query()
	for k, want := range map[string]string{"response_type": "code", "client_id": clientID, "code_challenge_method": "S256",
		"redirect_uri": r.appURL + "/login/sso/callback", "scope": "openid email profile"} {
		if q.Get(k) != want {
			t.Errorf("authorization request %s = %q, want %q", k, q.Get(k), want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 32 {
			t.Errorf("authorization request %s = %q: want a fresh random value", k, q.Get(k))
		}
	}
	if p.status != http.StatusSeeOther || p.location == nil || p.location.RequestURI() != "/courses/1/gradebook" {
		t.Fatalf("after the callback: %d to %v\n%s", p.status, p.location, p.body)
	}
	gb := b.get(p.location.String())
	if gb.status != http.StatusOK || !strings.Contains(gb.body, "teacher1@example.edu") || !strings.Contains(gb.body, `class="gradebook"`) {
		t.Fatalf("gradebook: %d\n%s", gb.status, gb.body)
	}
	id, role := b.me()
	if role != "teacher" || id != r.userID(teacherEmail) {
		t.Errorf("signed in as %d (%s), want the seeded teacher %d", id, role, r.userID(teacherEmail))
	}
	var linked int
	if err := r.db.QueryRow(context.Background(), "SELECT count(*) FROM user_identities WHERE issuer = $1 AND user_id = $2", r.issuer, id).Scan(&linked); err != nil || linked != 1 {
		t.Errorf("user_identities rows for the teacher: %d, %v", linked, err)
	}
	// The ID token is kept with the session for the logout, nothing else.
	var idToken string
	if err := r.db.QueryRow(context.Background(), "SELECT id_token FROM sessions WHERE user_id = $1", id).Scan(&idToken); err != nil {
		t.Fatal(err)
	}
	if kid := r.idp.Status().SigningKey; !strings.Contains(r.appLog.String(), `"kid":"`+kid+`"`) {
		t.Errorf("the app did not log verifying an ID token signed by %s", kid)
	}
	if len(r.appLog.lines("fetched the OpenID Connect client secret")) != 1 {
		t.Error("the app did not fetch the client secret from Secrets Manager exactly once")
	}
	for _, a := range append(r.app.Args, r.app.Env...) {
		if strings.Contains(a, clientSecret) {
			t.Errorf("the client secret is in the app's arguments or environment: %s", a)
		}
	}
	r.checkNoSecrets(idToken, s.callback.Query().Get("code"), b.appCookie("courses_session"))
}

// TestFirstSignInCreatesOrRefuses: a lecturer the app has never seen gets
// an account (teacher, no password); a student gets the student role; an
// account in no known group is refused with a clear message.
func TestFirstSignInCreatesOrRefuses(t *testing.T) {
	r := newRegion(t, options{})
	b := r.newBrowser()
	if p, _ := b.ssoLogin(newStaffEmail, idpPassword, ""); p.location == nil || p.location.Path != "/courses" {
		t.Fatalf("new lecturer: %d %v\n%s", p.status, p.location, p.body)
	}
	var role, hash string
	if err := r.db.QueryRow(context.Background(), "SELECT role, password_hash FROM users WHERE email = $1", newStaffEmail).Scan(&role, &hash); err != nil {
		t.Fatal(err)
	}
	if role != "teacher" || strings.HasPrefix(hash, "$2") {
		t.Errorf("new lecturer: role %s, password hash %q (want teacher and no usable password)", role, hash)
	}

	s := r.newBrowser()
	s.ssoLogin(studentEmail, idpPassword, "")
	if id, role := s.me(); role != "student" || id != r.userID(studentEmail) {
		t.Errorf("student: %d %s", id, role)
	}

	o := r.newBrowser()
	p, _ := o.ssoLogin(outsiderEmail, idpPassword, "")
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "neither the staff nor the students group") {
		t.Errorf("account in no known group: %d\n%s", p.status, p.body)
	}
	if id, _ := o.me(); id != 0 {
		t.Error("the refused account has a session")
	}
}

// TestLogoutEndsBothSessions: logging out of the app ends the app session
// and, through the provider's end_session_endpoint (id_token_hint,
// post_logout_redirect_uri), the provider's; both say so.
func TestLogoutEndsBothSessions(t *testing.T) {
	r := newRegion(t, options{})
	b := r.newBrowser()
	p, _ := b.ssoLogin(teacherEmail, idpPassword, "")
	home := b.get(r.appURL + p.location.Path)
	if idp := b.get(r.issuer + "/"); !strings.Contains(idp.body, `id="signed-in"`) {
		t.Fatalf("provider's page while signed in:\n%s", idp.body)
	}
	out := b.post(r.appURL+"/logout", url.Values{"csrf_token": {find(t, csrfRe, home.body)}})
	if out.location == nil || !strings.HasPrefix(out.location.String(), r.issuer+"/end_session?") {
		t.Fatalf("logout went to %v, want the provider's end_session_endpoint", out.location)
	}
	q := out.location.Query()
	if q.Get("id_token_hint") == "" || q.Get("post_logout_redirect_uri") != r.appURL+"/login?msg=sso-logged-out" || q.Get("client_id") != clientID {
		t.Errorf("end_session request: %v", q)
	}
	back := b.follow(out, func(u *url.URL) bool { return strings.HasPrefix(u.String(), r.appURL) })
	if back.location == nil || back.location.String() != r.appURL+"/login?msg=sso-logged-out" {
		t.Fatalf("after end_session: %d %v\n%s", back.status, back.location, back.body)
	}
	login := b.get(back.location.String())
	if !strings.Contains(login.body, "You have logged out of Courses and of your university account.") {
		t.Errorf("the app does not say both sessions ended:\n%s", login.body)
	}
	if id, _ := b.me(); id != 0 {
		t.Error("the app session survived the logout")
	}
	if again := b.get(r.appURL + "/courses"); again.location == nil || again.location.Path != "/login" {
		t.Errorf("/courses after logout: %d %v", again.status, again.location)
	}
	if idp := b.get(r.issuer + "/"); !strings.Contains(idp.body, `id="signed-out"`) {
		t.Errorf("the provider still has a session:\n%s", idp.body)
	}
	// Signing in again needs the password: no session at the provider.
	start := b.get(r.appURL + "/login/sso")
	if lp := b.follow(start, func(*url.URL) bool { return false }); !strings.Contains(lp.body, `name="password"`) {
		t.Errorf("signing in again skipped the login page: %d at %s", lp.status, lp.url)
	}
}

// TestRefusals: each attack on the flow, one rule broken at a time, is
// refused with a clear message and no session. The token-level ones go
// through the issuer front, which rewrites the token endpoint's answer; the
// forged tokens are signed with the provider's own key, so only the broken
// rule is wrong.
func TestRefusals(t *testing.T) {
	r := newRegion(t, options{})
	// refused checks a refusal; the log reason must be in what the app
	// logged since mark (see logMark), so one case's line cannot pass
	// another's.
	var mark int
	logMark := func() { mark = len(r.appLog.String()) }
	refused := func(t *testing.T, b *browser, p page, status int, userMsg, logReason string) {
		t.Helper()
		if p.status != status || !strings.Contains(p.body, userMsg) {
			t.Errorf("got %d, want %d with %q:\n%s", p.status, status, userMsg, p.body)
		}
		if !strings.Contains(p.body, `role="alert"`) {
			t.Error("the message is not announced (role=alert)")
		}
		if id, _ := b.me(); id != 0 {
			t.Errorf("signed in as %d despite the refusal", id)
		}
		if logReason != "" && !strings.Contains(r.appLog.String()[mark:], logReason) {
			t.Errorf("the app did not log the reason %q", logReason)
		}
	}
	const invalid = "could not be verified"
	forge := func(mutate func(map[string]any)) func(string) string {
		return func(tok string) string {
			key, kid := r.signingKey()
			return resign(t, tok, key, kid, mutate)
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(string) string
		reason string
	}{
		{"tampered ID token", func(tok string) string {
			// A student's token edited into a teacher's, signature kept.
			parts := strings.Split(tok, ".")
			c := claimsOf(t, tok)
			c["groups"] = []string{"staff"}
			b, _ := json.Marshal(c)
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
		}, "failed to verify signature"},
		{"expired ID token", forge(func(c map[string]any) {
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
			c["exp"] = time.Now().Add(-time.Hour).Unix()
		}), "token is expired"},
		{"wrong-audience ID token", forge(func(c map[string]any) { c["aud"] = []string{"another-app"}; c["azp"] = "another-app" }), "expected audience"},
		{"nonce mismatch", forge(func(c map[string]any) { c["nonce"] = "not-the-nonce-this-browser-sent" }), "nonce does not match"},
		{"ID token from another issuer", forge(func(c map[string]any) { c["iss"] = "https://evil.example" }), "issued by a different provider"},
		{"ID token signed by an unknown key", func(tok string) string {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			return resign(t, tok, k, "made-up-key", func(map[string]any) {})
		}, "failed to verify signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.t = t
			logMark()
			r.setTamper(tc.tamper)
			defer r.setTamper(nil)
			b := r.newBrowser()
			p, _ := b.ssoLogin(studentEmail, idpPassword, "/courses")
			refused(t, b, p, http.StatusUnauthorized, invalid, tc.reason)
		})
	}

	t.Run("wrong state", func(t *testing.T) {
		r.t = t
		logMark()
		b := r.newBrowser()
		s := b.toCallback(studentEmail, idpPassword, "")
		cb := *s.callback
		q := cb.Query()
		q.Set("state", "an-attackers-state-value-0123456789")
		cb.RawQuery = q.Encode()
		refused(t, b, b.get(cb.String()), http.StatusBadRequest, "started in another browser or tab", "state missing, wrong or expired")
	})

	t.Run("replayed authorization code", func(t *testing.T) {
		r.t = t
		logMark()
		b := r.newBrowser()
		s := b.toCallback(studentEmail, idpPassword, "")
		cookie := b.appCookie("courses_sso")
		if p := b.get(s.callback.String()); p.status != http.StatusSeeOther {
			t.Fatalf("first use of the code: %d\n%s", p.status, p.body)
		}
		// An attacker who captured the whole request (cookie and URL)
		// replays it in a fresh browser: state, nonce and verifier are right,
		// only the code was used.
		a := r.newBrowser()
		a.setAppCookie("courses_sso", cookie, "/login/sso")
		refused(t, a, a.get(s.callback.String()), http.StatusBadGateway, "did not complete", "token endpoint refused the code: invalid_grant")
	})

	t.Run("code injected into another browser's sign-in", func(t *testing.T) {
		r.t = t
		logMark()
		victim := r.newBrowser()
		s := victim.toCallback(studentEmail, idpPassword, "")
		// The attacker starts a sign-in of their own, then brings the
		// victim's code: the app exchanges it with the attacker's PKCE
		// verifier, which does not match the victim's challenge.
		a := r.newBrowser()
		start := a.get(r.appURL + "/login/sso")
		attackerState := start.location.Query().Get("state")
		cb := *s.callback
		q := cb.Query()
		q.Set("state", attackerState)
		cb.RawQuery = q.Encode()
		refused(t, a, a.get(cb.String()), http.StatusBadGateway, "did not complete", "token endpoint refused the code: invalid_grant")
	})

	t.Run("missing PKCE verifier", func(t *testing.T) {
		r.t = t
		logMark()
		// The provider refuses an authorization request without a challenge…
		b := r.newBrowser()
		v := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {r.appURL + "/login/sso/callback"},
			"scope": {"openid"}, "state": {"s-0123456789"}, "nonce": {"n"}}
		p := b.get(r.issuer + "/authorize?" + v.Encode())
		if p.location == nil || p.location.Query().Get("error") != "invalid_request" || p.location.Query().Get("code") != "" {
			t.Errorf("authorize without PKCE: %d %v", p.status, p.location)
		}
		// …and a code from a real sign-in, taken by someone who even holds
		// the client secret, is useless without the verifier.
		s := b.toCallback(studentEmail, idpPassword, "")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {s.callback.Query().Get("code")}, "redirect_uri": {r.appURL + "/login/sso/callback"}}
		req, _ := http.NewRequest("POST", r.issuer+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, clientSecret)
		tr := b.do(req)
		if tr.status != http.StatusBadRequest || !strings.Contains(tr.body, "code_verifier required") || strings.Contains(tr.body, "id_token") {
			t.Errorf("token request without code_verifier: %d %s", tr.status, tr.body)
		}
		// The browser's own callback then fails too: the code is spent.
		refused(t, b, b.get(s.callback.String()), http.StatusBadGateway, "did not complete", "")
	})

	t.Run("error from the provider", func(t *testing.T) {
		r.t = t
		logMark()
		b := r.newBrowser()
		start := b.get(r.appURL + "/login/sso")
		q := url.Values{"error": {"access_denied"}, "error_description": {"<script>alert(1)</script>"}, "state": {start.location.Query().Get("state")}}
		p := b.get(r.appURL + "/login/sso/callback?" + q.Encode())
		refused(t, b, p, http.StatusUnauthorized, "cancelled or refused", "")
		if strings.Contains(p.body, "alert(1)") {
			t.Error("the page echoes the provider's error_description")
		}
	})
	r.t = t
	r.checkNoSecrets()
}

// TestKeyRotation: the provider rotates its signing key while a teacher is
// signed in. The teacher's session goes on; a new sign-in verifies with the
// new key (the app fetches the JWKS again for the unknown kid); the old
// session's logout, whose id_token_hint the old key signed, still ends the
// session at the provider.
func TestKeyRotation(t *testing.T) {
	r := newRegion(t, options{})
	oldKid := r.idp.Status().SigningKey
	teacher := r.newBrowser()
	p, _ := teacher.ssoLogin(teacherEmail, idpPassword, "/courses/1/gradebook")
	if p.status != http.StatusSeeOther {
		t.Fatalf("sign-in before the rotation: %d", p.status)
	}
	newKid, err := r.idp.RotateKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if newKid == oldKid {
		t.Fatal("the rotation kept the key")
	}
	if st := r.idp.Status(); len(st.Keys) != 2 || st.SigningKey != newKid {
		t.Fatalf("provider keys after rotation: %+v", st.Keys)
	}
	// The signed-in session goes on.
	if gb := teacher.get(r.appURL + "/courses/1/gradebook"); gb.status != http.StatusOK {
		t.Errorf("the teacher's session after the rotation: %d", gb.status)
	}
	// A new sign-in verifies with the new key.
	student := r.newBrowser()
	if p, _ := student.ssoLogin(studentEmail, idpPassword, ""); p.status != http.StatusSeeOther {
		t.Fatalf("sign-in after the rotation: %d\n%s", p.status, p.body)
	}
	var kids []string
	for _, l := range r.appLog.lines("ID token verified") {
		kids = append(kids, l["kid"].(string))
	}
	if !slices.Equal(kids, []string{oldKid, newKid}) {
		t.Errorf("keys of the verified ID tokens = %v, want [%s %s]", kids, oldKid, newKid)
	}
	// The pre-rotation session logs out at the provider too.
	home := teacher.get(r.appURL + "/courses")
	out := teacher.post(r.appURL+"/logout", url.Values{"csrf_token": {find(t, csrfRe, home.body)}})
	back := teacher.follow(out, func(u *url.URL) bool { return strings.HasPrefix(u.String(), r.appURL) })
	if back.location == nil || back.location.Query().Get("msg") != "sso-logged-out" {
		t.Errorf("logout with a hint signed by the old key: %d %v\n%s", back.status, back.location, back.body)
	}
	if idp := teacher.get(r.issuer + "/"); !strings.Contains(idp.body, `id="signed-out"`) {
		t.Error("the provider kept the teacher's session")
	}
	// And the teacher's next sign-in carries the new key.
	teacher.ssoLogin(teacherEmail, idpPassword, "")
	if l := r.appLog.lines("ID token verified"); len(l) != 3 || l[2]["kid"] != newKid {
		t.Errorf("the teacher's new sign-in: %v", l)
	}
}

// TestStaffSSOOnly: with --sso-only-staff a teacher's password login is
// refused with a clear message; the teacher signs in with the university
// account; students keep password logins.
func TestStaffSSOOnly(t *testing.T) {
	r := newRegion(t, options{staffSSOOnly: true})
	b := r.newBrowser()
	lp := b.get(r.appURL + "/login")
	if !strings.Contains(lp.body, "Password login is turned off for staff") {
		t.Errorf("the login page does not say so:\n%s", lp.body)
	}
	p := b.post(r.appURL+"/login", url.Values{"csrf_token": {find(t, csrfRe, lp.body)}, "email": {teacherEmail}, "password": {seedPassword}})
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "Staff sign in with their university account: password login is turned off for staff.") {
		t.Fatalf("teacher password login: %d\n%s", p.status, p.body)
	}
	if id, _ := b.me(); id != 0 {
		t.Fatal("the teacher got a session from a password")
	}
	if p, _ := b.ssoLogin(teacherEmail, idpPassword, ""); p.status != http.StatusSeeOther {
		t.Fatalf("teacher single sign-on: %d\n%s", p.status, p.body)
	}
	if _, role := b.me(); role != "teacher" {
		t.Errorf("role = %q", role)
	}
	s := r.newBrowser()
	lp = s.get(r.appURL + "/login")
	p = s.post(r.appURL+"/login", url.Values{"csrf_token": {find(t, csrfRe, lp.body)}, "email": {"student2@example.edu"}, "password": {seedPassword}})
	if p.status != http.StatusSeeOther {
		t.Errorf("student password login: %d\n%s", p.status, p.body)
	}
}
