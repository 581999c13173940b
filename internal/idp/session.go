package idp

import (
	"context"
	"net/url"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// browserSession is a sign-in at the provider, held by a browser's
// session cookie. While it lasts, clients get codes without the login page.
type browserSession struct {
	subject  string
	authTime time.Time
	expires  time.Time
}

// createSession starts a browser session for subject and returns the cookie
// value and the session's id (the cookie's hash).
func (s *storage) createSession(subject string, now time.Time) (cookie, id string) {
	cookie = randomID()
	id = hashOf(cookie)
	s.mu.Lock()
	s.sessions[id] = &browserSession{subject: subject, authTime: now.UTC(), expires: now.Add(s.cfg.SessionLifetime)}
	s.mu.Unlock()
	return cookie, id
}

// sessionByCookie returns the live session a cookie holds, with its id.
func (s *storage) sessionByCookie(cookie string, now time.Time) (browserSession, string, bool) {
	if cookie == "" {
		return browserSession{}, "", false
	}
	id := hashOf(cookie)
	s.mu.Lock()
	defer s.mu.Unlock()
	bs, ok := s.sessions[id]
	if !ok || !now.Before(bs.expires) {
		return browserSession{}, "", false
	}
	if _, ok := s.subject[bs.subject]; !ok {
		return browserSession{}, "", false
	}
	return *bs, id, true
}

// endBrowserSession ends a session and revokes the tokens issued through it.
func (s *storage) endBrowserSession(id string) (subject string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bs, ok := s.sessions[id]
	if !ok {
		return "", false
	}
	delete(s.sessions, id)
	s.revokeLocked(func(t tokenRef) bool { return t.sessionID == id })
	return bs.subject, true
}

// ---- failed logins ----

// failedLogins counts one account's wrong passwords in the current window.
type failedLogins struct {
	count       int
	windowStart time.Time
}

// maxTrackedAccounts bounds the failed-login table, so guessing at random
// usernames cannot grow it without end; past it, new accounts are not
// tracked until the sweep frees room.
const maxTrackedAccounts = 100_000

// loginAllowed decides whether an account may try a password now, and if
// not, how long until it may. It is pure: an account that has failed max
// times within window is refused until the window that began with its first
// failure ends.
func loginAllowed(f failedLogins, now time.Time, max int, window time.Duration) (bool, time.Duration) {
	end := f.windowStart.Add(window)
	if f.count >= max && now.Before(end) {
		return false, end.Sub(now)
	}
	return true, 0
}

// nextFailures is f after one more failure at now. It is pure.
func nextFailures(f failedLogins, now time.Time, window time.Duration) failedLogins {
	if f.count == 0 || !now.Before(f.windowStart.Add(window)) {
		return failedLogins{count: 1, windowStart: now}
	}
	return failedLogins{count: f.count + 1, windowStart: f.windowStart}
}

func (s *storage) loginAllowed(username string, now time.Time) (bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.failures[username]
	if f == nil {
		return true, 0
	}
	return loginAllowed(*f, now, s.cfg.MaxFailedLogins, s.cfg.FailedLoginWindow)
}

func (s *storage) loginFailed(username string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.failures[username]
	if f == nil {
		if len(s.failures) >= maxTrackedAccounts {
			return
		}
		f = &failedLogins{}
		s.failures[username] = f
	}
	*f = nextFailures(*f, now, s.cfg.FailedLoginWindow)
}

func (s *storage) loginSucceeded(username string) {
	s.mu.Lock()
	delete(s.failures, username)
	s.mu.Unlock()
}

// ---- logout ----

// pendingLogout is an end_session request without a valid id_token_hint,
// waiting for the user to confirm (OpenID Connect RP-Initiated Logout §2:
// the provider asks the user whether to log out).
type pendingLogout struct {
	redirect string // validated post_logout_redirect_uri, or the default
	clientID string
	expires  time.Time
}

// endSessionBox carries the browser's session id into
// TerminateSessionFromRequest and carries back whether to clear the cookie.
type endSessionBox struct {
	sessionID string
	cleared   bool
}

type endSessionKey struct{}

func withEndSessionBox(ctx context.Context, b *endSessionBox) context.Context {
	return context.WithValue(ctx, endSessionKey{}, b)
}

func endSessionBoxFrom(ctx context.Context) *endSessionBox {
	b, _ := ctx.Value(endSessionKey{}).(*endSessionBox)
	if b == nil {
		b = &endSessionBox{}
	}
	return b
}

// TerminateSessionFromRequest ends a session for end_session (OpenID
// Connect RP-Initiated Logout). With a valid id_token_hint (expired is
// fine) it revokes the user's tokens for the client, ends the browser's
// session at the provider if it is the same user's, and returns the
// validated post_logout_redirect_uri. Without one, nobody vouches for the
// request, so nothing ends yet: the user is sent to a page that asks.
func (s *storage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	box := endSessionBoxFrom(ctx)
	now := s.clock.Now()
	if req.IDTokenHintClaims == nil || req.UserID == "" {
		id := randomID()
		s.mu.Lock()
		s.logouts[id] = &pendingLogout{redirect: req.RedirectURI, clientID: req.ClientID, expires: now.Add(s.cfg.LoginLifetime)}
		s.mu.Unlock()
		return s.issuer + logoutPath + "?" + url.Values{"logout": {id}}.Encode(), nil
	}
	s.mu.Lock()
	n := s.revokeLocked(func(t tokenRef) bool { return t.subject == req.UserID && t.clientID == req.ClientID })
	ended := false
	if bs, ok := s.sessions[box.sessionID]; ok && bs.subject == req.UserID {
		delete(s.sessions, box.sessionID)
		ended = true
	}
	s.mu.Unlock()
	if ended {
		box.cleared = true
	}
	s.log.Info("signed out through end_session", "client_id", req.ClientID, "subject", req.UserID,
		"browser_session_ended", ended, "tokens_revoked", n)
	return req.RedirectURI, nil
}

// takeLogout returns and forgets a pending logout.
func (s *storage) takeLogout(id string, now time.Time) (pendingLogout, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.logouts[id]
	if !ok || !now.Before(l.expires) {
		return pendingLogout{}, false
	}
	delete(s.logouts, id)
	return *l, true
}

// peekLogout returns a pending logout without taking it.
func (s *storage) peekLogout(id string, now time.Time) (pendingLogout, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.logouts[id]
	if !ok || !now.Before(l.expires) {
		return pendingLogout{}, false
	}
	return *l, true
}
