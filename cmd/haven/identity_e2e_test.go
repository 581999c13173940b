package main

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/idp"
	"github.com/haven-platform/haven/internal/testkit"
)

// ssoClient is a browser for the e2e identity test: a cookie jar, the
// region's CA, no redirect followed by itself (each hop is checked).
type ssoClient struct {
	t      *testing.T
	hc     *http.Client
	app    string // the load balancer's URL
	issuer string
}

var (
	e2eCSRF = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	e2eRID  = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)
)

func newSSOClient(t *testing.T, pool *x509.CertPool, app, issuer string) *ssoClient {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &ssoClient{t: t, app: app, issuer: issuer, hc: &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends one request; it returns the status, the body and the Location.
func (c *ssoClient) do(method, u string, form url.Values) (int, string, *url.URL, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return 0, "", nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	var loc *url.URL
	if l := res.Header.Get("Location"); l != "" {
		loc, _ = req.URL.Parse(l)
	}
	return res.StatusCode, string(b), loc, nil
}

// signIn signs in through the app's "Sign in with your university
// account": app → provider's login page → provider → app callback.
func (c *ssoClient) signIn(username, password string) error {
	status, body, loc, err := c.do("GET", c.app+"/login/sso?next=/courses", nil)
	if err != nil {
		return err
	}
	if status != http.StatusSeeOther || loc == nil || !strings.HasPrefix(loc.String(), c.issuer+"/authorize?") {
		return fmt.Errorf("/login/sso: %d to %v", status, loc)
	}
	posted := false
	for range 12 {
		if loc == nil {
			if posted || status != http.StatusOK || !strings.Contains(body, `name="password"`) {
				return fmt.Errorf("sign-in of %s stopped: %d\n%s", username, status, body)
			}
			csrf, rid := e2eCSRF.FindStringSubmatch(body), e2eRID.FindStringSubmatch(body)
			if csrf == nil || rid == nil {
				return fmt.Errorf("the provider's login page has no form:\n%s", body)
			}
			posted = true
			status, body, loc, err = c.do("POST", c.issuer+"/login", url.Values{"csrf_token": {csrf[1]}, "authRequestID": {rid[1]},
				"username": {username}, "password": {password}})
		} else {
			if strings.HasPrefix(loc.String(), c.app+"/courses") {
				return nil // back at the page asked for, signed in
			}
			status, body, loc, err = c.do("GET", loc.String(), nil)
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("sign-in of %s: too many redirects", username)
}

// me is who the app says the browser is: its user id and role.
func (c *ssoClient) me() (int64, string, error) {
	status, body, _, err := c.do("GET", c.app+"/api/me", nil)
	if err != nil {
		return 0, "", err
	}
	if status != http.StatusOK {
		return 0, "", fmt.Errorf("/api/me: %d", status)
	}
	var m struct {
		User struct {
			ID   int64  `json:"id"`
			Role string `json:"role"`
		} `json:"user"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		return 0, "", err
	}
	return m.User.ID, m.User.Role, nil
}

// TestIdentityTier starts a region with the identity tier and proves it
// end to end: the provider in `haven status`, the app's single sign-on
// through the load balancer (from the instances' namespaces to the issuer
// on the host, in a VPC), staff SSO only, and a signing key rotation under
// load: every signed-in session goes on without one failed request, new
// sign-ins verify with the new key, the old key stays in the JWKS, and a
// session from before the rotation logs out of both.
func TestIdentityTier(t *testing.T) {
	ctx := testCtx(t, 8*time.Minute)
	buf := make([]byte, 12)
	_, _ = rand.Read(buf)
	password := "idp-" + hex.EncodeToString(buf) // per run: no password in the repository
	hash, err := idp.HashSecret(password)
	if err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t)
	r := testkit.NewSpec(t, testkit.Options{Students: 20, Courses: 3, Extra: fmt.Sprintf(`identity:
  enabled: true
  listen: 127.0.0.1:%d
  staff_sso_only: true
  key_retention: 2h
  generated:
    - {username: "teacher{n}@example.edu", count: 1, groups: [staff], password_hash: "%s"}
    - {username: "lecturer{n}@example.edu", count: 8, groups: [staff], password_hash: "%s"}
    - {username: "student{n}@example.edu", count: 20, groups: [students], password_hash: "%s"}
`, port, hash, hash, hash)})
	st := r.Up(ctx)

	// The provider and the client registration in the status.
	id := st.Identity
	if id == nil {
		t.Fatalf("no identity in the status: %+v", st)
	}
	if id.Users != 29 || id.Groups["staff"] != 9 || id.Groups["students"] != 20 || !id.StaffSSOOnly || len(id.Keys) != 1 || !id.Keys[0].Signing {
		t.Errorf("identity status: %+v", id)
	}
	if len(id.Clients) != 1 || id.Clients[0].ID != "test" || id.Clients[0].SecretID != "test/oidc-client" || !strings.Contains(id.Clients[0].SecretARN, ":secret:test/oidc-client-") ||
		id.Clients[0].RedirectURIs[0] != st.Endpoints.HTTPS+"/login/sso/callback" {
		t.Errorf("client registration: %+v", id.Clients)
	}
	if want := fmt.Sprintf(":%d", port); !strings.HasSuffix(id.Issuer, want) || (st.Network.Mode == "vpc") != strings.HasPrefix(id.Issuer, "https://"+st.Network.HostAddr+":") {
		t.Errorf("issuer %s (network %s, host %s)", id.Issuer, st.Network.Mode, st.Network.HostAddr)
	}
	text, _, err := r.Haven(ctx, "status")
	if err != nil || !strings.Contains(text, "identity "+id.Issuer) || !strings.Contains(text, "client test: redirect "+st.Endpoints.HTTPS) {
		t.Errorf("haven status (%v) lacks the identity tier:\n%s", err, text)
	}

	caPEM, err := os.ReadFile(st.Endpoints.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON := func(u string, v any) {
		t.Helper()
		res, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != 200 || json.NewDecoder(res.Body).Decode(v) != nil {
			t.Fatalf("GET %s: %d", u, res.StatusCode)
		}
	}
	getJSON(id.DiscoveryURL, &disc)
	if disc.Issuer != id.Issuer {
		t.Errorf("discovery issuer %q, want %q", disc.Issuer, id.Issuer)
	}
	client := func() *ssoClient { return newSSOClient(t, pool, st.Endpoints.HTTPS, id.Issuer) }

	// SSO only for staff: a teacher's password is refused, with the message.
	b := client()
	_, lp, _, err := b.do("GET", st.Endpoints.HTTPS+"/login", nil)
	if err != nil {
		t.Fatal(err)
	}
	csrf := e2eCSRF.FindStringSubmatch(lp)
	if csrf == nil {
		t.Fatalf("login page:\n%s", lp)
	}
	status, body, _, err := b.do("POST", st.Endpoints.HTTPS+"/login", url.Values{"csrf_token": {csrf[1]}, "email": {"teacher1@example.edu"}, "password": {"exam-week-2026"}})
	if err != nil || status != http.StatusForbidden || !strings.Contains(body, "password login is turned off for staff") {
		t.Errorf("teacher password login: %d %v\n%s", status, err, body)
	}

	// Sessions signed in before the rotation.
	type session struct {
		c    *ssoClient
		user string
		role string
		id   int64
	}
	signIn := func(user, role string) (*session, error) {
		s := &session{c: client(), user: user, role: role}
		if err := s.c.signIn(user, password); err != nil {
			return nil, err
		}
		var got string
		var err error
		if s.id, got, err = s.c.me(); err != nil || got != role {
			return nil, fmt.Errorf("%s signed in as %q (%v), want %s", user, got, err, role)
		}
		return s, nil
	}
	var before []*session
	for _, u := range []struct{ user, role string }{{"teacher1@example.edu", "teacher"}, {"lecturer1@example.edu", "teacher"},
		{"lecturer2@example.edu", "teacher"}, {"lecturer3@example.edu", "teacher"}, {"student1@example.edu", "student"},
		{"student2@example.edu", "student"}, {"student3@example.edu", "student"}, {"student4@example.edu", "student"}} {
		s, err := signIn(u.user, u.role)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, s)
	}

	// Load: every session asks who it is, over and over, until the end.
	var ok, failed atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range before {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if got, _, err := s.c.me(); err != nil || got != s.id {
					failed.Add(1)
					failures.Store(s.user, fmt.Sprintf("user %d, %v", got, err))
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	beforeRotation := ok.Load()
	out, errOut, err := r.Haven(ctx, "identity", "rotate-key", "--json")
	if err != nil {
		t.Fatalf("haven identity rotate-key: %v\n%s", err, errOut)
	}
	var rot api.IdentityRotation
	if err := json.Unmarshal([]byte(out), &rot); err != nil {
		t.Fatal(err)
	}
	oldKid := id.SigningKey
	if rot.Previous != oldKid || rot.Signing == oldKid || rot.Identity.SigningKey != rot.Signing || len(rot.Identity.Keys) != 2 {
		t.Fatalf("rotation: %+v (signing before: %s)", rot, oldKid)
	}
	for _, k := range rot.Identity.Keys {
		if k.ID == oldKid && (k.Signing || k.PublishedUntil.Sub(k.Retired) != 2*time.Hour) {
			t.Errorf("the old key after the rotation: %+v", k)
		}
	}
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	getJSON(disc.JWKSURI, &jwks)
	if len(jwks.Keys) != 2 || !((jwks.Keys[0].Kid == oldKid && jwks.Keys[1].Kid == rot.Signing) || (jwks.Keys[1].Kid == oldKid && jwks.Keys[0].Kid == rot.Signing)) {
		t.Errorf("JWKS after the rotation: %+v, want %s and %s", jwks.Keys, oldKid, rot.Signing)
	}

	// New sign-ins during the load verify with the new key. (One at a
	// time: the instances are small, and the load balancer retries a GET
	// that times out, which would replay an authorization code.)
	var after []*session
	var signErrs []error
	for _, u := range []struct{ user, role string }{{"lecturer4@example.edu", "teacher"}, {"lecturer5@example.edu", "teacher"},
		{"lecturer6@example.edu", "teacher"}, {"student5@example.edu", "student"}, {"student6@example.edu", "student"}} {
		s, err := signIn(u.user, u.role)
		if err != nil {
			signErrs = append(signErrs, err)
		} else {
			after = append(after, s)
		}
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	for _, err := range signErrs {
		t.Errorf("sign-in after the rotation: %v", err)
	}
	if n := failed.Load(); n != 0 {
		failures.Range(func(k, v any) bool { t.Errorf("session %s: %s", k, v); return true })
		t.Errorf("%d of %d requests of signed-in sessions failed across the rotation", n, n+ok.Load())
	}
	if ok.Load() <= beforeRotation || beforeRotation == 0 {
		t.Errorf("the load did not run on both sides of the rotation: %d ok before, %d in all", beforeRotation, ok.Load())
	}
	t.Logf("key rotation under load: %d requests of %d signed-in sessions, %d failed; %d sign-ins after it", ok.Load(), len(before), failed.Load(), len(after))

	// The instances' logs: which key verified each ID token.
	kids := map[string]int{}
	logs, _ := filepath.Glob(filepath.Join(r.StateDir, "logs", "instances", "*"))
	for _, f := range logs {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l map[string]any
			if json.Unmarshal(sc.Bytes(), &l) == nil && l["msg"] == "ID token verified" {
				kid, _ := l["kid"].(string)
				kids[kid]++
			}
		}
		fh.Close()
	}
	if kids[oldKid] != len(before) || kids[rot.Signing] != len(after) || len(kids) != 2 {
		t.Errorf("ID tokens verified per key: %v; want %d with %s (before) and %d with %s (after)", kids, len(before), oldKid, len(after), rot.Signing)
	}

	// A session from before the rotation logs out of the app and the
	// provider (its id_token_hint was signed by the old key).
	s := before[0]
	_, home, _, err := s.c.do("GET", st.Endpoints.HTTPS+"/courses", nil)
	if err != nil {
		t.Fatal(err)
	}
	csrf = e2eCSRF.FindStringSubmatch(home)
	if csrf == nil {
		t.Fatalf("no logout form:\n%s", home)
	}
	status, _, loc, err := s.c.do("POST", st.Endpoints.HTTPS+"/logout", url.Values{"csrf_token": {csrf[1]}})
	for range 6 {
		if err != nil || loc == nil || strings.HasPrefix(loc.String(), st.Endpoints.HTTPS) {
			break
		}
		status, _, loc, err = s.c.do("GET", loc.String(), nil)
	}
	if err != nil || loc == nil || loc.Query().Get("msg") != "sso-logged-out" {
		t.Errorf("logout: %d to %v (%v)", status, loc, err)
	}
	if _, page, _, _ := s.c.do("GET", id.Issuer+"/", nil); !strings.Contains(page, `id="signed-out"`) {
		t.Error("the provider kept the session after the app's logout")
	}
	if _, _, err := s.c.me(); err == nil {
		t.Error("the app kept the session after logout")
	}
}
