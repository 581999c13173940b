package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// loginMessages are the notices the login page shows for ?msg=. Only these
// keys are shown: the page never echoes text from the URL.
var loginMessages = map[string]string{
	"logged-out":    "You have logged out. Log in again to continue.",
	postLogoutMsg:   "You have logged out of Courses and of your university account.",
	"session-ended": "Your session has ended. Log in again to continue where you were.",
}

// loginPageData is what the login template shows.
type loginPageData struct {
	// Next is where to go after logging in (a safe local path, or "").
	Next string
	Form *form
	// SSO is the "Sign in with your university account" link ("" when
	// single sign-on is off); StaffSSOOnly says staff must use it.
	SSO          string
	StaffSSOOnly bool
}

// safeNext returns next if it is a path on this site that is safe to
// redirect to after login, and "" otherwise. It is pure.
//
// Only a local absolute path is accepted: "/courses/5/gradebook?q=ana".
// Refused: anything with a scheme or host ("https://evil.example",
// "//evil.example"), a backslash (browsers read "/\evil.example" as
// "//evil.example"), control characters and spaces, and the login and logout
// pages themselves (a loop, or a logout by link).
func safeNext(next string) string {
	if next == "" || len(next) > 2048 || next[0] != '/' || strings.HasPrefix(next, "//") {
		return ""
	}
	for _, c := range next {
		if c < 0x21 || c == 0x7f || c == '\\' {
			return ""
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return ""
	}
	// The path as the server will route it, after percent-decoding.
	if p := u.Path; p == "/login" || p == "/logout" || strings.HasPrefix(p, "/login/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/api/") || strings.ContainsRune(p, '\\') {
		return ""
	}
	return u.RequestURI()
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	next := safeNext(q.Get("next"))
	// Already logged in: go where the user was heading.
	if tok := sessionToken(r); tok != "" {
		if _, err := s.store.SessionByToken(r.Context(), tok); err == nil {
			http.Redirect(w, r, cmp.Or(next, "/courses"), http.StatusSeeOther)
			return
		}
	}
	f := newForm()
	s.renderLogin(w, r, http.StatusOK, next, f, loginMessages[q.Get("msg")])
}

// renderLogin sets a fresh pre-session CSRF cookie (double-submit) and
// renders the form with the same value, the submitted email and errors in f,
// and an optional notice.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, next string, f *form, notice string) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: tok, Path: "/login", MaxAge: 3600,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, status, "login", pageData{Title: "Log in", CSRF: tok, Message: notice,
		Data: s.loginData(next, f)})
}

// renderLoginError renders the login page with a page-level error (a
// refused single sign-on).
func (s *Server) renderLoginError(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: tok, Path: "/login", MaxAge: 3600,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, status, "login", pageData{Title: "Log in", CSRF: tok, Error: msg, Data: s.loginData(next, newForm())})
}

func (s *Server) loginData(next string, f *form) loginPageData {
	d := loginPageData{Next: next, Form: f}
	if s.sso != nil {
		d.SSO = ssoStartPath
		if next != "" {
			d.SSO += "?" + url.Values{"next": {next}}.Encode()
		}
		d.StaffSSOOnly = s.sso.cfg.StaffSSOOnly
	}
	return d
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	email, next := r.PostFormValue("email"), safeNext(r.PostFormValue("next"))
	f := newForm()
	f.Set("email", email)
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || !csrfOK(c.Value, r.PostFormValue(csrfField)) {
		// Nothing was checked; show a fresh form with the email kept.
		f.Fail("password", "This login form had expired, so nothing was sent. Enter your password again to log in.")
		s.renderLogin(w, r, http.StatusForbidden, next, f, "")
		return
	}
	if ssoOnly, err := s.staffMustUseSSO(r.Context(), email); err != nil {
		s.dbError(w, r, err)
		return
	} else if ssoOnly {
		s.log.Info("password login refused: staff sign in with single sign-on only", "request_id", requestID(r))
		f.Fail("password", msgSSOStaffOnly)
		s.renderLogin(w, r, http.StatusForbidden, next, f, "")
		return
	}
	u, res, verdict, err := s.checkPassword(r.Context(), r, email, r.PostFormValue("password"))
	switch {
	case errors.Is(err, errThrottled):
		w.Header().Set("Retry-After", retryAfterSeconds(verdict))
		f.Fail("password", throttleMessage(verdict))
		s.renderLogin(w, r, http.StatusTooManyRequests, next, f, "")
		return
	case errors.Is(err, ErrNotFound):
		f.Fail("password", "That email and password do not match. Check them and try again.")
		s.renderLogin(w, r, http.StatusUnauthorized, next, f, "")
		return
	case err != nil:
		s.dbError(w, r, err)
		return
	}
	tok, sess, err := s.store.CreateSession(r.Context(), u.ID, &res)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	clearCookie(w, loginCSRFCookie, "/login")
	s.setSessionCookie(w, tok, sess)
	http.Redirect(w, r, cmp.Or(next, "/courses"), http.StatusSeeOther)
}

// checkPassword counts the attempt against the login throttle and, when it
// is allowed, checks the password. It returns errThrottled (with the
// verdict) before any bcrypt work when a limit is reached, ErrNotFound for
// any mismatch, or the user and the reservation to release on success.
func (s *Server) checkPassword(ctx context.Context, r *http.Request, email, password string) (User, loginReservation, throttleVerdict, error) {
	client := s.clientOf(r)
	res, v, err := s.store.ReserveLogin(ctx, s.throttle, email, client)
	if err != nil {
		return User{}, res, v, err
	}
	if !v.Allowed {
		s.log.Warn("login throttled", "scope", v.Scope, "client", client,
			"retry_after_s", int(v.RetryAfter/time.Second), "request_id", requestID(r))
		return User{}, res, v, errThrottled
	}
	u, err := s.authenticate(ctx, email, password)
	return u, res, v, err
}

// authenticate checks an email and password. It returns ErrNotFound for any
// mismatch, without saying which part was wrong.
func (s *Server) authenticate(ctx context.Context, email, password string) (User, error) {
	email = normEmail(email)
	if email == "" || password == "" || len(password) > 72 || len(email) > 254 {
		return User{}, ErrNotFound
	}
	u, hash, err := s.store.UserByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) {
		s.passwordChecks.Add(1)
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, err
	}
	s.passwordChecks.Add(1)
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return User{}, ErrNotFound
	}
	return u, nil
}

// logoutPage answers a GET of /logout (a typed or bookmarked address) with a
// confirmation button: logging out changes state, so it is a POST.
func (s *Server) logoutPage(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	s.render(w, r, http.StatusOK, "logout", pageData{Title: "Log out"})
}

// logout ends the app session and, for a single sign-on session, sends the
// browser to the provider's end_session_endpoint, which ends the session
// there too and comes back to /login?msg=sso-logged-out.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess Session, tok string) {
	idToken, err := s.store.DeleteSession(r.Context(), tok)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	clearCookie(w, sessionCookie, "/")
	if s.sso != nil && idToken != "" {
		if u, ok := s.sso.endSessionURL(r.Context(), idToken); ok {
			http.Redirect(w, r, u, http.StatusSeeOther)
			return
		}
	}
	http.Redirect(w, r, "/login?msg=logged-out", http.StatusSeeOther)
}

// ---- JSON API ----

type meResponse struct {
	User      User      `json:"user"`
	CSRFToken string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// apiLogin accepts {"email","password"} as JSON. Requiring the JSON content
// type is its CSRF defence: a cross-site form cannot send it without a CORS
// preflight, which this server never grants.
func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "send Content-Type: application/json"})
		return
	}
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be {\"email\": ..., \"password\": ...}"})
		return
	}
	if ssoOnly, err := s.staffMustUseSSO(r.Context(), in.Email); err != nil {
		s.apiDBError(w, r, err)
		return
	} else if ssoOnly {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "staff sign in with their university account (single sign-on): password login is turned off for staff"})
		return
	}
	u, res, verdict, err := s.checkPassword(r.Context(), r, in.Email, in.Password)
	switch {
	case errors.Is(err, errThrottled):
		w.Header().Set("Retry-After", retryAfterSeconds(verdict))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": throttleMessage(verdict),
			"scope": verdict.Scope, "retry_after_seconds": int(math.Ceil(verdict.RetryAfter.Seconds()))})
		return
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "email and password do not match"})
		return
	case err != nil:
		s.apiDBError(w, r, err)
		return
	}
	tok, sess, err := s.store.CreateSession(r.Context(), u.ID, &res)
	if err != nil {
		s.apiDBError(w, r, err)
		return
	}
	s.setSessionCookie(w, tok, sess)
	writeJSON(w, http.StatusOK, meResponse{User: u, CSRFToken: sess.CSRFToken, ExpiresAt: sess.ExpiresAt})
}

// apiLogout ends the app session only; an API client that signed in with a
// password has no session at a provider.
func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request, _ Session, tok string) {
	if _, err := s.store.DeleteSession(r.Context(), tok); err != nil {
		s.apiDBError(w, r, err)
		return
	}
	clearCookie(w, sessionCookie, "/")
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// retryAfterSeconds is the Retry-After header value: whole seconds, rounded up.
func retryAfterSeconds(v throttleVerdict) string {
	return strconv.Itoa(int((v.RetryAfter + time.Second - 1) / time.Second))
}
