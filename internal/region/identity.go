package region

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/api/routes"
	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/idp"
	"github.com/haven-platform/haven/internal/idp/idpsecrets"
	"github.com/haven-platform/haven/internal/vpc"
)

// publicDir is Layout.PublicDir: as root, a directory of /run the
// instances can read (the state dir is closed to them); otherwise the
// CA's directory in the state dir, since they run as haven's user.
func publicDir(stateDir string, root bool) string {
	if root {
		return filepath.Join("/run/haven", vpc.Prefix(stateDir))
	}
	return filepath.Join(stateDir, "ca")
}

// startIdentity starts the identity provider: the app's client secret
// (made on first start) and the signing keys in the secrets store, a
// certificate from the region CA for the issuer, the directory from the
// spec. It runs before the secrets API, whose app role policy then admits
// the client secret.
func (r *Region) startIdentity(ctx context.Context) error {
	c := r.cfg.Identity
	if c == nil {
		return nil
	}
	store := r.t.secrets.Store()
	cs, err := idpsecrets.EnsureClientSecret(ctx, store, c.ClientSecret, "client secret of the "+r.spec.Name+" app at the region's identity provider (made by haven)")
	if err != nil {
		return err
	}
	if cs.Created {
		r.say("identity: created the client secret %s", c.ClientSecret)
	}
	tlsCfg, err := r.t.ca.ServerTLS(nil, c.CertIPs, 90*24*time.Hour)
	if err != nil {
		return fmt.Errorf("issue identity provider certificate: %w", err)
	}
	if c.PublishCA {
		if err := publishCA(r.t.ca, c.CAFile); err != nil {
			return err
		}
	}
	rotation := c.KeyRotation
	if rotation == 0 {
		rotation = -1 // by `haven identity rotate-key` only
	}
	p, err := idp.New(idp.Config{
		Issuer: c.Issuer, Name: c.Name, Addr: c.Listen, TLS: tlsCfg,
		Keys:  &idpsecrets.KeyStore{Store: store, Name: c.KeysSecret, Description: "signing keys of the region's identity provider (made by haven)"},
		Users: c.Users,
		Clients: []idp.Client{{ID: c.ClientID, Name: r.spec.Name, SecretHash: cs.Hash,
			RedirectURIs: c.RedirectURIs, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs}},
		IDTokenLifetime: c.IDTokenLifetime, KeyRotation: rotation, KeyRetention: c.KeyRetention,
		Logger: r.opts.Logger,
	})
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := p.Start(ctx); err != nil {
		return fmt.Errorf("start identity provider on %s: %w (set identity.listen to a free port)", c.Listen, err)
	}
	r.t.idp, r.t.idpSecretARN = p, cs.ARN
	st := p.Status()
	r.say("identity: OpenID provider %s (discovery %s), client %s, %d users, signing key %s in %s",
		st.Issuer, st.DiscoveryURL, c.ClientID, st.Users, st.SigningKey, c.KeysSecret)
	return nil
}

func (r *Region) stopIdentity(ctx context.Context) error {
	var errs []error
	if r.t.idp != nil {
		errs = append(errs, r.t.idp.Stop(ctx))
	}
	if c := r.cfg.Identity; c != nil && c.PublishCA {
		if err := os.RemoveAll(filepath.Dir(c.CAFile)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// publishCA writes the region CA's certificate (public) where the
// instances can read it.
func publishCA(c *ca.CA, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("publish the region CA for the instances: %w", err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("publish the region CA for the instances: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, c.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("publish the region CA for the instances: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("publish the region CA for the instances: %w", err)
	}
	return os.Rename(tmp, path)
}

// identityStatus is the identity tier in the status (nil when it does
// not run).
func (r *Region) identityStatus(v *tiers) *api.Identity {
	c := r.cfg.Identity
	if c == nil || v.idp == nil {
		return nil
	}
	st := v.idp.Status()
	out := &api.Identity{
		Issuer: st.Issuer, DiscoveryURL: st.DiscoveryURL, JWKSURL: st.Issuer + "/keys", Addr: st.Addr,
		StaffSSOOnly: c.StaffSSOOnly, KeyRotationS: c.KeyRotation.Seconds(), KeyRetentionS: c.KeyRetention.Seconds(),
		SigningKey: st.SigningKey, SigningKeysSecret: c.KeysSecret, Users: st.Users, Groups: map[string]int{},
	}
	for _, cl := range st.Clients {
		out.Clients = append(out.Clients, api.IdentityClient{ID: cl.ID, Name: cl.Name, RedirectURIs: cl.RedirectURIs,
			PostLogoutRedirectURIs: cl.PostLogoutRedirectURIs, SecretID: c.ClientSecret, SecretARN: v.idpSecretARN})
	}
	for _, k := range st.Keys {
		out.Keys = append(out.Keys, api.IdentityKey{ID: k.ID, Algorithm: k.Algorithm, Created: k.Created, Retired: k.Retired,
			PublishedUntil: k.PublishedUntil, Signing: k.Signing})
	}
	for _, g := range st.Groups {
		out.Groups[g.Name] = g.Members
	}
	return out
}

// identityTier is the identity tier as the identity routes see it.
type identityTier struct {
	r *Region
	v *tiers
}

func (a *regionAPI) identity() routes.Identity {
	v := a.r.view()
	if v.idp == nil {
		return nil
	}
	return identityTier{a.r, v}
}

// RotateKey makes the provider sign with a new key; the old one stays in
// the JWKS for the key retention, so every token it signed verifies.
func (t identityTier) RotateKey(ctx context.Context) (api.IdentityRotation, error) {
	prev := t.v.idp.Status().SigningKey
	kid, err := t.v.idp.RotateKey(ctx)
	if err != nil {
		t.r.events.Add("identity", "key-rotation-failed", prev, err.Error())
		return api.IdentityRotation{}, fmt.Errorf("rotate the identity provider's signing key: %w", err)
	}
	t.r.events.Add("identity", "key-rotated", kid, fmt.Sprintf("signing key %s replaces %s, which stays published for %s", kid, prev, t.r.cfg.Identity.KeyRetention))
	return api.IdentityRotation{Previous: prev, Signing: kid, Identity: *t.r.identityStatus(t.v)}, nil
}
