package main

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Single sign-on: "Sign in with your university account" through any
// standards-compliant OpenID Connect provider (Okta, Entra ID, or the
// region's own), with the authorization code flow, PKCE (S256), state and
// nonce. The app reads only what the standards define: the discovery
// document, the JWKS, the token endpoint, userinfo and end_session.
const (
	ssoStartPath    = "/login/sso"
	ssoCallbackPath = "/login/sso/callback"
	ssoCookie       = "courses_sso"
	// ssoLoginTTL bounds how long a sign-in may take at the provider.
	ssoLoginTTL = 10 * time.Minute
	// ssoHTTPTimeout bounds each call to the provider.
	ssoHTTPTimeout = 10 * time.Second
	// maxIDTokenBytes bounds the ID token kept with a session for logout.
	maxIDTokenBytes = 32 << 10
	// postLogoutMsg is the login page's notice after logging out of both.
	postLogoutMsg = "sso-logged-out"
)

// Defaults of SSOConfig.
var (
	DefaultSSOScopes     = []string{oidc.ScopeOpenID, "email", "profile"}
	DefaultTeacherGroups = []string{"staff"}
	DefaultStudentGroups = []string{"students"}
)

// SSOConfig configures single sign-on. It holds no secret: the client
// secret is read from Secrets Manager (ClientSecretID).
type SSOConfig struct {
	// Issuer is the provider's issuer URL, e.g.
	// https://university.okta.com/oauth2/default. Default "": single sign-on
	// off. Env COURSES_OIDC_ISSUER.
	Issuer string
	// ClientID is the app's client_id at the provider. Required with Issuer.
	// Env COURSES_OIDC_CLIENT_ID.
	ClientID string
	// ClientSecretID is the Secrets Manager id or ARN of the client secret.
	// Required with Issuer. Env COURSES_OIDC_CLIENT_SECRET_ID.
	ClientSecretID string
	// PublicURL is the site's address as browsers reach it, e.g.
	// https://courses.example.edu; the redirect URI is PublicURL +
	// /login/sso/callback and the post-logout URI PublicURL +
	// /login?msg=sso-logged-out. Required with Issuer. Env COURSES_PUBLIC_URL.
	PublicURL string
	// Scopes requested. Default openid, email, profile (Okta needs groups
	// added). Env COURSES_OIDC_SCOPES.
	Scopes []string
	// GroupsClaim is the claim holding the user's groups. Default "groups".
	GroupsClaim string
	// TeacherGroups: membership of any makes the user a teacher. Default
	// ["staff"].
	TeacherGroups []string
	// StudentGroups: membership of any (and of no teacher group) makes the
	// user a student. Default ["students"].
	StudentGroups []string
	// TrustEmail treats the email claim as verified without
	// email_verified=true, for a provider that never sends the claim (Entra
	// ID) and whose addresses the university controls. An existing account
	// is linked by email only when the email is verified. Default false.
	// Env COURSES_OIDC_TRUST_EMAIL.
	TrustEmail bool
	// StaffSSOOnly refuses teachers' password logins: staff sign in with the
	// university account only. Requires Issuer. Default false. Env
	// COURSES_SSO_ONLY_STAFF.
	StaffSSOOnly bool
}

// Enabled reports whether single sign-on is configured.
func (c *SSOConfig) Enabled() bool { return c.Issuer != "" }

func (c *SSOConfig) setDefaults() {
	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(DefaultSSOScopes)
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if len(c.TeacherGroups) == 0 {
		c.TeacherGroups = slices.Clone(DefaultTeacherGroups)
	}
	if len(c.StudentGroups) == 0 {
		c.StudentGroups = slices.Clone(DefaultStudentGroups)
	}
	c.Issuer = strings.TrimSpace(c.Issuer)
	c.PublicURL = strings.TrimSuffix(strings.TrimSpace(c.PublicURL), "/")
}

// Validate checks the configuration (after defaults), naming the flag.
func (c *SSOConfig) Validate() error {
	c.setDefaults()
	if !c.Enabled() {
		switch {
		case c.StaffSSOOnly:
			return errors.New("--sso-only-staff: needs --oidc-issuer: without single sign-on, staff could not log in at all")
		case c.ClientID != "" || c.ClientSecretID != "":
			return errors.New("--oidc-client-id / --oidc-client-secret-id: set, but --oidc-issuer is not; set the issuer to turn single sign-on on")
		}
		return nil
	}
	if u, err := url.Parse(c.Issuer); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--oidc-issuer: want the provider's https issuer URL, e.g. https://university.okta.com/oauth2/default, got %q", c.Issuer)
	}
	if c.ClientID == "" {
		return errors.New("--oidc-client-id: required with --oidc-issuer (the client id the provider gave the app)")
	}
	if c.ClientSecretID == "" {
		return errors.New("--oidc-client-secret-id: required with --oidc-issuer: the Secrets Manager id or ARN of the client secret (the secret itself is never a flag)")
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") || u.User != nil ||
		(u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
		return fmt.Errorf("--public-url: want the site's https address without a path, e.g. https://courses.example.edu, got %q", c.PublicURL)
	}
	if !slices.Contains(c.Scopes, oidc.ScopeOpenID) {
		return fmt.Errorf("--oidc-scopes: must include openid, got %q", strings.Join(c.Scopes, " "))
	}
	return nil
}

func isLoopbackHost(h string) bool { return h == "localhost" || net.ParseIP(h).IsLoopback() }

// RedirectURL is the redirect URI to register at the provider.
func (c *SSOConfig) RedirectURL() string { return c.PublicURL + ssoCallbackPath }

// PostLogoutURL is the post-logout redirect URI to register at the provider.
func (c *SSOConfig) PostLogoutURL() string { return c.PublicURL + "/login?msg=" + postLogoutMsg }

// secretSource is what the SSO client needs of a secret: the value, and a
// way to drop it when the provider refuses it.
type secretSource interface {
	Secret(ctx context.Context) (string, error)
	Invalidate()
}

// ssoClient talks to the provider. Discovery happens on first use and is
// retried until it succeeds, so the app starts (and password logins work)
// while the provider is down.
type ssoClient struct {
	cfg    SSOConfig
	log    *slog.Logger
	clock  Clock
	hc     *http.Client
	secret secretSource

	mu         sync.Mutex
	prov       *oidc.Provider
	endSession string
	authStyle  oauth2.AuthStyle
}

// newSSOClient builds the client; nothing is fetched yet.
func newSSOClient(cfg SSOConfig, secret secretSource, clock Clock, log *slog.Logger) *ssoClient {
	return &ssoClient{cfg: cfg, secret: secret, clock: clock, log: log.With("component", "sso"),
		hc: &http.Client{Timeout: ssoHTTPTimeout}}
}

// errSSOUnavailable wraps a failure to reach the provider.
var errSSOUnavailable = errors.New("the university sign-in service is unreachable")

// provider returns the discovered provider, discovering it on first use.
func (c *ssoClient) provider(ctx context.Context) (*oidc.Provider, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prov != nil {
		return c.prov, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, c.hc), c.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discover %s: %v", errSSOUnavailable, c.cfg.Issuer, err)
	}
	var meta struct {
		EndSession  string   `json:"end_session_endpoint"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("%w: read %s's metadata: %v", errSSOUnavailable, c.cfg.Issuer, err)
	}
	c.prov, c.endSession = p, meta.EndSession
	c.authStyle = authStyleFor(meta.AuthMethods)
	c.log.Info("discovered the OpenID provider", "issuer", c.cfg.Issuer, "end_session", c.endSession != "")
	return p, nil
}

// authStyleFor picks how to send the client secret: HTTP Basic
// (client_secret_basic, the standard's default) unless the provider lists
// only client_secret_post. It is pure. Auto-detection would try both, and
// a provider may spend the code on the first, failed try.
func authStyleFor(methods []string) oauth2.AuthStyle {
	if len(methods) > 0 && !slices.Contains(methods, "client_secret_basic") && slices.Contains(methods, "client_secret_post") {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// oauth2Config is the authorization code flow's configuration for p.
func (c *ssoClient) oauth2Config(p *oidc.Provider, secret string) *oauth2.Config {
	ep := p.Endpoint()
	c.mu.Lock()
	ep.AuthStyle = c.authStyle
	c.mu.Unlock()
	return &oauth2.Config{ClientID: c.cfg.ClientID, ClientSecret: secret, Endpoint: ep,
		RedirectURL: c.cfg.RedirectURL(), Scopes: c.cfg.Scopes}
}

// ssoState is what the browser carries between the start of a sign-in and
// the callback, in an HttpOnly cookie scoped to /login/sso: the state it must
// return, the nonce the ID token must carry, the PKCE verifier, and where to
// land. Keeping it in the browser keeps every instance stateless and gives
// an anonymous caller nothing to fill the database with.
type ssoState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x,omitempty"`
	Expires  int64  `json:"e"`
}

func encodeSSOState(s ssoState) string {
	b, _ := json.Marshal(s)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeSSOState(v string) (ssoState, bool) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return ssoState{}, false
	}
	var s ssoState
	if json.Unmarshal(b, &s) != nil || s.State == "" || s.Nonce == "" || s.Verifier == "" {
		return ssoState{}, false
	}
	return s, true
}

// ssoIdentity is who the provider says signed in.
type ssoIdentity struct {
	Issuer        string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string
}

// roleFor maps groups to the app's role: teacher if any group is a teacher
// group, else student if any is a student group, else "" (no access). It is
// pure.
func roleFor(groups, teacherGroups, studentGroups []string) string {
	in := func(set []string) bool {
		return slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(set, g) })
	}
	switch {
	case in(teacherGroups):
		return "teacher"
	case in(studentGroups):
		return "student"
	}
	return ""
}

// claimStrings reads a claim that is a list of strings or one string (some
// providers send a single group as a string). It is pure.
func claimStrings(raw json.RawMessage) []string {
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var one string
	if json.Unmarshal(raw, &one) == nil && one != "" {
		return []string{one}
	}
	return nil
}

// claimBool reads a boolean that some providers send as "true". It is pure.
func claimBool(raw json.RawMessage) bool {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && strings.EqualFold(s, "true")
}

// identityFrom merges ID token claims with userinfo claims (which fill
// what the ID token lacks) into an identity. It is pure.
func identityFrom(issuer string, idClaims, userinfo map[string]json.RawMessage, groupsClaim string, trustEmail bool) ssoIdentity {
	get := func(k string) json.RawMessage {
		if v, ok := idClaims[k]; ok {
			return v
		}
		return userinfo[k]
	}
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(get(k), &s)
		return strings.TrimSpace(s)
	}
	id := ssoIdentity{Issuer: issuer, Subject: str("sub"), Email: normEmail(str("email")), Name: str("name"),
		Groups: claimStrings(get(groupsClaim))}
	id.EmailVerified = id.Email != "" && (trustEmail || claimBool(get("email_verified")))
	if id.Name == "" {
		id.Name = str("preferred_username")
	}
	if id.Name == "" {
		id.Name = id.Email
	}
	return id
}

// ssoError is a refused sign-in: what the user reads, and why (logged).
type ssoError struct {
	status int
	msg    string // for the user
	reason string // for the log; never a token or secret
}

func (e *ssoError) Error() string { return e.reason }

func refuse(status int, msg, reason string) *ssoError {
	return &ssoError{status: status, msg: msg, reason: reason}
}

// Messages of refused sign-ins: what happened and what to do.
const (
	msgSSOUnavailable = "The university sign-in service cannot be reached just now, so you could not be signed in. Try again in a minute."
	msgSSOStale       = "This sign-in could not be completed: it was started in another browser or tab, or it took too long. Choose “Sign in with your university account” again."
	msgSSOFailed      = "The university sign-in did not complete, so you are not signed in. Choose “Sign in with your university account” to try again."
	msgSSOInvalid     = "The answer from the university sign-in service could not be verified, so you are not signed in. Try again; if it keeps happening, contact the IT service desk."
	msgSSONoGroup     = "Your university account has no access to Courses: it is in neither the staff nor the students group. Contact the IT service desk if you should have access."
	msgSSONoEmail     = "Your university account did not share a verified email address, so it could not be matched to a Courses account. Contact the IT service desk."
	msgSSOStaffOnly   = "Staff sign in with their university account: password login is turned off for staff. Choose “Sign in with your university account”."
)

// ssoErrorMessages are the messages for the provider's error codes (RFC
// 6749 §4.1.2.1, OpenID Connect Core §3.1.2.6). The page never shows text
// from the URL.
var ssoErrorMessages = map[string]string{
	"access_denied":           "The university sign-in was cancelled or refused, so you are not signed in.",
	"login_required":          "You are not signed in to your university account. Choose “Sign in with your university account” to sign in.",
	"temporarily_unavailable": msgSSOUnavailable,
	"server_error":            msgSSOUnavailable,
}

// complete finishes a sign-in at the callback: the state must match the
// browser's cookie, the code is exchanged with the PKCE verifier, and the ID
// token must verify (signature by the provider's JWKS, issuer, audience,
// expiry) and carry the nonce. It returns the identity and the raw ID token.
func (c *ssoClient) complete(ctx context.Context, st ssoState, code string) (ssoIdentity, string, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return ssoIdentity{}, "", refuse(http.StatusServiceUnavailable, msgSSOUnavailable, err.Error())
	}
	secret, err := c.secret.Secret(ctx)
	if err != nil {
		return ssoIdentity{}, "", refuse(http.StatusServiceUnavailable, msgSSOUnavailable, "read the client secret: "+err.Error())
	}
	hctx := oidc.ClientContext(ctx, c.hc)
	tok, err := c.oauth2Config(p, secret).Exchange(hctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			if re.ErrorCode == "invalid_client" {
				// The secret may have been rotated: the next sign-in refetches it.
				c.secret.Invalidate()
			}
			return ssoIdentity{}, "", refuse(http.StatusBadGateway, msgSSOFailed, "token endpoint refused the code: "+re.ErrorCode)
		}
		return ssoIdentity{}, "", refuse(http.StatusServiceUnavailable, msgSSOUnavailable, "token endpoint: "+err.Error())
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return ssoIdentity{}, "", refuse(http.StatusBadGateway, msgSSOInvalid, "token response has no id_token")
	}
	idt, err := p.VerifierContext(hctx, &oidc.Config{ClientID: c.cfg.ClientID, Now: c.clock.Now}).Verify(hctx, raw)
	if err != nil {
		return ssoIdentity{}, "", refuse(http.StatusUnauthorized, msgSSOInvalid, "ID token refused: "+err.Error())
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return ssoIdentity{}, "", refuse(http.StatusUnauthorized, msgSSOInvalid, "ID token refused: nonce does not match the one this browser sent")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return ssoIdentity{}, "", refuse(http.StatusUnauthorized, msgSSOInvalid, "ID token refused: at_hash does not match the access token")
		}
	}
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return ssoIdentity{}, "", refuse(http.StatusBadGateway, msgSSOInvalid, "read ID token claims: "+err.Error())
	}
	var ui map[string]json.RawMessage
	_, hasEmail := claims["email"]
	_, hasGroups := claims[c.cfg.GroupsClaim]
	if (!hasEmail || !hasGroups) && p.UserInfoEndpoint() != "" {
		info, err := p.UserInfo(hctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return ssoIdentity{}, "", refuse(http.StatusBadGateway, msgSSOFailed, "userinfo: "+err.Error())
		}
		if info.Subject != idt.Subject {
			return ssoIdentity{}, "", refuse(http.StatusUnauthorized, msgSSOInvalid, "userinfo is about another subject than the ID token")
		}
		if err := info.Claims(&ui); err != nil {
			return ssoIdentity{}, "", refuse(http.StatusBadGateway, msgSSOFailed, "read userinfo claims: "+err.Error())
		}
	}
	id := identityFrom(c.cfg.Issuer, claims, ui, c.cfg.GroupsClaim, c.cfg.TrustEmail)
	if id.Subject == "" {
		return ssoIdentity{}, "", refuse(http.StatusBadGateway, msgSSOInvalid, "ID token has no sub")
	}
	c.log.Info("ID token verified", "issuer", idt.Issuer, "subject", idt.Subject, "kid", jwtKeyID(raw), "groups", len(id.Groups))
	if len(raw) > maxIDTokenBytes {
		raw = "" // too big to keep; logout then asks at the provider
	}
	return id, raw, nil
}

// jwtKeyID returns the "kid" of a JWT's header, for the log ("" if none).
func jwtKeyID(jwt string) string {
	h, _, _ := strings.Cut(jwt, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return ""
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(b, &hdr)
	return hdr.Kid
}

// endSessionURL is where to send the browser to end its session at the
// provider too (RP-Initiated Logout): the end_session_endpoint with
// id_token_hint, post_logout_redirect_uri and client_id. ok is false when the
// provider offers no end_session_endpoint or cannot be reached.
func (c *ssoClient) endSessionURL(ctx context.Context, idToken string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := c.provider(ctx); err != nil {
		c.log.Warn("logout: cannot reach the provider; ending the app session only", "err", err)
		return "", false
	}
	c.mu.Lock()
	ep := c.endSession
	c.mu.Unlock()
	u, err := url.Parse(ep)
	if ep == "" || err != nil {
		return "", false
	}
	q := u.Query()
	q.Set("id_token_hint", idToken)
	q.Set("post_logout_redirect_uri", c.cfg.PostLogoutURL())
	q.Set("client_id", c.cfg.ClientID)
	u.RawQuery = q.Encode()
	return u.String(), true
}

// ---- handlers ----

// ssoStart begins a sign-in: a fresh state, nonce and PKCE verifier in the
// browser's cookie, then off to the provider.
func (s *Server) ssoStart(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	p, err := s.sso.provider(r.Context())
	if err != nil {
		s.log.Warn("single sign-on unavailable", "err", err, "request_id", requestID(r))
		w.Header().Set("Retry-After", "30")
		s.renderLoginError(w, r, http.StatusServiceUnavailable, next, msgSSOUnavailable)
		return
	}
	st := ssoState{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Next: next,
		Expires: s.store.clock.Now().Add(ssoLoginTTL).Unix()}
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: encodeSSOState(st), Path: ssoStartPath, MaxAge: int(ssoLoginTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	// The secret is not needed to build the authorization URL.
	target := s.sso.oauth2Config(p, "").AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier))
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// ssoCallback finishes a sign-in: checks, exchange, verification, then the
// user is created or linked and a session starts.
func (s *Server) ssoCallback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	var st ssoState
	var ok bool
	if c, err := r.Cookie(ssoCookie); err == nil {
		st, ok = decodeSSOState(c.Value)
	}
	// The state is single-use: whatever happens next, it is spent.
	clearCookie(w, ssoCookie, ssoStartPath)
	next := ""
	if ok {
		next = safeNext(st.Next)
	}
	if !ok || q.Get("state") == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 ||
		s.store.clock.Now().Unix() > st.Expires {
		s.log.Warn("sign-in refused: state missing, wrong or expired", "has_cookie", ok, "request_id", requestID(r))
		s.renderLoginError(w, r, http.StatusBadRequest, next, msgSSOStale)
		return
	}
	if e := q.Get("error"); e != "" {
		msg, known := ssoErrorMessages[e]
		if !known {
			msg = msgSSOFailed
		}
		s.log.Info("sign-in not completed at the provider", "error", e, "request_id", requestID(r))
		s.renderLoginError(w, r, http.StatusUnauthorized, next, msg)
		return
	}
	id, rawID, err := s.sso.complete(r.Context(), st, q.Get("code"))
	if err != nil {
		se := &ssoError{status: http.StatusBadGateway, msg: msgSSOFailed, reason: err.Error()}
		errors.As(err, &se)
		s.log.Warn("sign-in refused", "reason", se.reason, "request_id", requestID(r))
		s.renderLoginError(w, r, se.status, next, se.msg)
		return
	}
	role := roleFor(id.Groups, s.sso.cfg.TeacherGroups, s.sso.cfg.StudentGroups)
	if role == "" {
		s.log.Warn("sign-in refused: no group maps to a role", "subject", id.Subject, "groups", id.Groups, "request_id", requestID(r))
		s.renderLoginError(w, r, http.StatusForbidden, next, msgSSONoGroup)
		return
	}
	u, err := s.store.LinkSSOUser(r.Context(), id, role)
	if errors.Is(err, errUnverifiedEmail) {
		s.log.Warn("sign-in refused: no verified email to match", "subject", id.Subject, "request_id", requestID(r))
		s.renderLoginError(w, r, http.StatusForbidden, next, msgSSONoEmail)
		return
	}
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	tok, sess, err := s.store.createSession(r.Context(), u.ID, nil, rawID)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	s.setSessionCookie(w, tok, sess)
	s.log.Info("signed in with single sign-on", "user_id", u.ID, "role", u.Role, "issuer", id.Issuer, "request_id", requestID(r))
	http.Redirect(w, r, cmp.Or(next, "/courses"), http.StatusSeeOther)
}

// staffMustUseSSO reports whether a password login for email must be
// refused because the account is a teacher's and staff sign in with single
// sign-on only. It costs one lookup and no password check.
func (s *Server) staffMustUseSSO(ctx context.Context, email string) (bool, error) {
	if s.sso == nil || !s.sso.cfg.StaffSSOOnly {
		return false, nil
	}
	e := normEmail(email)
	if e == "" || len(e) > 254 {
		return false, nil
	}
	u, _, err := s.store.UserByEmail(ctx, e)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return u.IsTeacher(), nil
}
