package objstore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
)

// Registrar is what the region hands IMDS (and the edge) in place of the
// issuer: every credential it issues is registered with the object store
// too, so the store, in its own process, can verify requests signed with it.
// It remembers the live credentials so that a restarted store can be told
// them again (Resync). It is safe for concurrent use.
type Registrar struct {
	// Issuer issues the credentials. Required.
	Issuer *iam.Issuer
	// Store is the object store's control client. Required.
	Store *Client
	// Timeout bounds the registration Issue waits for. A credential the
	// store has not confirmed by then is still returned, and registered in
	// the background (see Issue). Keep it below what the callers of IMDS
	// wait (the AWS SDK's IMDS client waits 500ms for an answer). Default 5s.
	Timeout time.Duration
	// Logger receives registration failures (never secrets). Default slog.Default().
	Logger *slog.Logger
	// Clock tells which remembered credentials have expired. Default the real clock.
	Clock clock.Clock

	mu      sync.Mutex
	live    map[string]iam.Credentials
	pending map[string]bool // being registered in the background
	closed  bool
	quit    chan struct{}
	wg      sync.WaitGroup
}

func (r *Registrar) log() *slog.Logger {
	l := r.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "objstore-registrar")
}

func (r *Registrar) timeout() time.Duration {
	if r.Timeout <= 0 {
		return 5 * time.Second
	}
	return r.Timeout
}

// Issue issues a credential bound to {role, instanceID} (the signature of
// imds.CredentialIssuer) and registers it with the store, waiting at most
// Timeout. A store that cannot be reached, or is slow, does not fail the
// issue: the credential still serves the other APIs, and it is registered
// in the background, retried with a capped backoff until the store takes
// it, it is revoked or it expires (or Close). Resync registers every live
// credential after the store restarts.
func (r *Registrar) Issue(role, instanceID string) (iam.Credentials, error) {
	c, err := r.Issuer.Issue(role, instanceID)
	if err != nil {
		return c, err
	}
	r.remember(c)
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout())
	defer cancel()
	if err := r.Store.PutCredentials(ctx, c); err != nil {
		r.log().Warn("credential not registered with the object store yet; registering it in the background", "access_key_id", c.AccessKeyID, "role", role, "err", err)
		r.retry(c)
	}
	return c, nil
}

// retry registers c in the background until it succeeds, c is revoked or
// expires, or the registrar is closed.
func (r *Registrar) retry(c iam.Credentials) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.pending[c.AccessKeyID] {
		return
	}
	if r.quit == nil {
		r.quit = make(chan struct{})
	}
	if r.pending == nil {
		r.pending = map[string]bool{}
	}
	r.pending[c.AccessKeyID] = true
	quit := r.quit
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.pending, c.AccessKeyID)
			r.mu.Unlock()
		}()
		clk := clock.Or(r.Clock)
		for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
			select {
			case <-quit:
				return
			case <-clk.After(delay):
			}
			r.mu.Lock()
			_, live := r.live[c.AccessKeyID]
			r.mu.Unlock()
			if !live || !clk.Now().Before(c.Expiration) {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := r.Store.PutCredentials(ctx, c)
			cancel()
			if err == nil {
				r.log().Info("credential registered with the object store", "access_key_id", c.AccessKeyID, "role", c.Principal.Role)
				return
			}
		}
	}()
}

// Close stops the background registrations and waits for them.
func (r *Registrar) Close() {
	r.mu.Lock()
	r.closed = true
	if r.quit != nil {
		close(r.quit)
		r.quit = nil
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *Registrar) remember(c iam.Credentials) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		r.live = map[string]iam.Credentials{}
	}
	for id, old := range r.live {
		if !clock.Or(r.Clock).Now().Before(old.Expiration) {
			delete(r.live, id)
		}
	}
	r.live[c.AccessKeyID] = c
}

// RevokeInstance forgets an instance's credentials in the issuer and in the
// store (call it when the instance terminates). It returns how many the
// issuer held.
func (r *Registrar) RevokeInstance(ctx context.Context, instanceID string) (int, error) {
	n := r.Issuer.RevokeInstance(instanceID)
	r.mu.Lock()
	for id, c := range r.live {
		if c.Principal.InstanceID == instanceID {
			delete(r.live, id)
		}
	}
	r.mu.Unlock()
	_, err := r.Store.RevokeInstance(ctx, instanceID)
	return n, err
}

// Resync registers every live credential with the store again: call it
// after the store was (re)started or adopted.
func (r *Registrar) Resync(ctx context.Context) error {
	r.mu.Lock()
	var todo []iam.Credentials
	for id, c := range r.live {
		if clock.Or(r.Clock).Now().Before(c.Expiration) {
			todo = append(todo, c)
		} else {
			delete(r.live, id)
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, c := range todo {
		if err := r.Store.PutCredentials(ctx, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
