package api

import (
	"context"
	"net/http"
	"time"
)

// Identity is the identity tier in the status: the OpenID provider's
// metadata, the app's client registration and the published signing keys.
// It holds no secret, hash or token.
type Identity struct {
	// Issuer is the issuer URL, the "iss" of every token.
	Issuer string `json:"issuer"`
	// DiscoveryURL is where clients read the provider's metadata.
	DiscoveryURL string `json:"discovery_url"`
	// JWKSURL is where clients read the published keys.
	JWKSURL string `json:"jwks_url"`
	// Addr is the provider's listen address.
	Addr string `json:"addr"`
	// Clients are the registered clients.
	Clients []IdentityClient `json:"clients"`
	// StaffSSOOnly is true when the app refuses staff password logins.
	StaffSSOOnly bool `json:"staff_sso_only"`
	// KeyRotationS is the signing key's rotation period in seconds (0: by
	// hand only); KeyRetentionS how long a replaced key stays published.
	KeyRotationS  float64 `json:"key_rotation_s"`
	KeyRetentionS float64 `json:"key_retention_s"`
	// SigningKey is the kid of the key that signs now.
	SigningKey string `json:"signing_key"`
	// SigningKeysSecret is the secret that holds the keys (sealed).
	SigningKeysSecret string `json:"signing_keys_secret"`
	// Keys are the published keys, oldest first.
	Keys []IdentityKey `json:"keys"`
	// Users is the directory's size; Groups its groups' member counts.
	Users  int            `json:"users"`
	Groups map[string]int `json:"groups"`
}

// IdentityClient is one registered client of the provider.
type IdentityClient struct {
	ID                     string   `json:"client_id"`
	Name                   string   `json:"name"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
	// SecretID is the client secret's name in the secrets service (the
	// app reads it like the database credential); SecretARN its ARN.
	SecretID  string `json:"secret_id"`
	SecretARN string `json:"secret_arn"`
}

// IdentityKey is one published signing key.
type IdentityKey struct {
	ID             string    `json:"kid"`
	Algorithm      string    `json:"alg"`
	Created        time.Time `json:"created"`
	Retired        time.Time `json:"retired,omitzero"`
	PublishedUntil time.Time `json:"published_until,omitzero"`
	Signing        bool      `json:"signing"`
}

// IdentityRotation is the answer to a signing key rotation.
type IdentityRotation struct {
	// Previous is the kid that signed before; Signing the one that signs now.
	Previous string `json:"previous"`
	Signing  string `json:"signing"`
	// Identity is the tier after the rotation.
	Identity Identity `json:"identity"`
}

// IdentityRotateKey makes the provider sign with a new key at once; the
// old one stays published for the key retention.
func (c *Client) IdentityRotateKey(ctx context.Context) (IdentityRotation, error) {
	var out IdentityRotation
	err := c.do(ctx, http.MethodPost, "/v1/identity/rotate-key", struct{}{}, &out)
	return out, err
}
