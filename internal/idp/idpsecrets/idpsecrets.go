// Package idpsecrets keeps the identity provider's signing keys and its clients' secrets in the region's encrypted secrets store.
package idpsecrets

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"github.com/haven-platform/haven/internal/idp"
	"github.com/haven-platform/haven/internal/secrets"
)

// KeyStore is an idp.KeyStore over one secret of the store: Load reads its
// AWSCURRENT version (nothing saved yet: nil), Save puts a new version,
// creating the secret on the first save. The blob holds private keys: it
// is never logged, and on disk it is only in the sealed store.
type KeyStore struct {
	// Store is the secrets store. Required.
	Store *secrets.Store
	// Name is the secret's name, e.g. "courses/idp-signing-keys". Required.
	Name string
	// Description is the secret's description on creation. Default "".
	Description string

	mu sync.Mutex // orders saves, so a create never races another
}

var _ idp.KeyStore = (*KeyStore)(nil)

// Load returns the saved blob, or nil when nothing was saved yet.
func (k *KeyStore) Load(context.Context) ([]byte, error) {
	out, err := k.Store.GetSecretValue(secrets.GetSecretValueInput{SecretId: k.Name})
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load signing keys from secret %s: %w", k.Name, err)
	}
	if out.SecretString == nil {
		return nil, fmt.Errorf("load signing keys from secret %s: it holds no string", k.Name)
	}
	return []byte(*out.SecretString), nil
}

// Save stores blob as the secret's new current version.
func (k *KeyStore) Save(_ context.Context, blob []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := string(blob)
	_, err := k.Store.PutSecretValue(secrets.PutSecretValueInput{SecretId: k.Name, SecretString: &s})
	if notFound(err) {
		_, err = k.Store.CreateSecret(secrets.CreateSecretInput{Name: k.Name, Description: k.Description, SecretString: &s})
	}
	if err != nil {
		return fmt.Errorf("save signing keys in secret %s: %w", k.Name, err)
	}
	return nil
}

// ClientSecret is a client's secret as the provider's registration needs
// it: where it is, and its hash.
type ClientSecret struct {
	// ARN is the secret's ARN: the app reads it by this ARN or its name.
	ARN string
	// Hash is the secret's argon2id hash (idp.HashSecret), for idp.Client.
	Hash string
	// Created is true when this call made the secret.
	Created bool
}

// EnsureClientSecret returns the client secret called name, creating one
// of 32 random bytes (base64url) on first use. The plaintext is hashed
// here and never returned: the app reads it from the store itself.
func EnsureClientSecret(_ context.Context, store *secrets.Store, name, description string) (ClientSecret, error) {
	var out ClientSecret
	got, err := store.GetSecretValue(secrets.GetSecretValueInput{SecretId: name})
	if notFound(err) {
		buf := make([]byte, 32)
		if _, err := rand.Read(buf); err != nil {
			return out, fmt.Errorf("make client secret %s: %w", name, err)
		}
		s := base64.RawURLEncoding.EncodeToString(buf)
		created, err := store.CreateSecret(secrets.CreateSecretInput{Name: name, Description: description, SecretString: &s})
		if err != nil {
			return out, fmt.Errorf("create client secret %s: %w", name, err)
		}
		out.Created = true
		got = secrets.GetSecretValueOutput{ARN: created.ARN, SecretString: &s}
	} else if err != nil {
		return out, fmt.Errorf("read client secret %s: %w", name, err)
	}
	if got.SecretString == nil || *got.SecretString == "" {
		return out, fmt.Errorf("read client secret %s: it holds no string; delete it and restart to make a new one", name)
	}
	out.ARN = got.ARN
	if out.Hash, err = idp.HashSecret(*got.SecretString); err != nil {
		return out, fmt.Errorf("hash client secret %s: %w", name, err)
	}
	return out, nil
}

func notFound(err error) bool {
	var apiErr *secrets.APIError
	return errors.As(err, &apiErr) && apiErr.Code == secrets.CodeResourceNotFound
}
