package idp

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// KeyStore keeps the provider's signing keys, private halves included, so
// tokens keep verifying across a restart. The region backs it with its
// encrypted secrets store; the blob is opaque to the store and must never be
// logged.
type KeyStore interface {
	// Load returns the blob last saved, or an empty blob (nil error) when
	// nothing was saved yet.
	Load(ctx context.Context) ([]byte, error)
	// Save replaces the blob. It must be durable when it returns.
	Save(ctx context.Context, blob []byte) error
}

// keyAlgorithm is the one signing algorithm: RS256 is the algorithm every
// OpenID Connect client must support (OpenID Connect Core §15.1), and go-oidc's
// default.
const keyAlgorithm = jose.RS256

// rsaBits is the modulus size of new signing keys.
const rsaBits = 2048

// signingKey is one key of the set. Keys are immutable once made: rotation
// builds a new set.
type signingKey struct {
	id      string
	created time.Time
	retired time.Time // zero while it signs
	private *rsa.PrivateKey
}

// keyRecord is a signingKey as stored.
type keyRecord struct {
	ID         string    `json:"kid"`
	Algorithm  string    `json:"alg"`
	Created    time.Time `json:"created"`
	Retired    time.Time `json:"retired,omitzero"`
	PrivateKey string    `json:"private_key"` // PKCS#8 DER, base64
}

// keyFile is the stored blob.
type keyFile struct {
	Version int         `json:"version"`
	Keys    []keyRecord `json:"keys"`
}

const keyFileVersion = 1

// newSigningKey makes a fresh RSA key; its id is the key's RFC 7638
// thumbprint, so the same key always has the same id.
func newSigningKey(now time.Time) (*signingKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	id, err := keyID(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return &signingKey{id: id, created: now.UTC(), private: k}, nil
}

func keyID(pub *rsa.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// encodeKeys serialises a key set for the KeyStore.
func encodeKeys(keys []*signingKey) ([]byte, error) {
	f := keyFile{Version: keyFileVersion}
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.private)
		if err != nil {
			return nil, fmt.Errorf("encode key %s: %w", k.id, err)
		}
		f.Keys = append(f.Keys, keyRecord{ID: k.id, Algorithm: string(keyAlgorithm), Created: k.created, Retired: k.retired,
			PrivateKey: base64.StdEncoding.EncodeToString(der)})
	}
	return json.Marshal(f)
}

// decodeKeys parses a stored key set. Its errors never include key material.
func decodeKeys(blob []byte) ([]*signingKey, error) {
	if len(blob) == 0 {
		return nil, nil
	}
	var f keyFile
	if err := json.Unmarshal(blob, &f); err != nil {
		return nil, errors.New("decode signing keys: the stored key set is not valid JSON")
	}
	if f.Version != keyFileVersion {
		return nil, fmt.Errorf("decode signing keys: version %d, this provider reads version %d", f.Version, keyFileVersion)
	}
	var out []*signingKey
	for i, r := range f.Keys {
		if r.Algorithm != string(keyAlgorithm) {
			return nil, fmt.Errorf("decode signing keys: key %d (%s): algorithm %q, want %s", i, r.ID, r.Algorithm, keyAlgorithm)
		}
		der, err := base64.StdEncoding.DecodeString(r.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("decode signing keys: key %d (%s): private key is not base64", i, r.ID)
		}
		pk, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("decode signing keys: key %d (%s): private key is not PKCS#8", i, r.ID)
		}
		rk, ok := pk.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("decode signing keys: key %d (%s): not an RSA key", i, r.ID)
		}
		id, err := keyID(&rk.PublicKey)
		if err != nil {
			return nil, err
		}
		if id != r.ID {
			return nil, fmt.Errorf("decode signing keys: key %d: stored id %s does not match the key (%s)", i, r.ID, id)
		}
		out = append(out, &signingKey{id: r.ID, created: r.Created.UTC(), retired: r.Retired.UTC(), private: rk})
	}
	return out, nil
}

// keyMeta is what planKeys needs of a key.
type keyMeta struct {
	ID      string
	Created time.Time
	Retired time.Time // zero: it signs
}

// keyPlan is what the key schedule does next.
type keyPlan struct {
	// Rotate: make a new key and retire the signing one (or make the first).
	Rotate bool
	// Drop lists retired keys past their retention, to unpublish.
	Drop []string
}

// planKeys decides the key schedule. It is pure.
//
//   - No key signs (a new provider, or a set that lost its signing key):
//     rotate.
//   - The signing key is rotateEvery old (rotateEvery > 0): rotate.
//   - A retired key was retired retention ago or more: drop it. Every token
//     it signed has expired by then, because retention is at least the
//     longest token lifetime (Config.Validate).
func planKeys(now time.Time, keys []keyMeta, rotateEvery, retention time.Duration) keyPlan {
	var p keyPlan
	signing := slices.IndexFunc(keys, func(k keyMeta) bool { return k.Retired.IsZero() })
	switch {
	case signing < 0:
		p.Rotate = true
	case rotateEvery > 0 && !now.Before(keys[signing].Created.Add(rotateEvery)):
		p.Rotate = true
	}
	for _, k := range keys {
		if !k.Retired.IsZero() && !now.Before(k.Retired.Add(retention)) {
			p.Drop = append(p.Drop, k.ID)
		}
	}
	return p
}

// applyKeyPlan returns the key set after p: dropped keys removed, and with
// Rotate the signing key retired at now and next appended to sign. It does not
// modify keys.
func applyKeyPlan(keys []*signingKey, p keyPlan, now time.Time, next *signingKey) []*signingKey {
	out := make([]*signingKey, 0, len(keys)+1)
	for _, k := range keys {
		if slices.Contains(p.Drop, k.id) {
			continue
		}
		if p.Rotate && k.retired.IsZero() {
			c := *k
			c.retired = now.UTC()
			k = &c
		}
		out = append(out, k)
	}
	if p.Rotate && next != nil {
		out = append(out, next)
	}
	return out
}

func metaOf(keys []*signingKey) []keyMeta {
	out := make([]keyMeta, len(keys))
	for i, k := range keys {
		out[i] = keyMeta{ID: k.id, Created: k.created, Retired: k.retired}
	}
	return out
}

// keyring is the published, immutable key set.
type keyring struct {
	keys    []*signingKey
	signing *signingKey // the one key with a zero retired time
}

func newKeyring(keys []*signingKey) (*keyring, error) {
	r := &keyring{keys: keys}
	for _, k := range keys {
		if k.retired.IsZero() {
			if r.signing != nil {
				return nil, fmt.Errorf("key set has two signing keys (%s, %s)", r.signing.id, k.id)
			}
			r.signing = k
		}
	}
	if r.signing == nil {
		return nil, errors.New("key set has no signing key")
	}
	return r, nil
}

// opSigningKey adapts a signingKey to op.SigningKey.
type opSigningKey struct{ k *signingKey }

func (s opSigningKey) SignatureAlgorithm() jose.SignatureAlgorithm { return keyAlgorithm }
func (s opSigningKey) Key() any                                    { return s.k.private }
func (s opSigningKey) ID() string                                  { return s.k.id }

// opPublicKey adapts a signingKey's public half to op.Key.
type opPublicKey struct{ k *signingKey }

func (p opPublicKey) ID() string                         { return p.k.id }
func (p opPublicKey) Algorithm() jose.SignatureAlgorithm { return keyAlgorithm }
func (p opPublicKey) Use() string                        { return "sig" }
func (p opPublicKey) Key() any                           { return &p.k.private.PublicKey }
