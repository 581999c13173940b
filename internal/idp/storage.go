package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/haven-platform/haven/internal/clock"
)

// storage is the provider's state behind zitadel/oidc's op.Storage: the
// directory and client registry (fixed at construction), the signing keys
// (an immutable keyring swapped on rotation), and the protocol state (auth
// requests, codes, tokens, browser sessions) in memory under one lock.
//
// Protocol state is not persisted: a restart ends every sign-in at the
// provider and every refresh token, while ID tokens already issued keep
// verifying (the keys are in the KeyStore). Codes, refresh tokens and session
// cookies are kept as SHA-256 hashes only.
type storage struct {
	cfg     Config
	clock   clock.Clock
	log     *slog.Logger
	issuer  string
	users   map[string]*User // by username
	subject map[string]*User // by subject
	clients map[string]*clientEntry
	keys    atomic.Pointer[keyring]

	mu            sync.Mutex
	authRequests  map[string]*authRequest
	codes         map[string]*codeEntry      // by hash of the code
	accessTokens  map[string]*accessToken    // by id
	refreshTokens map[string]*refreshToken   // by hash of the token
	sessions      map[string]*browserSession // by hash of the cookie
	failures      map[string]*failedLogins   // by username
	logouts       map[string]*pendingLogout  // by id
}

// clientEntry is a registered client with its parsed secret hash.
type clientEntry struct {
	Client
	secret secretHash
	p      *storage
}

func newStorage(cfg Config, log *slog.Logger) (*storage, error) {
	s := &storage{
		cfg:           cfg,
		clock:         cfg.Clock,
		log:           log,
		issuer:        issuerString(cfg.Issuer),
		users:         map[string]*User{},
		subject:       map[string]*User{},
		clients:       map[string]*clientEntry{},
		authRequests:  map[string]*authRequest{},
		codes:         map[string]*codeEntry{},
		accessTokens:  map[string]*accessToken{},
		refreshTokens: map[string]*refreshToken{},
		sessions:      map[string]*browserSession{},
		failures:      map[string]*failedLogins{},
		logouts:       map[string]*pendingLogout{},
	}
	for i := range cfg.Users {
		u := &cfg.Users[i]
		s.users[u.Username] = u
		s.subject[u.Subject] = u
	}
	for _, c := range cfg.Clients {
		h, err := parseHash(c.SecretHash)
		if err != nil {
			return nil, fmt.Errorf("client %s: %w", c.ID, err)
		}
		s.clients[c.ID] = &clientEntry{Client: c, secret: h, p: s}
	}
	return s, nil
}

var (
	_ op.Storage                        = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest      = (*storage)(nil)
	_ op.CanTerminateSessionFromRequest = (*storage)(nil)
)

// randomID returns 32 random bytes, base64url: an unguessable handle.
func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashOf is the key under which a bearer value (code, refresh token, cookie)
// is kept, so the state never holds the value itself.
func hashOf(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

// ---- auth requests ----

// authRequest is one authorization request. It is never modified once
// stored: completing the login stores a changed copy, so a request the op
// package holds is a consistent snapshot.
type authRequest struct {
	id           string
	clientID     string
	redirectURI  string
	state        string
	nonce        string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	prompt       []string
	maxAge       *uint
	hintSubject  string
	loginHint    string
	challenge    *oidc.CodeChallenge
	created      time.Time

	// Set once the user has signed in.
	done      bool
	subject   string
	authTime  time.Time
	amr       []string
	sessionID string
}

var _ op.AuthRequest = (*authRequest)(nil)

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return a.amr }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// errPKCERequired refuses an authorization request without an S256 PKCE
// challenge. The op package sends it to the client's redirect_uri.
var errPKCERequired = oidc.ErrInvalidRequest().WithDescription(
	"PKCE is required: send code_challenge with code_challenge_method=S256 (RFC 7636)")

// CreateAuthRequest stores a validated authorization request. PKCE with S256
// is required of every client (OAuth 2.0 Security BCP, RFC 9700 §2.1.1).
func (s *storage) CreateAuthRequest(ctx context.Context, r *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if r.CodeChallenge == "" || r.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, errPKCERequired
	}
	a := &authRequest{
		id:           randomID(),
		clientID:     r.ClientID,
		redirectURI:  r.RedirectURI,
		state:        r.State,
		nonce:        r.Nonce,
		scopes:       slices.Clone([]string(r.Scopes)),
		responseType: r.ResponseType,
		responseMode: r.ResponseMode,
		prompt:       slices.Clone([]string(r.Prompt)),
		maxAge:       r.MaxAge,
		hintSubject:  userID,
		loginHint:    r.LoginHint,
		challenge:    &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod},
		created:      s.clock.Now(),
	}
	s.mu.Lock()
	s.authRequests[a.id] = a
	s.mu.Unlock()
	return a, nil
}

var errUnknownRequest = errors.New("sign-in request not found or expired")

// AuthRequestByID returns a pending request younger than LoginLifetime.
func (s *storage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authRequestLocked(id)
}

func (s *storage) authRequestLocked(id string) (*authRequest, error) {
	a, ok := s.authRequests[id]
	if !ok || !s.clock.Now().Before(a.created.Add(s.cfg.LoginLifetime)) {
		return nil, errUnknownRequest
	}
	return a, nil
}

// completeLogin marks a request signed in by subject through the browser
// session sessionID.
func (s *storage) completeLogin(id, subject, sessionID string, authTime time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(id)
	if err != nil {
		return err
	}
	c := *a
	c.done, c.subject, c.sessionID, c.authTime, c.amr = true, subject, sessionID, authTime.UTC(), []string{"pwd"}
	s.authRequests[id] = &c
	return nil
}

// DeleteAuthRequest forgets a request once its tokens are issued. Its code
// entry stays, marked used, so a replay is recognised.
func (s *storage) DeleteAuthRequest(ctx context.Context, id string) error {
	s.mu.Lock()
	delete(s.authRequests, id)
	s.mu.Unlock()
	return nil
}

// ---- authorization codes ----

// codeEntry is an issued authorization code.
type codeEntry struct {
	authReqID string
	clientID  string
	subject   string
	issued    time.Time
	used      bool
}

// SaveAuthCode records the code issued for a signed-in request.
func (s *storage) SaveAuthCode(ctx context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok || !a.done {
		return errUnknownRequest
	}
	s.codes[hashOf(code)] = &codeEntry{authReqID: id, clientID: a.clientID, subject: a.subject, issued: s.clock.Now()}
	return nil
}

// errCodeReplayed is the cause when a used code comes back.
var errCodeReplayed = errors.New("authorization code was already used; the tokens issued for it are revoked")

// AuthRequestByCode redeems a code: the first call takes it, atomically, and
// every later call fails, whether the first exchange succeeded or not (a
// wrong PKCE verifier also spends the code). A code that comes back is a sign
// it leaked, so the tokens issued for it are revoked (RFC 6749 §4.1.2).
func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.codes[hashOf(code)]
	if !ok {
		return nil, errors.New("authorization code unknown")
	}
	if e.used {
		n := s.revokeLocked(func(t tokenRef) bool { return t.authReqID == e.authReqID })
		s.log.Warn("authorization code replayed: tokens issued for it revoked", "client_id", e.clientID, "subject", e.subject, "revoked", n)
		return nil, errCodeReplayed
	}
	e.used = true
	if !s.clock.Now().Before(e.issued.Add(s.cfg.CodeLifetime)) {
		return nil, errors.New("authorization code expired")
	}
	a, ok := s.authRequests[e.authReqID]
	if !ok || !a.done {
		return nil, errUnknownRequest
	}
	return a, nil
}

// ---- tokens ----

// accessToken is an issued (opaque, bearer) access token.
type accessToken struct {
	id        string
	subject   string
	clientID  string
	audience  []string
	scopes    []string
	expires   time.Time
	family    string // refresh token family, if any
	authReqID string // the authorization request it descends from
	sessionID string
}

// refreshToken is an issued refresh token. Each use rotates it: the used
// token is kept, marked, so its reuse revokes the whole family (RFC 9700
// §4.14.2).
type refreshToken struct {
	id        string // hash of the token
	family    string
	subject   string
	clientID  string
	audience  []string
	scopes    []string
	authTime  time.Time
	amr       []string
	expires   time.Time
	used      bool
	authReqID string
	sessionID string
}

// refreshTokenRequest is op.RefreshTokenRequest for a stored refresh token.
type refreshTokenRequest struct {
	rt     refreshToken
	scopes []string
}

func (r *refreshTokenRequest) GetAMR() []string                 { return r.rt.amr }
func (r *refreshTokenRequest) GetAudience() []string            { return r.rt.audience }
func (r *refreshTokenRequest) GetAuthTime() time.Time           { return r.rt.authTime }
func (r *refreshTokenRequest) GetClientID() string              { return r.rt.clientID }
func (r *refreshTokenRequest) GetScopes() []string              { return r.scopes }
func (r *refreshTokenRequest) GetSubject() string               { return r.rt.subject }
func (r *refreshTokenRequest) SetCurrentScopes(scopes []string) { r.scopes = scopes }

// origin is where a token request comes from.
type origin struct {
	clientID, authReqID, sessionID, family string
	authTime                               time.Time
	amr                                    []string
}

func originOf(req op.TokenRequest) (origin, error) {
	switch r := req.(type) {
	case *authRequest:
		return origin{clientID: r.clientID, authReqID: r.id, sessionID: r.sessionID, authTime: r.authTime, amr: r.amr}, nil
	case *refreshTokenRequest:
		return origin{clientID: r.rt.clientID, authReqID: r.rt.authReqID, sessionID: r.rt.sessionID, family: r.rt.family,
			authTime: r.rt.authTime, amr: r.rt.amr}, nil
	}
	return origin{}, oidc.ErrUnsupportedGrantType().WithDescription("only the authorization code and refresh token grants are supported")
}

func (s *storage) newAccessTokenLocked(o origin, req op.TokenRequest, now time.Time) *accessToken {
	t := &accessToken{id: randomID(), subject: req.GetSubject(), clientID: o.clientID, audience: slices.Clone(req.GetAudience()),
		scopes: slices.Clone(req.GetScopes()), expires: now.Add(s.cfg.AccessTokenLifetime), family: o.family,
		authReqID: o.authReqID, sessionID: o.sessionID}
	s.accessTokens[t.id] = t
	return t
}

// CreateAccessToken issues an access token without a refresh token.
func (s *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	o, err := originOf(req)
	if err != nil {
		return "", time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.newAccessTokenLocked(o, req, s.clock.Now())
	return t.id, t.expires, nil
}

// CreateAccessAndRefreshTokens issues an access token and a refresh token:
// a new family for a code exchange (scope offline_access), the next token
// of the family for a refresh (currentRefreshToken is then spent).
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	o, err := originOf(req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if currentRefreshToken != "" {
		cur, ok := s.refreshTokens[hashOf(currentRefreshToken)]
		if !ok {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token unknown")
		}
		if cur.used {
			// Two requests raced with one token: one of them is not the client.
			s.revokeFamilyLocked(cur.family)
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token already used")
		}
		cur.used = true
		o.family = cur.family
	} else {
		o.family = randomID()
	}
	at := s.newAccessTokenLocked(o, req, now)
	raw := randomID()
	rt := &refreshToken{id: hashOf(raw), family: o.family, subject: req.GetSubject(), clientID: o.clientID,
		audience: slices.Clone(req.GetAudience()), scopes: slices.Clone(req.GetScopes()), authTime: o.authTime, amr: o.amr,
		expires: now.Add(s.cfg.RefreshTokenLifetime), authReqID: o.authReqID, sessionID: o.sessionID}
	s.refreshTokens[rt.id] = rt
	return at.id, raw, at.expires, nil
}

// TokenRequestByRefreshToken looks up a refresh token for the refresh
// grant. A token that was already used revokes its family: the legitimate
// client has the newer one, so whoever sent this one stole it.
func (s *storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[hashOf(token)]
	switch {
	case !ok:
		return nil, errors.New("refresh token unknown")
	case rt.used:
		n := s.revokeFamilyLocked(rt.family)
		s.log.Warn("refresh token reused: its family revoked", "client_id", rt.clientID, "subject", rt.subject, "revoked", n)
		return nil, errors.New("refresh token already used")
	case !s.clock.Now().Before(rt.expires):
		return nil, errors.New("refresh token expired")
	}
	if _, ok := s.subject[rt.subject]; !ok {
		return nil, errors.New("user no longer in the directory")
	}
	return &refreshTokenRequest{rt: *rt, scopes: slices.Clone(rt.scopes)}, nil
}

// revokeFamilyLocked removes a refresh token family and its access tokens.
func (s *storage) revokeFamilyLocked(family string) int {
	return s.revokeLocked(func(t tokenRef) bool { return t.family == family })
}

// tokenRef is what a revocation matches a token on.
type tokenRef struct{ authReqID, family, subject, clientID, sessionID string }

// revokeLocked removes every access and refresh token match selects, and
// returns how many.
func (s *storage) revokeLocked(match func(tokenRef) bool) int {
	n := 0
	for id, t := range s.accessTokens {
		if match(tokenRef{t.authReqID, t.family, t.subject, t.clientID, t.sessionID}) {
			delete(s.accessTokens, id)
			n++
		}
	}
	for id, t := range s.refreshTokens {
		if match(tokenRef{t.authReqID, t.family, t.subject, t.clientID, t.sessionID}) {
			delete(s.refreshTokens, id)
			n++
		}
	}
	return n
}

// TerminateSession revokes a user's tokens for a client. end_session uses
// TerminateSessionFromRequest instead; this is the op.Storage fallback.
func (s *storage) TerminateSession(ctx context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeLocked(func(t tokenRef) bool { return t.subject == userID && t.clientID == clientID })
	return nil
}

// GetRefreshTokenInfo returns the subject and id of a refresh token.
func (s *storage) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[hashOf(token)]
	if !ok || rt.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.id, nil
}

// RevokeToken revokes an access token (by id, userID set) or a refresh
// token (by value, userID empty) and its family (RFC 7009 §2.1).
func (s *storage) RevokeToken(ctx context.Context, tokenOrID, userID, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.accessTokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.accessTokens, tokenOrID)
		return nil
	}
	rt, ok := s.refreshTokens[hashOf(tokenOrID)]
	if !ok {
		rt, ok = s.refreshTokens[tokenOrID] // GetRefreshTokenInfo's id
	}
	if !ok {
		return nil // unknown tokens are already invalid (RFC 7009 §2.2)
	}
	if rt.clientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
	}
	s.revokeFamilyLocked(rt.family)
	return nil
}

// ---- keys ----

// SigningKey returns the key that signs now.
func (s *storage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	r := s.keys.Load()
	if r == nil {
		return nil, errors.New("no signing key: the provider has not started")
	}
	return opSigningKey{r.signing}, nil
}

// SignatureAlgorithms returns the one algorithm, RS256.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{keyAlgorithm}, nil
}

// KeySet returns the published keys: the signing key and every retired key
// still within its retention.
func (s *storage) KeySet(ctx context.Context) ([]op.Key, error) {
	r := s.keys.Load()
	if r == nil {
		return nil, errors.New("no keys: the provider has not started")
	}
	out := make([]op.Key, len(r.keys))
	for i, k := range r.keys {
		out[i] = opPublicKey{k}
	}
	return out, nil
}

// ---- clients ----

// GetClientByClientID returns a registered client.
func (s *storage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	c, ok := s.clients[clientID]
	if !ok {
		return nil, errors.New("client not registered")
	}
	return c, nil
}

// AuthorizeClientIDSecret checks a client's secret against its hash. An
// unknown client costs a hash comparison too.
func (s *storage) AuthorizeClientIDSecret(ctx context.Context, clientID, secret string) error {
	c, ok := s.clients[clientID]
	if !ok {
		dummyHash.matches(secret)
		return errors.New("client not registered")
	}
	if !c.secret.matches(secret) {
		s.log.Warn("client authentication failed", "client_id", clientID)
		return errors.New("wrong client secret")
	}
	return nil
}

var _ op.Client = (*clientEntry)(nil)

func (c *clientEntry) GetID() string                       { return c.ID }
func (c *clientEntry) RedirectURIs() []string              { return c.Client.RedirectURIs }
func (c *clientEntry) PostLogoutRedirectURIs() []string    { return c.Client.PostLogoutRedirectURIs }
func (c *clientEntry) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *clientEntry) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *clientEntry) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *clientEntry) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *clientEntry) IDTokenLifetime() time.Duration       { return c.p.cfg.IDTokenLifetime }
func (c *clientEntry) DevMode() bool                        { return false }
func (c *clientEntry) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *clientEntry) ClockSkew() time.Duration             { return 0 }
func (c *clientEntry) IsScopeAllowed(scope string) bool     { return scope == scopeGroups }
func (c *clientEntry) LoginURL(id string) string {
	return c.p.issuer + loginPath + "?" + url.Values{"authRequestID": {id}}.Encode()
}
func (c *clientEntry) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *clientEntry) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *clientEntry) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// ---- claims ----

// scopeGroups is the scope a client may ask for; groups are sent without it
// too (see setUserinfo).
const scopeGroups = "groups"

// SetUserinfoFromScopes is deprecated in op.Storage; SetUserinfoFromRequest
// fills the ID token.
func (s *storage) SetUserinfoFromScopes(ctx context.Context, ui *oidc.UserInfo, userID, clientID string, scopes []string) error {
	return nil
}

// SetUserinfoFromRequest fills the claims of an ID token.
func (s *storage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.setUserinfo(ui, req.GetSubject(), scopes)
}

// SetUserinfoFromToken fills the userinfo response for a live access token.
func (s *storage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	s.mu.Lock()
	t, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || t.subject != subject || !s.clock.Now().Before(t.expires) {
		return errors.New("access token invalid or expired")
	}
	return s.setUserinfo(ui, t.subject, t.scopes)
}

// SetIntrospectionFromToken answers token introspection for a client in the
// token's audience.
func (s *storage) SetIntrospectionFromToken(ctx context.Context, in *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	t, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || t.subject != subject || !s.clock.Now().Before(t.expires) || !slices.Contains(t.audience, clientID) {
		return errors.New("access token invalid, expired or not for this client")
	}
	ui := new(oidc.UserInfo)
	if err := s.setUserinfo(ui, t.subject, t.scopes); err != nil {
		return err
	}
	in.SetUserInfo(ui)
	in.Scope = t.scopes
	in.ClientID = t.clientID
	in.Expiration = oidc.FromTime(t.expires)
	return nil
}

// setUserinfo sets the claims the scopes allow: sub always; name and
// preferred_username with profile; email and email_verified with email.
// groups is sent whenever openid is asked for, as Entra ID does with group
// claims configured and Okta with a groups claim set to "always"; so a client
// that does not know the custom scope still receives them.
func (s *storage) setUserinfo(ui *oidc.UserInfo, subject string, scopes []string) error {
	u, ok := s.subject[subject]
	if !ok {
		return errors.New("user no longer in the directory")
	}
	ui.Subject = u.Subject
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeProfile:
			ui.Name = u.Name
			ui.PreferredUsername = u.Username
		case oidc.ScopeEmail:
			ui.Email = u.Email
			ui.EmailVerified = true
		case oidc.ScopeOpenID, scopeGroups:
			ui.AppendClaims("groups", slices.Clone(u.Groups))
		}
	}
	return nil
}

// GetPrivateClaimsFromScopes adds nothing: access tokens are opaque.
func (s *storage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID: the JWT profile grant is not offered.
func (s *storage) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

// ValidateJWTProfileScopes: the JWT profile grant is not offered.
func (s *storage) ValidateJWTProfileScopes(ctx context.Context, userID string, scopes []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

// Health reports the storage ready once a key is loaded.
func (s *storage) Health(ctx context.Context) error {
	if s.keys.Load() == nil {
		return errors.New("no signing key loaded")
	}
	return nil
}

// ---- sweeping ----

// sweep drops what has expired: unfinished logins, codes (used codes are kept
// while their tokens may live, to recognise a replay), tokens, sessions,
// failed-login windows and pending logouts.
func (s *storage) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, a := range s.authRequests {
		if !now.Before(a.created.Add(s.cfg.LoginLifetime + s.cfg.CodeLifetime)) {
			delete(s.authRequests, id)
		}
	}
	keepUsed := max(s.cfg.AccessTokenLifetime, s.cfg.RefreshTokenLifetime)
	for h, c := range s.codes {
		ttl := s.cfg.CodeLifetime
		if c.used {
			ttl = keepUsed
		}
		if !now.Before(c.issued.Add(ttl)) {
			delete(s.codes, h)
		}
	}
	for id, t := range s.accessTokens {
		if !now.Before(t.expires) {
			delete(s.accessTokens, id)
		}
	}
	for id, t := range s.refreshTokens {
		if !now.Before(t.expires) {
			delete(s.refreshTokens, id)
		}
	}
	for id, bs := range s.sessions {
		if !now.Before(bs.expires) {
			delete(s.sessions, id)
		}
	}
	for name, f := range s.failures {
		if !now.Before(f.windowStart.Add(s.cfg.FailedLoginWindow)) {
			delete(s.failures, name)
		}
	}
	for id, l := range s.logouts {
		if !now.Before(l.expires) {
			delete(s.logouts, id)
		}
	}
}

// counts returns how many of each kind of state are held (for tests and
// the status snapshot).
func (s *storage) counts() (sessions, accessTokens, refreshTokens int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions), len(s.accessTokens), len(s.refreshTokens)
}
