// Package idp is the region's OpenID Connect provider, standing in for the university's Okta or Entra ID, built on zitadel/oidc's op package.
package idp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/haven-platform/haven/internal/clock"
)

// ErrStopped is returned by Start after Stop.
var ErrStopped = errors.New("identity provider stopped")

// Provider is an OpenID Connect provider: discovery, a JWKS with key
// rotation, the authorization code flow with PKCE (S256, required), ID
// tokens with a groups claim, rotating refresh tokens, RP-initiated logout,
// and a login page. The protocol is zitadel/oidc's; this package supplies the
// directory, the client registry, the key schedule, the state and the pages.
type Provider struct {
	cfg       Config
	log       *slog.Logger
	st        *storage
	op        *op.Provider
	passwords map[string]secretHash // by username
	h         http.Handler
	status    atomic.Pointer[Status]
	addr      atomic.Pointer[string] // set by Start, read by publishStatus

	keyMu sync.Mutex // serialises key changes and their saves

	mu      sync.Mutex
	started bool
	stopped bool
	ln      net.Listener
	srv     *http.Server
	quit    chan struct{}
	wg      sync.WaitGroup
}

var _ interface {
	Start(context.Context) error
	Stop(context.Context) error
} = (*Provider)(nil)

var _ http.Handler = (*Provider)(nil)

// New validates cfg, applies defaults and returns a provider that is not yet
// serving and has no keys: Start loads them.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new identity provider: %w", err)
	}
	cfg = cfg.withDefaults()
	cfg.Issuer = issuerString(cfg.Issuer)
	log := cfg.Logger.With("component", "idp")
	st, err := newStorage(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("new identity provider: %w", err)
	}
	p := &Provider{cfg: cfg, log: log, st: st, passwords: map[string]secretHash{}, quit: make(chan struct{})}
	for _, u := range cfg.Users {
		h, err := parseHash(u.PasswordHash)
		if err != nil {
			return nil, fmt.Errorf("new identity provider: user %s: %w", u.Username, err)
		}
		p.passwords[u.Username] = h
	}
	// The key that encrypts opaque access tokens (and codes) lives in memory
	// only: a restart invalidates them, which is what a restart does to
	// every other piece of protocol state.
	var cryptoKey [32]byte
	_, _ = rand.Read(cryptoKey[:])
	oc := &op.Config{
		CryptoKey:                cryptoKey,
		DefaultLogoutRedirectURI: cfg.Issuer + "/?msg=signed-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedScopes:          []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, scopeGroups, oidc.ScopeOfflineAccess},
		SupportedClaims:          append(slices.Clone(op.DefaultSupportedClaims), "groups"),
	}
	p.op, err = op.NewProvider(oc, st, op.StaticIssuer(cfg.Issuer))
	if err != nil {
		return nil, fmt.Errorf("new identity provider: %w", err)
	}
	p.h = p.handler()
	p.publishStatus()
	return p, nil
}

// ServeHTTP serves the provider's pages and protocol endpoints (for a caller
// with its own listener; Start serves them on Config's).
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.h.ServeHTTP(w, r) }

// Issuer returns the issuer URL.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// Addr returns the address the provider listens on, after Start.
func (p *Provider) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return ""
	}
	return p.ln.Addr().String()
}

// Start loads the signing keys (making and saving the first one if the
// store is empty), listens with TLS, and runs the key schedule and the sweep
// until Stop.
func (p *Provider) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ErrStopped
	}
	if p.started {
		return errors.New("start identity provider: already started")
	}
	if err := p.loadKeys(ctx); err != nil {
		return fmt.Errorf("start identity provider: %w", err)
	}
	ln := p.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", p.cfg.Addr); err != nil {
			return fmt.Errorf("start identity provider: listen %s: %w", p.cfg.Addr, err)
		}
	}
	p.ln = ln
	addr := ln.Addr().String()
	p.addr.Store(&addr)
	p.srv = &http.Server{
		Handler:           p,
		TLSConfig:         p.cfg.TLS.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	// The ticker exists before Start returns, so a fake clock advanced
	// right after Start reaches it.
	ticker := p.cfg.Clock.NewTicker(p.cfg.SweepInterval)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		if err := p.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("listener stopped", "err", err)
		}
	}()
	go func() {
		defer p.wg.Done()
		p.loop(ticker)
	}()
	p.started = true
	p.publishStatus()
	p.log.Info("identity provider started", "issuer", p.cfg.Issuer, "addr", ln.Addr().String(),
		"signing_key", p.st.keys.Load().signing.id, "clients", len(p.cfg.Clients), "users", len(p.cfg.Users))
	return nil
}

// Stop stops the schedule and the listener, waiting until ctx ends for
// requests in flight.
func (p *Provider) Stop(ctx context.Context) error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	close(p.quit)
	srv := p.srv
	p.mu.Unlock()
	var err error
	if srv != nil {
		if err = srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
			err = fmt.Errorf("stop identity provider: %w", err)
		}
	}
	p.wg.Wait()
	return err
}

// loop runs the key schedule and the sweep on every tick of t until Stop.
func (p *Provider) loop(t clock.Ticker) {
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C():
			p.tick()
		}
	}
}

// tick runs one round of the schedule, recovering from a panic so one bad
// round does not end the schedule.
func (p *Provider) tick() {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("schedule round panicked", "panic", fmt.Sprint(v))
		}
	}()
	now := p.cfg.Clock.Now()
	p.st.sweep(now)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.applyKeys(ctx, false); err != nil {
		p.log.Error("key schedule: will retry next round", "err", err)
	}
}

// loadKeys reads the stored key set and brings it up to the schedule.
func (p *Provider) loadKeys(ctx context.Context) error {
	blob, err := p.cfg.Keys.Load(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	keys, err := decodeKeys(blob)
	if err != nil {
		return err
	}
	p.keyMu.Lock()
	defer p.keyMu.Unlock()
	return p.applyKeysLocked(ctx, keys, false, true)
}

// RotateKey replaces the signing key now and returns the new key's id. The
// old key stays published for KeyRetention, so tokens it signed keep
// verifying until they expire.
func (p *Provider) RotateKey(ctx context.Context) (string, error) {
	if p.st.keys.Load() == nil {
		return "", errors.New("rotate signing key: the provider has not started")
	}
	id, err := p.applyKeys(ctx, true)
	if err != nil {
		return "", fmt.Errorf("rotate signing key: %w", err)
	}
	return id, nil
}

// applyKeys runs the key schedule (forcing a rotation with force) and
// returns the signing key's id.
func (p *Provider) applyKeys(ctx context.Context, force bool) (string, error) {
	p.keyMu.Lock()
	defer p.keyMu.Unlock()
	r := p.st.keys.Load()
	if r == nil {
		return "", errors.New("no keys loaded")
	}
	if err := p.applyKeysLocked(ctx, r.keys, force, false); err != nil {
		return "", err
	}
	return p.st.keys.Load().signing.id, nil
}

// applyKeysLocked plans the key set, saves it if it changed, and publishes
// it. The store is written before the keys are published: a key that signs
// is always a key the next start will load.
func (p *Provider) applyKeysLocked(ctx context.Context, keys []*signingKey, force, initial bool) error {
	now := p.cfg.Clock.Now()
	plan := planKeys(now, metaOf(keys), p.cfg.KeyRotation, p.cfg.KeyRetention)
	plan.Rotate = plan.Rotate || force
	if plan.Rotate || len(plan.Drop) > 0 {
		var next *signingKey
		if plan.Rotate {
			var err error
			if next, err = newSigningKey(now); err != nil {
				return err
			}
		}
		keys = applyKeyPlan(keys, plan, now, next)
		blob, err := encodeKeys(keys)
		if err != nil {
			return err
		}
		if err := p.cfg.Keys.Save(ctx, blob); err != nil {
			return fmt.Errorf("save signing keys: %w", err)
		}
		if next != nil {
			p.log.Info("signing key rotated", "signing_key", next.id, "published_keys", len(keys))
		}
		for _, id := range plan.Drop {
			p.log.Info("retired signing key unpublished", "key", id)
		}
	} else if !initial {
		return nil
	}
	ring, err := newKeyring(keys)
	if err != nil {
		return err
	}
	p.st.keys.Store(ring)
	p.publishStatus()
	return nil
}
