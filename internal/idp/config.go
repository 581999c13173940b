package idp

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// Defaults applied by Config.withDefaults; each Config field documents its own.
const (
	DefaultAddr                 = "127.0.0.1:0"
	DefaultName                 = "University sign-in"
	DefaultIDTokenLifetime      = time.Hour
	DefaultAccessTokenLifetime  = time.Hour
	DefaultRefreshTokenLifetime = 24 * time.Hour
	DefaultCodeLifetime         = time.Minute
	DefaultLoginLifetime        = 10 * time.Minute
	DefaultSessionLifetime      = 8 * time.Hour
	DefaultKeyRotation          = 90 * 24 * time.Hour
	DefaultKeyRetention         = 24 * time.Hour
	DefaultSweepInterval        = time.Minute
	DefaultMaxFailedLogins      = 5
	DefaultFailedLoginWindow    = 15 * time.Minute
)

// The groups the seed's users belong to: teachers are in GroupStaff and
// students in GroupStudents. Nothing in the provider depends on these names;
// they are the names the courses app maps to roles by default.
const (
	GroupStaff    = "staff"
	GroupStudents = "students"
)

// Config configures a Provider. The zero value of every field except Issuer,
// TLS, Keys, Users and Clients selects the documented default.
type Config struct {
	// Issuer is the provider's issuer URL as clients reach it, e.g.
	// "https://127.0.0.1:9443": https, a host and an optional port, no path,
	// query or fragment. It is the "iss" of every token. Required.
	Issuer string
	// Name is the provider's name on its pages. Default "University sign-in".
	Name string
	// Listener, if set, is where the provider serves (TLS is layered on it).
	// Default nil: listen on Addr.
	Listener net.Listener
	// Addr is the listen address when Listener is nil. Default "127.0.0.1:0".
	Addr string
	// TLS is the server TLS configuration; it must carry a certificate valid
	// for the issuer's host. Required: an OpenID provider is HTTPS only.
	TLS *tls.Config
	// Keys keeps the signing keys across restarts. Required.
	Keys KeyStore
	// Users is the directory: who may sign in, and their groups. At least one.
	Users []User
	// Clients are the registered relying parties. At least one.
	Clients []Client
	// IDTokenLifetime is how long an ID token is valid. Default 1h (Okta's
	// and Entra ID's default).
	IDTokenLifetime time.Duration
	// AccessTokenLifetime is how long an access token is valid. Default 1h.
	AccessTokenLifetime time.Duration
	// RefreshTokenLifetime is how long a refresh token is valid; each use
	// rotates it and the new one gets a full lifetime. Default 24h.
	RefreshTokenLifetime time.Duration
	// CodeLifetime is how long an authorization code may wait to be
	// exchanged. Default 1m (RFC 6749 allows at most 10m).
	CodeLifetime time.Duration
	// LoginLifetime is how long a user has to complete the login page once
	// a client has sent them. Default 10m.
	LoginLifetime time.Duration
	// SessionLifetime is how long a sign-in at the provider lasts, during
	// which further clients get a code without the login page (single
	// sign-on). Default 8h.
	SessionLifetime time.Duration
	// KeyRotation is how often the signing key is replaced automatically;
	// RotateKey replaces it at once. Default 90 days. Negative: only by
	// RotateKey.
	KeyRotation time.Duration
	// KeyRetention is how long a replaced key stays published in the JWKS
	// (and so verifiable) after it stopped signing. It must be at least the
	// longest token lifetime, so every token a key signed verifies until it
	// expires; it also bounds how old an id_token_hint sent to end_session may
	// be. Default 24h.
	KeyRetention time.Duration
	// SweepInterval is how often the provider checks its key schedule and
	// drops expired codes, tokens and sessions. Default 1m.
	SweepInterval time.Duration
	// MaxFailedLogins is how many wrong passwords one account may take within
	// FailedLoginWindow before the login page refuses it until the window
	// ends. Default 5.
	MaxFailedLogins int
	// FailedLoginWindow is the window of MaxFailedLogins. Default 15m.
	FailedLoginWindow time.Duration
	// Clock drives expiry (codes, logins, sessions, tokens) and the key
	// schedule. The "iat" and "exp" of ID tokens are stamped by zitadel/oidc
	// from the wall clock. Default the real clock.
	Clock clock.Clock
	// Logger receives operational logs, never a password, secret or token.
	// zitadel/oidc itself logs protocol errors through slog.Default().
	// Default slog.Default().
	Logger *slog.Logger
}

// User is one account of the directory.
type User struct {
	// Username is what the user types to sign in, e.g.
	// "teacher1@example.edu"; compared case-insensitively. Required, unique.
	Username string
	// Subject is the stable "sub" claim, never reassigned. Default: derived
	// from the lower-cased username ("u" and 24 hex digits of its SHA-256).
	Subject string
	// Name is the display name ("name" claim). Default: the username.
	Name string
	// Email is the "email" claim, always marked verified: the directory is
	// the authority. Default: the username.
	Email string
	// Groups are the "groups" claim, e.g. ["staff"]. Default none.
	Groups []string
	// PasswordHash is the password's argon2id PHC string (see HashSecret) or
	// bcrypt hash. Required: a plaintext password is never accepted.
	PasswordHash string
}

// Client is one registered relying party (a confidential web application
// using the authorization code flow with PKCE).
type Client struct {
	// ID is the client_id. Required, unique.
	ID string
	// Name is shown on the login page ("to continue to Name"). Default: ID.
	Name string
	// SecretHash is the client secret's argon2id PHC string (see HashSecret)
	// or bcrypt hash. Required.
	SecretHash string
	// RedirectURIs are the exact redirect_uri values the client may use:
	// https, or http on a loopback address. At least one.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the exact post_logout_redirect_uri values
	// end_session accepts from this client. Default none.
	PostLogoutRedirectURIs []string
}

// withDefaults returns a copy of c with every unset field set to its default.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDur(&c.IDTokenLifetime, DefaultIDTokenLifetime)
	setDur(&c.AccessTokenLifetime, DefaultAccessTokenLifetime)
	setDur(&c.RefreshTokenLifetime, DefaultRefreshTokenLifetime)
	setDur(&c.CodeLifetime, DefaultCodeLifetime)
	setDur(&c.LoginLifetime, DefaultLoginLifetime)
	setDur(&c.SessionLifetime, DefaultSessionLifetime)
	setDur(&c.KeyRotation, DefaultKeyRotation)
	setDur(&c.KeyRetention, DefaultKeyRetention)
	setDur(&c.SweepInterval, DefaultSweepInterval)
	setDur(&c.FailedLoginWindow, DefaultFailedLoginWindow)
	if c.MaxFailedLogins == 0 {
		c.MaxFailedLogins = DefaultMaxFailedLogins
	}
	c.Clock = clock.Or(c.Clock)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Users = slices.Clone(c.Users)
	for i := range c.Users {
		u := &c.Users[i]
		u.Username = normUsername(u.Username)
		if u.Subject == "" && u.Username != "" {
			sum := sha256.Sum256([]byte(u.Username))
			u.Subject = "u" + hex.EncodeToString(sum[:12])
		}
		if u.Name == "" {
			u.Name = u.Username
		}
		if u.Email == "" {
			u.Email = u.Username
		}
		u.Groups = slices.Clone(u.Groups)
	}
	c.Clients = slices.Clone(c.Clients)
	for i := range c.Clients {
		cl := &c.Clients[i]
		if cl.Name == "" {
			cl.Name = cl.ID
		}
		cl.RedirectURIs = slices.Clone(cl.RedirectURIs)
		cl.PostLogoutRedirectURIs = slices.Clone(cl.PostLogoutRedirectURIs)
	}
	return c
}

func normUsername(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// Validate reports every invalid field of c (after defaults are applied),
// each error naming the field and what is allowed. It never includes a hash.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("idp.%s: "+format, append([]any{field}, args...)...))
	}
	if err := validateIssuer(c.Issuer); err != nil {
		bad("issuer", "%v", err)
	}
	if c.Listener == nil {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			bad("addr", "must be host:port, got %q", c.Addr)
		}
	}
	if c.TLS == nil || (len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil) {
		bad("tls", "must carry a server certificate: an OpenID provider serves HTTPS only")
	}
	if c.Keys == nil {
		bad("keys", "required: the signing keys' store")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
		lo    time.Duration
		hi    time.Duration
	}{
		{"id_token_lifetime", c.IDTokenLifetime, time.Minute, 24 * time.Hour},
		{"access_token_lifetime", c.AccessTokenLifetime, time.Minute, 24 * time.Hour},
		{"refresh_token_lifetime", c.RefreshTokenLifetime, time.Minute, 90 * 24 * time.Hour},
		{"code_lifetime", c.CodeLifetime, time.Second, 10 * time.Minute},
		{"login_lifetime", c.LoginLifetime, time.Minute, time.Hour},
		{"session_lifetime", c.SessionLifetime, time.Minute, 30 * 24 * time.Hour},
		{"key_retention", c.KeyRetention, time.Minute, 365 * 24 * time.Hour},
		{"sweep_interval", c.SweepInterval, time.Millisecond, time.Hour},
		{"failed_login_window", c.FailedLoginWindow, time.Second, 24 * time.Hour},
	} {
		if d.v < d.lo || d.v > d.hi {
			bad(d.field, "must be %s to %s, got %s", d.lo, d.hi, d.v)
		}
	}
	if c.KeyRotation > 0 && c.KeyRotation < time.Minute {
		bad("key_rotation", "must be at least 1m, or negative for rotation by hand only, got %s", c.KeyRotation)
	}
	if longest := max(c.IDTokenLifetime, c.AccessTokenLifetime); c.KeyRetention < longest {
		bad("key_retention", "must be at least the longest token lifetime (%s), so a token verifies until it expires; got %s", longest, c.KeyRetention)
	}
	if c.MaxFailedLogins < 1 || c.MaxFailedLogins > 1000 {
		bad("max_failed_logins", "must be 1-1000, got %d", c.MaxFailedLogins)
	}
	if len(c.Users) == 0 {
		bad("users", "at least one user is required")
	}
	names, subjects := map[string]bool{}, map[string]bool{}
	for i, u := range c.Users {
		f := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Username == "":
			bad(f+".username", "required")
		case len(u.Username) > 254 || strings.ContainsAny(u.Username, " \t\r\n"):
			bad(f+".username", "must be at most 254 characters without spaces, got %q", u.Username)
		case names[u.Username]:
			bad(f+".username", "%q is listed twice", u.Username)
		}
		names[u.Username] = true
		if subjects[u.Subject] {
			bad(f+".subject", "%q is used twice", u.Subject)
		}
		subjects[u.Subject] = true
		if len(u.Subject) > 255 {
			bad(f+".subject", "must be at most 255 characters")
		}
		if _, err := parseHash(u.PasswordHash); err != nil {
			bad(f+".password_hash", "%v: store a hash from idp.HashSecret, never a password", err)
		}
		for j, g := range u.Groups {
			if g == "" || strings.ContainsAny(g, "\r\n") {
				bad(fmt.Sprintf("%s.groups[%d]", f, j), "must be a non-empty single-line name")
			}
		}
	}
	if len(c.Clients) == 0 {
		bad("clients", "at least one client is required")
	}
	ids := map[string]bool{}
	for i, cl := range c.Clients {
		f := fmt.Sprintf("clients[%d]", i)
		switch {
		case cl.ID == "" || strings.ContainsAny(cl.ID, " :\t\r\n"):
			bad(f+".id", "required, without spaces or colons, got %q", cl.ID)
		case ids[cl.ID]:
			bad(f+".id", "%q is registered twice", cl.ID)
		}
		ids[cl.ID] = true
		if _, err := parseHash(cl.SecretHash); err != nil {
			bad(f+".secret_hash", "%v: store a hash from idp.HashSecret, never the secret", err)
		}
		if len(cl.RedirectURIs) == 0 {
			bad(f+".redirect_uris", "at least one is required")
		}
		for j, u := range cl.RedirectURIs {
			if err := validateClientURI(u); err != nil {
				bad(fmt.Sprintf("%s.redirect_uris[%d]", f, j), "%v", err)
			}
		}
		for j, u := range cl.PostLogoutRedirectURIs {
			if err := validateClientURI(u); err != nil {
				bad(fmt.Sprintf("%s.post_logout_redirect_uris[%d]", f, j), "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

func validateIssuer(s string) error {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return errors.New("required, e.g. https://127.0.0.1:9443")
	case err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil:
		return fmt.Errorf("must be an https URL with a host, got %q", s)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("must have no path, query or fragment, got %q", s)
	}
	return nil
}

// validateClientURI accepts an absolute https URL, or http on a loopback
// address (a developer's machine), without a fragment (RFC 6749 §3.1.2).
func validateClientURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("must be an absolute URL without a fragment, got %q", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if h := u.Hostname(); h == "localhost" || net.ParseIP(h).IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("must be https (or http on a loopback address), got %q", s)
}

// issuerString returns the issuer without a trailing slash.
func issuerString(s string) string { return strings.TrimSuffix(s, "/") }
