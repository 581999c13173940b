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
	// Timeout bounds one registration. Default 5s.
	Timeout time.Duration
	// Logger receives registration failures (never secrets). Default slog.Default().
	Logger *slog.Logger
	// Clock tells which remembered credentials have expired. Default the real clock.
	Clock clock.Clock

	mu   sync.Mutex
	live map[string]iam.Credentials
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
// imds.CredentialIssuer) and registers it with the store. A store that cannot
// be reached does not fail the issue: the credential still serves the other
// APIs, the failure is logged, and Resync registers it later.
func (r *Registrar) Issue(role, instanceID string) (iam.Credentials, error) {
	c, err := r.Issuer.Issue(role, instanceID)
	if err != nil {
		return c, err
	}
	r.remember(c)
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout())
	defer cancel()
	if err := r.Store.PutCredentials(ctx, c); err != nil {
		r.log().Warn("credential not registered with the object store; Resync will retry", "access_key_id", c.AccessKeyID, "role", role, "err", err)
	}
	return c, nil
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
