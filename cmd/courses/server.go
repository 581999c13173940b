package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

//go:embed web/templates/*.html
var templateFS embed.FS

//go:embed web/static
var staticFS embed.FS

const (
	sessionCookie    = "courses_session"
	loginCSRFCookie  = "courses_login_csrf"
	csrfField        = "csrf_token"
	csrfHeader       = "X-CSRF-Token"
	maxFormBytes     = 64 << 10
	defaultTTL       = 12 * time.Hour
	requestIDHeader  = "X-Request-Id"
	maxRequestIDLen  = 128
	readyPingTimeout = 2 * time.Second
)

// dummyHash is compared against when the email is unknown, so a login for an
// unknown user costs as much as one for a known user.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not-a-real-password"), bcrypt.DefaultCost)

// hstsValue is the Strict-Transport-Security header. TLS ends at the load
// balancer, so the app sees plain HTTP, but browsers only ever reach it over
// HTTPS; they ignore the header on a plain-HTTP response, so it is sent on
// every one. It has no includeSubDomains: the app cannot know that every
// sibling host of its domain serves HTTPS.
const hstsValue = "max-age=31536000"

// Server is the HTTP side of the app. It keeps no per-user state in memory:
// every session lives in the database, so any instance serves any user.
type Server struct {
	db        *DB
	store     *Store
	log       *slog.Logger
	pages     map[string]*template.Template
	static    *assets
	materials *Materials // nil: materials stay in the database
	favicon   []byte
	throttle  ThrottlePolicy
	clientIP  ClientIPConfig
	sso       *ssoClient // nil: single sign-on off
	csp       string
	draining  atomic.Bool
	// passwordChecks counts bcrypt comparisons (tests assert that a
	// throttled login costs none).
	passwordChecks atomic.Int64
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// DB is required.
	DB *DB
	// Logger receives the access log and diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Clock drives session expiry and the login throttle's windows.
	// Default the system clock.
	Clock Clock
	// SessionTTL is how long a login lasts. Default 12h.
	SessionTTL time.Duration
	// Throttle limits password guessing. Defaults: see ThrottlePolicy.
	Throttle ThrottlePolicy
	// ClientIP says how to find a client's address behind the load
	// balancer. Default: X-Forwarded-For from private and loopback peers,
	// one hop.
	ClientIP *ClientIPConfig
	// SSO is single sign-on through an OpenID provider. Default nil: off.
	SSO *ssoClient
	// Materials keeps course materials in S3 and signs their URLs.
	// Default nil: materials stay in the database, served by the app.
	Materials *Materials
}

// NewServer builds the handler tree.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.DB == nil {
		return nil, errors.New("new server: DB is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = defaultTTL
	}
	cfg.Throttle.setDefaults()
	if err := cfg.Throttle.Validate(); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	if cfg.ClientIP == nil {
		trusted, err := ParseTrustedProxies(strings.Join(defaultTrustedProxies, ","))
		if err != nil {
			return nil, err
		}
		cfg.ClientIP = &ClientIPConfig{TrustedProxies: trusted, Hops: 1}
	}
	sub, err := fs.Sub(staticFS, "web/static")
	if err != nil {
		return nil, fmt.Errorf("open static files: %w", err)
	}
	static, err := loadAssets(sub)
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	funcs := template.FuncMap{
		"asset": static.Path,
		"bytes": humanBytes,
		"kb": func(n int) string {
			if n < 1024 {
				return fmt.Sprintf("%d bytes", n)
			}
			return fmt.Sprintf("%.1f KB", float64(n)/1024)
		},
		"score": func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
		"avg":   func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
		"date":  func(t time.Time) string { return t.UTC().Format("2 Jan 2006") },
		"inc":   func(n int) int { return n + 1 },
		"dec":   func(n int) int { return n - 1 },
	}
	for _, name := range []string{"login", "courses", "course", "grades", "error", "gradebook", "grade_edit", "logout"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "web/templates/layout.html", "web/templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		pages[name] = t
	}
	// A form's POST that answers with a redirect (logging out through the
	// provider's end_session) is held to form-action by Chromium, hop by hop.
	formAction := "'self'"
	if cfg.SSO != nil {
		if u, err := url.Parse(cfg.SSO.cfg.Issuer); err == nil {
			formAction += " " + u.Scheme + "://" + u.Host
		}
	}
	// A teacher's browser uploads straight to the bucket.
	connect := "'self'"
	if cfg.Materials != nil && cfg.Materials.origin != "" {
		connect += " " + cfg.Materials.origin
	}
	return &Server{
		sso:       cfg.SSO,
		csp:       "default-src 'self'; connect-src " + connect + "; frame-ancestors 'none'; form-action " + formAction,
		db:        cfg.DB,
		store:     &Store{db: cfg.DB, clock: cfg.Clock, ttl: cfg.SessionTTL},
		log:       cfg.Logger.With("component", "http"),
		pages:     pages,
		static:    static,
		materials: cfg.Materials,
		favicon:   faviconICO(),
		throttle:  cfg.Throttle,
		clientIP:  *cfg.ClientIP,
	}, nil
}

// SetDraining makes /readyz fail so the load balancer stops sending new
// requests while in-flight ones finish.
func (s *Server) SetDraining() { s.draining.Store(true) }

// Handler returns the full handler with access logging and panic recovery.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /static/", s.static)
	if s.materials != nil {
		// Materials at the bucket's paths, for whoever reaches the app
		// directly; at the edge these paths are served from the bucket.
		mux.HandleFunc("GET /"+s.materials.cfg.Prefix+"{key...}", s.withSession(false, s.objectDownload))
		mux.HandleFunc("POST /api/courses/{id}/materials/uploads", s.withAPISession(true, s.apiStartUpload))
		mux.HandleFunc("POST /api/courses/{id}/materials/uploads/{uid}/complete", s.withAPISession(true, s.apiCompleteUpload))
	}
	mux.HandleFunc("GET /favicon.ico", s.faviconHandler)

	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginSubmit)
	if s.sso != nil {
		mux.HandleFunc("GET "+ssoStartPath, s.ssoStart)
		mux.HandleFunc("GET "+ssoCallbackPath, s.ssoCallback)
	}
	mux.HandleFunc("GET /logout", s.withSession(false, s.logoutPage))
	mux.HandleFunc("POST /logout", s.withSession(true, s.logout))
	mux.HandleFunc("GET /courses", s.withSession(false, s.coursesPage))
	mux.HandleFunc("GET /courses/{id}", s.withSession(false, s.coursePage))
	mux.HandleFunc("GET /courses/{id}/materials/{mid}/download", s.withSession(false, s.download))
	mux.HandleFunc("POST /courses/{id}/grades", s.withSession(true, s.gradeSubmit))
	mux.HandleFunc("GET /courses/{id}/gradebook", s.withSession(false, s.gradebookPage))
	mux.HandleFunc("GET /courses/{id}/gradebook.csv", s.withSession(false, s.gradebookCSV))
	mux.HandleFunc("GET /courses/{id}/gradebook/edit", s.withSession(false, s.gradeEditPage))
	mux.HandleFunc("POST /courses/{id}/gradebook/edit", s.withSession(true, s.gradeEditSubmit))
	mux.HandleFunc("GET /grades", s.withSession(false, s.gradesPage))

	mux.HandleFunc("POST /api/login", s.apiLogin)
	mux.HandleFunc("POST /api/logout", s.withAPISession(true, s.apiLogout))
	mux.HandleFunc("GET /api/me", s.withAPISession(false, s.apiMe))
	mux.HandleFunc("GET /api/courses", s.withAPISession(false, s.apiCourses))
	mux.HandleFunc("GET /api/courses/{id}", s.withAPISession(false, s.apiCourse))
	mux.HandleFunc("POST /api/courses/{id}/grades", s.withAPISession(true, s.apiPostGrade))
	mux.HandleFunc("GET /api/grades", s.withAPISession(false, s.apiGrades))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint"})
	})
	mux.HandleFunc("/", s.notFound)
	return s.accessLog(s.recoverer(s.securityHeaders(mux)))
}

// ---- middleware ----

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type ctxKey int

const requestIDKey ctxKey = 1

// accessLog writes one JSON line per request. It logs the path without the
// query string and never logs headers, cookies or bodies.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(requestIDHeader)
		if id == "" || len(id) > maxRequestIDLen {
			b := make([]byte, 8)
			_, _ = rand.Read(b)
			id = hex.EncodeToString(b)
		}
		w.Header().Set(requestIDHeader, id)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.Int64("bytes", rec.bytes),
			slog.String("request_id", id),
		)
	})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, &sessionBox{}))
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v), "request_id", requestID(r))
				s.renderError(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again. If it keeps happening, contact support.")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", s.csp)
		h.Set("Strict-Transport-Security", hstsValue)
		next.ServeHTTP(w, r)
	})
}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey).(string)
	return id
}

// ---- sessions and CSRF ----

type sessionHandler func(w http.ResponseWriter, r *http.Request, sess Session, token string)

type sessionKey struct{}

// sessionBox carries the request's session, once known, to whoever renders
// the response: recoverer puts an empty box in the context before routing,
// and withSession fills it. Error pages read it, so they keep the navigation
// and the signed-in user, even after a panic.
type sessionBox struct{ sess *Session }

// sessionFrom returns the request's session, or nil before withSession (or
// notFound) has loaded one.
func sessionFrom(r *http.Request) *Session {
	if b, _ := r.Context().Value(sessionKey{}).(*sessionBox); b != nil {
		return b.sess
	}
	return nil
}

// withSessionContext records the session for the rest of the request.
func withSessionContext(r *http.Request, sess *Session) *http.Request {
	if b, _ := r.Context().Value(sessionKey{}).(*sessionBox); b != nil {
		b.sess = sess
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), sessionKey{}, &sessionBox{sess}))
}

func sessionToken(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// csrfOK compares the submitted token with the session's in constant time.
func csrfOK(want, got string) bool {
	if want == "" || got == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

func submittedCSRF(r *http.Request) string {
	if v := r.Header.Get(csrfHeader); v != "" {
		return v
	}
	return r.PostFormValue(csrfField)
}

// toLogin sends a user without a live session to the login page. A page they
// asked for (a GET) goes along as ?next=, so they land on it after logging
// in; msg says why they are there.
func toLogin(w http.ResponseWriter, r *http.Request, msg string) {
	q := url.Values{}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if next := safeNext(r.URL.RequestURI()); next != "" && next != "/courses" {
			q.Set("next", next)
		}
	}
	if msg != "" {
		q.Set("msg", msg)
	}
	target := "/login"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// withSession loads the session for page handlers; unauthenticated users are
// sent to the login page. With checkCSRF, POSTs without the session's token
// get 403.
func (s *Server) withSession(checkCSRF bool, h sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := sessionToken(r)
		if tok == "" {
			if checkCSRF {
				s.renderError(w, r, http.StatusForbidden, "Form expired", "You are not logged in, so this form was not accepted. Log in, then try again.")
				return
			}
			toLogin(w, r, "")
			return
		}
		sess, err := s.store.SessionByToken(r.Context(), tok)
		if errors.Is(err, ErrNotFound) {
			clearCookie(w, sessionCookie, "/")
			if checkCSRF {
				s.renderError(w, r, http.StatusForbidden, "Form expired", "Your session has ended, so this form was not accepted. Log in again, then try again.")
				return
			}
			toLogin(w, r, "session-ended")
			return
		}
		if err != nil {
			s.dbError(w, r, err)
			return
		}
		r = withSessionContext(r, &sess)
		if checkCSRF {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if !csrfOK(sess.CSRFToken, submittedCSRF(r)) {
				s.renderError(w, r, http.StatusForbidden, "Form expired", "This form was not accepted: it was older than your current login. Go back, reload the page and try again.")
				return
			}
		}
		w.Header().Set("Cache-Control", "private, no-store")
		h(w, r, sess, tok)
	}
}

// withAPISession is withSession for /api: JSON errors, 401 instead of redirect.
func (s *Server) withAPISession(checkCSRF bool, h sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, no-store")
		tok := sessionToken(r)
		if tok == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not logged in"})
			return
		}
		sess, err := s.store.SessionByToken(r.Context(), tok)
		if errors.Is(err, ErrNotFound) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not logged in"})
			return
		}
		if err != nil {
			s.apiDBError(w, r, err)
			return
		}
		if checkCSRF && !csrfOK(sess.CSRFToken, r.Header.Get(csrfHeader)) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "missing or wrong " + csrfHeader + " header"})
			return
		}
		h(w, r, sess, tok)
	}
}

func (s *Server) setSessionCookie(w http.ResponseWriter, token string, sess Session) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    token,
		Path:     "/",
		Expires:  sess.ExpiresAt,
		MaxAge:   int(time.Until(sess.ExpiresAt).Seconds()),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// clearCookie deletes a cookie. path must be the Path it was set with: a
// browser keeps cookies per (name, domain, path), so clearing with another
// path leaves the original in place.
func clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// ---- error rendering ----

// dbError shows a friendly page for a failed database operation and logs the
// cause (never shown to the user).
func (s *Server) dbError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		s.renderError(w, r, http.StatusNotFound, "Not found", "This page does not exist, or you do not have access to it.")
	case errors.Is(err, ErrCommitUnknown):
		s.log.Warn("request failed", "path", r.URL.Path, "request_id", requestID(r), "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, "Please check your change",
			"The database switched over while saving. Your change may or may not have been saved: reload the page to check before trying again.")
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		w.WriteHeader(499)
	default:
		s.log.Warn("request failed", "path", r.URL.Path, "request_id", requestID(r), "err", err)
		w.Header().Set("Retry-After", "5")
		s.renderError(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
			"We could not reach the course database just now. Please try again in a few seconds.")
	}
}

func (s *Server) apiDBError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	case errors.Is(err, ErrCommitUnknown):
		s.log.Warn("request failed", "path", r.URL.Path, "request_id", requestID(r), "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "commit outcome unknown: check before retrying"})
	default:
		s.log.Warn("request failed", "path", r.URL.Path, "request_id", requestID(r), "err", err)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "database temporarily unavailable, retry shortly"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// notFound is the 404 page for any unknown path. It looks the session up
// (briefly: a 404 must not wait out a failover) so the page keeps the
// navigation and the signed-in user.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if tok := sessionToken(r); tok != "" {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		sess, err := s.store.SessionByToken(ctx, tok)
		cancel()
		if err == nil {
			r = withSessionContext(r, &sess)
			w.Header().Set("Cache-Control", "private, no-store")
		}
	}
	s.renderError(w, r, http.StatusNotFound, "Page not found", "There is no page at this address. It may have moved, or the link may be mistyped.")
}

// ---- page rendering ----

type pageData struct {
	Title   string
	Nav     string
	User    *User
	CSRF    string
	Message string
	Error   string
	Data    any
}

// render executes a page. The signed-in user and their CSRF token come from
// the request's session when the handler did not set them, so every page,
// error pages included, keeps the navigation and says who is signed in.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	if d.User == nil {
		if sess := sessionFrom(r); sess != nil {
			d.User, d.CSRF = &sess.User, sess.CSRFToken
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var buf strings.Builder
	if err := s.pages[name].ExecuteTemplate(&buf, "layout.html", d); err != nil {
		s.log.Error("render template", "template", name, "request_id", requestID(r), "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("Something went wrong. Please try again."))
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, status, "error", pageData{Title: title, Data: map[string]any{"Status": status, "Message": msg}})
}

func pathID(r *http.Request, name string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	return id, err == nil && id > 0
}

// ---- handlers: probes ----

// healthz is shallow: the process is up and serving. It never touches the
// database, so a database failover does not make the load balancer eject
// every instance at once.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz is deep: it pings the database once (no retry) and fails while the
// server drains.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("draining\n"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyPingTimeout)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("database unreachable\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// ---- handlers: pages ----

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	if sessionToken(r) != "" {
		http.Redirect(w, r, "/courses", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) coursesPage(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	cs, err := s.store.CoursesFor(r.Context(), sess.User)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "courses", pageData{Title: "My courses", Nav: "courses", Data: cs})
}

// coursePageData is the course page: the course, and for its teacher the
// grade form as last submitted.
type coursePageData struct {
	CourseDetail
	Form *form
	// Uploads shows the teacher's upload form; MaxUpload is its limit.
	Uploads   bool
	MaxUpload int64
}

func (s *Server) coursePage(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok := pathID(r, "id")
	if !ok {
		s.dbError(w, r, ErrNotFound)
		return
	}
	pd := pageData{}
	if r.URL.Query().Get("msg") == "graded" {
		pd.Message = "Grade saved."
	}
	s.renderCourse(w, r, sess, id, http.StatusOK, newForm(), pd)
}

// renderCourse renders the course page with the grade form f (empty, or as
// submitted with its errors).
func (s *Server) renderCourse(w http.ResponseWriter, r *http.Request, sess Session, id int64, status int, f *form, pd pageData) {
	d, err := s.store.Course(r.Context(), sess.User, id)
	if err == nil {
		err = s.linkMaterials(r.Context(), &d)
	}
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	pd.Title, pd.Nav, pd.Data = d.Course.Title, "courses", coursePageData{CourseDetail: d, Form: f, Uploads: s.materials != nil && sess.User.IsTeacher(), MaxUpload: s.maxUpload()}
	s.render(w, r, status, "course", pd)
}

func (s *Server) download(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	cid, ok1 := pathID(r, "id")
	mid, ok2 := pathID(r, "mid")
	if !ok1 || !ok2 {
		s.dbError(w, r, ErrNotFound)
		return
	}
	m, err := s.store.Material(r.Context(), sess.User, cid, mid)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	if m.ObjectKey != "" {
		// In the bucket: to the (signed) URL, which the edge serves.
		s.redirectToObject(w, r, cid, m.ObjectKey)
		return
	}
	w.Header().Set("Content-Type", m.ContentType)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": m.Filename}))
	w.Header().Set("Content-Length", strconv.Itoa(len(m.Content)))
	w.Header().Set("Cache-Control", "private, max-age=300")
	_, _ = w.Write(m.Content)
}

// gradeInput is a valid grade submission.
type gradeInput struct {
	Email      string
	Assignment string
	Score      float64
}

// Grade form messages: what is wrong and what to enter instead.
const (
	msgGradeEmail      = "Enter the student's email address, for example student12@example.edu."
	msgGradeAssignment = "Enter the assignment's name, up to 100 characters, for example Essay 1."
	msgGradeScore      = "Enter a score from 0 to 100, for example 87.5."
)

// validateGrade checks a grade submission field by field. It is pure. The
// form keeps the values as typed, so a rejected form shows them again.
func validateGrade(email, assignment, score string) (gradeInput, *form) {
	f := newForm()
	f.Set("student_email", email)
	f.Set("assignment", assignment)
	f.Set("score", score)
	in := gradeInput{Email: normEmail(email), Assignment: strings.TrimSpace(assignment)}
	if in.Email == "" || !strings.Contains(in.Email, "@") || len(in.Email) > 254 {
		f.Fail("student_email", msgGradeEmail)
	}
	if in.Assignment == "" || len(in.Assignment) > 100 {
		f.Fail("assignment", msgGradeAssignment)
	}
	v, ok := parseScore(score)
	if !ok {
		f.Fail("score", msgGradeScore)
	}
	in.Score = v
	return in, f
}

// parseScore parses a score from 0 to 100. It is pure. The column is
// numeric(5,1), so PostgreSQL keeps one decimal.
func parseScore(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f != f || f < 0 || f > 100 {
		return 0, false
	}
	return f, true
}

func (s *Server) gradeSubmit(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok := pathID(r, "id")
	if !ok || !sess.User.IsTeacher() {
		s.renderError(w, r, http.StatusForbidden, "Not allowed", "Only the course's teacher can post grades.")
		return
	}
	in, f := validateGrade(r.PostFormValue("student_email"), r.PostFormValue("assignment"), r.PostFormValue("score"))
	if !f.OK() {
		s.renderCourse(w, r, sess, id, http.StatusUnprocessableEntity, f, pageData{})
		return
	}
	err := s.store.PostGrade(r.Context(), sess.User, id, studentRef{Email: in.Email}, in.Assignment, in.Score)
	switch {
	case errors.Is(err, ErrNotEnrolled):
		f.Fail("student_email", "No student with this email is enrolled in this course. Check the address against the class list.")
		s.renderCourse(w, r, sess, id, http.StatusUnprocessableEntity, f, pageData{})
	case errors.Is(err, ErrNotFound):
		s.renderError(w, r, http.StatusForbidden, "Not allowed", "Only the course's teacher can post grades.")
	case err != nil:
		s.dbError(w, r, err)
	default:
		http.Redirect(w, r, fmt.Sprintf("/courses/%d?msg=graded#grade", id), http.StatusSeeOther)
	}
}

func (s *Server) gradesPage(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	gs, err := s.store.GradesFor(r.Context(), sess.User)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "grades", pageData{Title: "My grades", Nav: "grades", Data: groupGrades(gs)})
}

// courseGrades is one course's grades, for the grades page.
type courseGrades struct {
	CourseID    int64
	Code, Title string
	Grades      []Grade
}

// groupGrades groups grades (sorted by course) per course. It is pure.
func groupGrades(gs []Grade) []courseGrades {
	var out []courseGrades
	for _, g := range gs {
		if len(out) == 0 || out[len(out)-1].CourseID != g.CourseID {
			out = append(out, courseGrades{CourseID: g.CourseID, Code: g.CourseCode, Title: g.CourseTitle})
		}
		out[len(out)-1].Grades = append(out[len(out)-1].Grades, g)
	}
	return out
}

// ---- handlers: JSON API ----

func (s *Server) apiMe(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	writeJSON(w, http.StatusOK, meResponse{User: sess.User, CSRFToken: sess.CSRFToken, ExpiresAt: sess.ExpiresAt})
}

func (s *Server) apiCourses(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	cs, err := s.store.CoursesFor(r.Context(), sess.User)
	if err != nil {
		s.apiDBError(w, r, err)
		return
	}
	if cs == nil {
		cs = []Course{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"courses": cs})
}

func (s *Server) apiCourse(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok := pathID(r, "id")
	if !ok {
		s.apiDBError(w, r, ErrNotFound)
		return
	}
	d, err := s.store.Course(r.Context(), sess.User, id)
	if err == nil {
		err = s.linkMaterials(r.Context(), &d)
	}
	if err != nil {
		s.apiDBError(w, r, err)
		return
	}
	if d.Materials == nil {
		d.Materials = []Material{}
	}
	if d.Grades == nil {
		d.Grades = []Grade{}
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) apiGrades(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	gs, err := s.store.GradesFor(r.Context(), sess.User)
	if err != nil {
		s.apiDBError(w, r, err)
		return
	}
	if gs == nil {
		gs = []Grade{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"grades": gs})
}

func (s *Server) apiPostGrade(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok := pathID(r, "id")
	if !ok || !sess.User.IsTeacher() {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "only the course's teacher can post grades"})
		return
	}
	var in struct {
		StudentEmail string  `json:"student_email"`
		Assignment   string  `json:"assignment"`
		Score        float64 `json:"score"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be {\"student_email\", \"assignment\", \"score\"}"})
		return
	}
	gi, f := validateGrade(in.StudentEmail, in.Assignment, strconv.FormatFloat(in.Score, 'f', -1, 64))
	if !f.OK() {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid grade", "fields": f.Errors})
		return
	}
	err := s.store.PostGrade(r.Context(), sess.User, id, studentRef{Email: gi.Email}, gi.Assignment, gi.Score)
	switch {
	case errors.Is(err, ErrNotEnrolled):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": ErrNotEnrolled.Error()})
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "only the course's teacher can post grades"})
	case err != nil:
		s.apiDBError(w, r, err)
	default:
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	}
}
