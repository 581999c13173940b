package idp

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Paths of the provider's own pages; the protocol endpoints are zitadel/oidc's
// (discovery at /.well-known/openid-configuration, /authorize, /oauth/token,
// /keys, /userinfo, /revoke, /oauth/introspect, /end_session).
const (
	loginPath    = "/login"
	logoutPath   = "/logout"
	callbackPath = "/authorize/callback"
	cssPath      = "/assets/idp.css"
)

// Cookie names. They differ from the courses app's, since a browser keeps
// cookies per host, not per port, and the two may share a host.
const (
	sessionCookie = "idp_session"
	csrfCookie    = "idp_csrf"
	csrfField     = "csrf_token"
)

// Bounds on what the login form accepts, so an oversized field cannot make
// hashing expensive.
const (
	maxUsernameLen = 254
	maxPasswordLen = 1024
	maxFormBytes   = 16 << 10
)

//go:embed web/*.html web/idp.css
var webFS embed.FS

var pages = template.Must(template.ParseFS(webFS, "web/*.html"))

var stylesheet = func() []byte {
	b, err := webFS.ReadFile("web/idp.css")
	if err != nil {
		panic(err)
	}
	return b
}()

// handler builds the provider's HTTP handler: its pages, and zitadel/oidc's
// protocol endpoints for the rest.
func (p *Provider) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.homePage)
	mux.HandleFunc("GET "+loginPath, p.loginPage)
	mux.HandleFunc("POST "+loginPath, p.loginSubmit)
	mux.HandleFunc("GET "+logoutPath, p.logoutPage)
	mux.HandleFunc("POST "+logoutPath, p.logoutSubmit)
	mux.HandleFunc("GET "+cssPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(stylesheet)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.Handle(p.op.EndSessionEndpoint().Relative(), p.endSession(p.op))
	mux.Handle("/", p.op)
	return securityHeaders(mux)
}

// securityHeaders sets what every response carries. Pages add their own
// Content-Security-Policy (render). No Referer leaves the provider: its URLs
// carry request ids and codes.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		next.ServeHTTP(w, r)
	})
}

// pageData is what the templates show.
type pageData struct {
	Title    string
	Provider string
	Notice   string
	Error    string
	User     *User
	CSRF     string

	// Login form.
	RequestID string
	Client    string
	Username  string

	// Logout confirmation.
	LogoutID string
}

// render writes a page with a Content-Security-Policy whose form-action
// allows 'self' and formOrigins: a form's POST answers with a redirect to
// the client, and Chromium applies form-action to that redirect too.
func (p *Provider) render(w http.ResponseWriter, status int, name string, d pageData, formOrigins ...string) {
	d.Provider = p.cfg.Name
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		p.log.Error("render page", "page", name, "err", err)
		http.Error(w, "Something went wrong. Please try again.", http.StatusInternalServerError)
		return
	}
	formAction := "'self'"
	for _, o := range formOrigins {
		if o != "" {
			formAction += " " + o
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action "+formAction)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage shows a problem the user can act on.
func (p *Provider) errorPage(w http.ResponseWriter, status int, title, msg string) {
	p.render(w, status, "message.html", pageData{Title: title, Error: msg})
}

// urlOrigin returns scheme://host of a URL, for a CSP source.
func urlOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// ---- cookies ----

func (p *Provider) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// newCSRF sets a fresh double-submit token and returns it for the form.
func (p *Provider) newCSRF(w http.ResponseWriter) string {
	tok := randomID()
	p.setCookie(w, csrfCookie, tok, int(p.cfg.LoginLifetime/time.Second))
	return tok
}

func csrfOK(r *http.Request) bool {
	c, f := cookieValue(r, csrfCookie), r.PostFormValue(csrfField)
	return c != "" && f != "" && subtle.ConstantTimeCompare([]byte(c), []byte(f)) == 1
}

// currentSession returns the browser's live session at the provider.
func (p *Provider) currentSession(r *http.Request) (browserSession, string, *User, bool) {
	bs, id, ok := p.st.sessionByCookie(cookieValue(r, sessionCookie), p.cfg.Clock.Now())
	if !ok {
		return browserSession{}, "", nil, false
	}
	return bs, id, p.st.subject[bs.subject], true
}

// ---- pages ----

// homeNotices are the notices the home page shows for ?msg=; the page never
// echoes text from the URL.
var homeNotices = map[string]string{
	"signed-out": "You have signed out.",
}

// homePage says who is signed in at the provider, if anyone, with a sign-out
// button.
func (p *Provider) homePage(w http.ResponseWriter, r *http.Request) {
	d := pageData{Title: p.cfg.Name, Notice: homeNotices[r.URL.Query().Get("msg")]}
	if _, _, u, ok := p.currentSession(r); ok {
		d.User, d.CSRF = u, p.newCSRF(w)
	}
	p.render(w, http.StatusOK, "home.html", d)
}

// loginPage is where the authorize endpoint sends the browser. A live
// session at the provider completes the request without a form (single
// sign-on) unless the client asked for a fresh login (prompt=login, max_age)
// or for another user (id_token_hint); prompt=none without one answers the
// client login_required.
func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	ar, err := p.st.AuthRequestByID(r.Context(), id)
	if err != nil {
		p.errorPage(w, http.StatusBadRequest, "Sign-in link expired",
			"This sign-in link has expired or is not valid. Go back to the application and choose to sign in again.")
		return
	}
	a := ar.(*authRequest)
	now := p.cfg.Clock.Now()
	if bs, sid, _, ok := p.currentSession(r); ok && sessionSatisfies(a, bs, now) {
		if err := p.st.completeLogin(a.id, bs.subject, sid, bs.authTime); err != nil {
			p.errorPage(w, http.StatusBadRequest, "Sign-in link expired",
				"This sign-in link has expired. Go back to the application and choose to sign in again.")
			return
		}
		p.log.Info("signed in from an existing session", "client_id", a.clientID, "subject", bs.subject)
		http.Redirect(w, r, p.callbackURL(a.id), http.StatusFound)
		return
	}
	if slices.Contains(a.prompt, oidc.PromptNone) {
		op.AuthRequestError(w, r, a, oidc.ErrLoginRequired().WithDescription("the user is not signed in"), p.op)
		return
	}
	p.showLogin(w, http.StatusOK, a, a.loginHint, "")
}

// sessionSatisfies decides whether a browser session may answer a request
// without the login form. It is pure.
func sessionSatisfies(a *authRequest, bs browserSession, now time.Time) bool {
	if slices.Contains(a.prompt, oidc.PromptLogin) || slices.Contains(a.prompt, oidc.PromptSelectAccount) {
		return false
	}
	if a.maxAge != nil && (*a.maxAge == 0 || now.Sub(bs.authTime) > time.Duration(*a.maxAge)*time.Second) {
		return false
	}
	return a.hintSubject == "" || a.hintSubject == bs.subject
}

func (p *Provider) showLogin(w http.ResponseWriter, status int, a *authRequest, username, errMsg string) {
	client := a.clientID
	if c, ok := p.st.clients[a.clientID]; ok {
		client = c.Name
	}
	d := pageData{Title: "Sign in", RequestID: a.id, Client: client, Username: username, Error: errMsg, CSRF: p.newCSRF(w)}
	p.render(w, status, "login.html", d, urlOrigin(a.redirectURI))
}

func (p *Provider) callbackURL(id string) string {
	return p.st.issuer + callbackPath + "?" + url.Values{"id": {id}}.Encode()
}

// Login form messages: what happened and what to do.
const (
	msgLoginExpired  = "This sign-in form had expired, so nothing was checked. Enter your password again to sign in."
	msgLoginMismatch = "That username and password do not match. Check them and try again."
	msgLoginMissing  = "Enter your username and your password."
)

// loginSubmit checks a username and password, starts a session at the
// provider and sends the browser on to the authorize callback, which issues
// the code.
func (p *Provider) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, http.StatusBadRequest, "Sign-in failed", "The sign-in form could not be read. Go back and try again.")
		return
	}
	ar, err := p.st.AuthRequestByID(r.Context(), r.PostFormValue("authRequestID"))
	if err != nil {
		p.errorPage(w, http.StatusBadRequest, "Sign-in link expired",
			"This sign-in took too long, so it has expired. Go back to the application and choose to sign in again.")
		return
	}
	a := ar.(*authRequest)
	typed := strings.TrimSpace(r.PostFormValue("username"))
	username, password := normUsername(typed), r.PostFormValue("password")
	if !csrfOK(r) {
		p.showLogin(w, http.StatusForbidden, a, typed, msgLoginExpired)
		return
	}
	if username == "" || password == "" || len(username) > maxUsernameLen || len(password) > maxPasswordLen {
		p.showLogin(w, http.StatusUnprocessableEntity, a, typed, msgLoginMissing)
		return
	}
	now := p.cfg.Clock.Now()
	if ok, wait := p.st.loginAllowed(username, now); !ok {
		mins := int(math.Ceil(wait.Minutes()))
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		p.log.Warn("sign-in refused: too many wrong passwords", "client_id", a.clientID)
		p.showLogin(w, http.StatusTooManyRequests, a, typed, "Too many wrong passwords for this account, so sign-in is paused. "+
			"Try again in "+strconv.Itoa(mins)+" minute"+plural(mins)+", or contact the IT service desk if you have forgotten your password.")
		return
	}
	u, ok := p.st.users[username]
	h := dummyHash
	if ok {
		h = p.passwords[username]
	}
	if !h.matches(password) || !ok {
		p.st.loginFailed(username, now)
		p.log.Info("sign-in failed: wrong username or password", "client_id", a.clientID)
		p.showLogin(w, http.StatusUnauthorized, a, typed, msgLoginMismatch)
		return
	}
	p.st.loginSucceeded(username)
	cookie, sid := p.st.createSession(u.Subject, now)
	if err := p.st.completeLogin(a.id, u.Subject, sid, now); err != nil {
		p.errorPage(w, http.StatusBadRequest, "Sign-in link expired",
			"This sign-in took too long, so it has expired. Go back to the application and choose to sign in again.")
		return
	}
	p.setCookie(w, sessionCookie, cookie, int(p.cfg.SessionLifetime/time.Second))
	p.setCookie(w, csrfCookie, "", -1)
	p.log.Info("signed in", "client_id", a.clientID, "subject", u.Subject)
	http.Redirect(w, r, p.callbackURL(a.id), http.StatusFound)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// logoutPage asks the user to confirm signing out: reached from end_session
// without a valid id_token_hint (?logout=id), or typed.
func (p *Provider) logoutPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("logout")
	l, pending := p.st.peekLogout(id, p.cfg.Clock.Now())
	_, _, u, signedIn := p.currentSession(r)
	if !signedIn && !pending {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	d := pageData{Title: "Sign out", User: u, CSRF: p.newCSRF(w)}
	if pending {
		d.LogoutID = id
	}
	p.render(w, http.StatusOK, "logout.html", d, urlOrigin(l.redirect))
}

// logoutSubmit ends the browser's session at the provider (and the tokens
// issued through it), then goes where the pending end_session asked, or to
// the home page.
func (p *Provider) logoutSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if !csrfOK(r) {
		p.errorPage(w, http.StatusForbidden, "Sign-out not done",
			"This sign-out form had expired, so you are still signed in. Go back, reload the page and try again.")
		return
	}
	if c := cookieValue(r, sessionCookie); c != "" {
		if sub, ok := p.st.endBrowserSession(hashOf(c)); ok {
			p.log.Info("signed out", "subject", sub)
		}
	}
	p.setCookie(w, sessionCookie, "", -1)
	p.setCookie(w, csrfCookie, "", -1)
	target := "/?msg=signed-out"
	if l, ok := p.st.takeLogout(r.PostFormValue("logout"), p.cfg.Clock.Now()); ok && l.redirect != "" {
		target = l.redirect
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// endSession wraps zitadel/oidc's end_session endpoint: it hands the
// browser's session to TerminateSessionFromRequest and clears the session
// cookie when that ended the session.
func (p *Provider) endSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		box := &endSessionBox{}
		if c := cookieValue(r, sessionCookie); c != "" {
			box.sessionID = hashOf(c)
		}
		next.ServeHTTP(&endSessionWriter{ResponseWriter: w, box: box, p: p}, r.WithContext(withEndSessionBox(r.Context(), box)))
	})
}

// endSessionWriter adds the cookie-clearing header just before the
// response's headers go out.
type endSessionWriter struct {
	http.ResponseWriter
	box   *endSessionBox
	p     *Provider
	wrote bool
}

func (e *endSessionWriter) WriteHeader(code int) {
	if !e.wrote {
		e.wrote = true
		if e.box.cleared {
			e.p.setCookie(e.ResponseWriter, sessionCookie, "", -1)
		}
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *endSessionWriter) Write(b []byte) (int, error) {
	if !e.wrote {
		e.WriteHeader(http.StatusOK)
	}
	return e.ResponseWriter.Write(b)
}
