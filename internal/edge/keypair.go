package edge

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
)

// SigningKey is the key pair signed URLs are made with: the private half
// for the app (kept in the secrets service, never on disk in the clear),
// the public half for the edge's trusted key group.
type SigningKey struct {
	// ID is the key pair ID, CloudFront-shaped ("K" and 13 characters of
	// A–Z and 2–7), derived from the public key: the Key-Pair-Id of the URLs.
	ID string
	// PublicPEM is the PKIX public key ("PUBLIC KEY").
	PublicPEM []byte
}

// NewSigningKey makes an RSA 2048 key pair, the kind CloudFront's trusted
// key groups take, and returns its private key in PKCS #8 PEM
// ("PRIVATE KEY"), as `openssl genpkey` writes it.
func NewSigningKey() ([]byte, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("make signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("make signing key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseSigningKey reads a PEM private key (PKCS #8, or PKCS #1 "RSA PRIVATE
// KEY") and returns its ID and public half.
func ParseSigningKey(privatePEM []byte) (SigningKey, error) {
	b, _ := pem.Decode(privatePEM)
	if b == nil {
		return SigningKey{}, errors.New("parse signing key: no PEM block")
	}
	var key any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return SigningKey{}, fmt.Errorf("parse signing key: a %q PEM block is not a private key; want PRIVATE KEY or RSA PRIVATE KEY", b.Type)
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("parse signing key: %w", err)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return SigningKey{}, fmt.Errorf("parse signing key: %T is not an RSA key (the app signs with RSA, as CloudFront's SDK signer does)", key)
	}
	if rk.N.BitLen() < 2048 {
		return SigningKey{}, fmt.Errorf("parse signing key: RSA %d is too short; CloudFront takes 2048 bits", rk.N.BitLen())
	}
	der, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		return SigningKey{}, fmt.Errorf("parse signing key: %w", err)
	}
	sum := sha256.Sum256(der)
	id := "K" + base32.StdEncoding.EncodeToString(sum[:])[:13]
	return SigningKey{ID: id, PublicPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}, nil
}
