// Package console serves the operator's web console on a loopback port: server-rendered pages of the region map, live charts, events, alarms and drill reports, reached with a one-time token exchanged for a session cookie.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/metrics"
)

// Region is what the console reads of the region: published snapshots
// only, so a page never waits on a tier.
type Region interface {
	// Status is the region at a glance.
	Status() api.Status
	// DB is the database tier's roles, epoch and replication; false while
	// it does not run.
	DB() (api.DBStatus, bool)
	// Events returns the events q selects.
	Events(q api.EventQuery) []api.Event
	// Series is the sampler's chart points, oldest first.
	Series() []metrics.Point
	// Alarms is the alarm engine's snapshot; nil while it does not run.
	Alarms() *alarms.Status
	// AlarmHistory is one alarm's history, newest first.
	AlarmHistory(name string) ([]alarms.HistoryItem, error)
	// Reports is where drill reports are kept.
	Reports() drill.ReportStore
}

// Defaults of a Config.
const (
	DefaultTokenTTL   = 2 * time.Minute
	DefaultSessionTTL = 12 * time.Hour
	// CookieName is the session cookie.
	CookieName = "haven_console"
)

// Config configures a Console. Listen and Region are required.
type Config struct {
	// Listen is the loopback address the console is served on.
	Listen string
	// Region is what the pages show.
	Region Region
	// TokenTTL bounds how long a login token may wait to be used (once).
	// Default 2 min.
	TokenTTL time.Duration
	// SessionTTL is how long a session cookie is good for. Default 12 h.
	SessionTTL time.Duration
	// Clock stamps tokens and sessions. Default clock.Real.
	Clock clock.Clock
	// Logger receives the console's logs (component "console"). Default
	// slog.Default().
	Logger *slog.Logger
}

// Console is the web console: a loopback HTTP server, for the operator
// only. Only someone who can reach the daemon's unix socket (mode 0600)
// gets a login token (LoginURL); the token, used once within TokenTTL,
// becomes an HttpOnly, SameSite=Strict session cookie. Requests must name
// the console's own host (no DNS rebinding), and every answer carries a
// content security policy that allows the console's own script only.
type Console struct {
	cfg Config
	clk clock.Clock
	log *slog.Logger

	mu       sync.Mutex
	tokens   map[string]time.Time // one-time login tokens → expiry
	sessions map[string]time.Time // session ids → expiry
	ln       net.Listener
	srv      *http.Server
	wg       sync.WaitGroup
}

// New checks cfg and returns a console that is not serving yet.
func New(cfg Config) (*Console, error) {
	if cfg.Region == nil {
		return nil, errors.New("new console: region: must be set")
	}
	if err := metrics.CheckLoopback("console.listen", cfg.Listen); err != nil {
		return nil, fmt.Errorf("new console: %w", err)
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Console{cfg: cfg, clk: clock.Or(cfg.Clock), log: cfg.Logger.With("component", "console"),
		tokens: map[string]time.Time{}, sessions: map[string]time.Time{}}, nil
}

// Start listens on cfg.Listen and serves until Stop.
func (c *Console) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s for the console: %w", c.cfg.Listen, err)
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	c.mu.Lock()
	c.ln, c.srv = ln, srv
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("console listener stopped", "err", err)
		}
	}()
	return nil
}

// Stop closes the listener and waits for requests in flight, or ctx.
func (c *Console) Stop(ctx context.Context) error {
	c.mu.Lock()
	srv := c.srv
	c.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	c.wg.Wait()
	if err != nil {
		return fmt.Errorf("stop console: %w", err)
	}
	return nil
}

// URL is the console's address, "http://127.0.0.1:8444" ("" before Start).
func (c *Console) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return ""
	}
	return "http://" + c.ln.Addr().String()
}

func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// LoginURL mints a one-time token and returns the URL that exchanges it
// for a session: the daemon gives it only to callers of its 0600 socket.
func (c *Console) LoginURL() (string, error) {
	base := c.URL()
	if base == "" {
		return "", errors.New("console: not serving yet")
	}
	tok, err := newSecret()
	if err != nil {
		return "", fmt.Errorf("console login token: %w", err)
	}
	now := c.clk.Now()
	c.mu.Lock()
	for t, exp := range c.tokens {
		if now.After(exp) {
			delete(c.tokens, t)
		}
	}
	c.tokens[tok] = now.Add(c.cfg.TokenTTL)
	c.mu.Unlock()
	return base + "/login?token=" + url.QueryEscape(tok), nil
}

// useToken consumes a token; it is good once, before it expires.
func (c *Console) useToken(tok string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clk.Now()
	for t, exp := range c.tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
			delete(c.tokens, t)
			return now.Before(exp)
		}
	}
	return false
}

func (c *Console) newSession() (string, error) {
	id, err := newSecret()
	if err != nil {
		return "", err
	}
	now := c.clk.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for s, exp := range c.sessions {
		if now.After(exp) {
			delete(c.sessions, s)
		}
	}
	c.sessions[id] = now.Add(c.cfg.SessionTTL)
	return id, nil
}

func (c *Console) validSession(r *http.Request) bool {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for s, exp := range c.sessions {
		if subtle.ConstantTimeCompare([]byte(s), []byte(ck.Value)) == 1 {
			return c.clk.Now().Before(exp)
		}
	}
	return false
}

// csp allows the console's own script and styles and nothing from
// elsewhere (inline style attributes color the chart legends).
const csp = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// hostOK accepts only the console's own address (and localhost with its
// port): a page on another site cannot reach it through DNS rebinding.
func (c *Console) hostOK(host string) bool {
	c.mu.Lock()
	ln := c.ln
	c.mu.Unlock()
	addr := c.cfg.Listen
	if ln != nil {
		addr = ln.Addr().String()
	}
	_, port, _ := net.SplitHostPort(addr)
	return host == addr || host == "localhost:"+port || host == "127.0.0.1:"+port || host == "[::1]:"+port
}

// Handler is the console's HTTP handler: login, pages, fragments, assets.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", c.login)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(staticFS())))
	pages := http.NewServeMux()
	c.routes(pages)
	mux.Handle("/", c.requireSession(pages))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		if !c.hostOK(r.Host) {
			http.Error(w, "421 Misdirected Request: the console answers only on its own loopback address", http.StatusMisdirectedRequest)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if tok == "" || !c.useToken(tok) {
		c.log.Warn("console login refused: unknown, used or expired token", "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusUnauthorized)
		renderPage(w, pageData{Title: "Sign in", NoNav: true, Content: signInHelp("That login link is unknown, used or expired.")})
		return
	}
	id, err := c.newSession()
	if err != nil {
		http.Error(w, "500 Internal Server Error: "+err.Error(), http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(c.cfg.SessionTTL / time.Second)})
	c.log.Info("console session started", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.validSession(r) {
			if strings.HasPrefix(r.URL.Path, "/fragment/") {
				http.Error(w, "401 Unauthorized: the session ended; run `haven console` for a new link", http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusUnauthorized)
			renderPage(w, pageData{Title: "Sign in", NoNav: true, Content: signInHelp("")})
			return
		}
		next.ServeHTTP(w, r)
	})
}
