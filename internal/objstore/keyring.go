package objstore

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
)

// expiredRetention is how long an expired credential is remembered, so that
// it is refused as expired rather than as unknown (as iam.Issuer does).
const expiredRetention = 6 * time.Hour

// Keyring holds the temporary credentials haven's issuer handed out, in
// memory only, so the object store process can verify signatures without the
// daemon. It implements iam.KeyLookup. It is safe for concurrent use.
type Keyring struct {
	clock   clock.Clock
	account string

	mu   sync.RWMutex
	keys map[string]iam.Credentials
}

// NewKeyring returns an empty keyring for credentials of account. A nil
// clock is the real clock.
func NewKeyring(account string, clk clock.Clock) *Keyring {
	return &Keyring{clock: clock.Or(clk), account: account, keys: map[string]iam.Credentials{}}
}

// Put adds or replaces a credential. Only temporary credentials (with a
// session token) of the keyring's account are accepted, as the store serves
// no long-term keys.
func (k *Keyring) Put(c iam.Credentials) error {
	switch {
	case c.AccessKeyID == "" || c.SecretAccessKey == "":
		return errors.New("register credentials: access key id and secret are required")
	case c.SessionToken == "":
		return fmt.Errorf("register credentials %s: no session token: the object store accepts only temporary credentials from haven's issuer", c.AccessKeyID)
	case c.Principal.Role == "":
		return fmt.Errorf("register credentials %s: the principal has no role", c.AccessKeyID)
	case c.Principal.Account != k.account:
		return fmt.Errorf("register credentials %s: principal account %q is not the store's account %q; give the issuer and the store the same account", c.AccessKeyID, c.Principal.Account, k.account)
	case c.Expiration.IsZero():
		return fmt.Errorf("register credentials %s: no expiration", c.AccessKeyID)
	}
	c.Principal.AccessKeyID = c.AccessKeyID
	now := k.clock.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, old := range k.keys {
		if now.Sub(old.Expiration) > expiredRetention {
			delete(k.keys, id)
		}
	}
	k.keys[c.AccessKeyID] = c
	return nil
}

// Lookup returns the credential for an access key id: iam.ErrUnknownKey when
// none is held, iam.ErrExpired (with the credential) when it has expired.
func (k *Keyring) Lookup(accessKeyID string) (iam.Credentials, error) {
	k.mu.RLock()
	c, ok := k.keys[accessKeyID]
	k.mu.RUnlock()
	if !ok {
		return iam.Credentials{}, iam.ErrUnknownKey
	}
	if !k.clock.Now().Before(c.Expiration) {
		return c, iam.ErrExpired
	}
	return c, nil
}

// Revoke forgets one credential and reports whether it was held.
func (k *Keyring) Revoke(accessKeyID string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.keys[accessKeyID]
	delete(k.keys, accessKeyID)
	return ok
}

// RevokeInstance forgets every credential issued to an instance and returns
// how many there were.
func (k *Keyring) RevokeInstance(instanceID string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for id, c := range k.keys {
		if c.Principal.InstanceID == instanceID {
			delete(k.keys, id)
			n++
		}
	}
	return n
}

// Live returns how many held credentials have not expired.
func (k *Keyring) Live() int {
	now := k.clock.Now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	n := 0
	for _, c := range k.keys {
		if now.Before(c.Expiration) {
			n++
		}
	}
	return n
}

// Compile-time guard: the keyring stands in for the issuer.
var _ iam.KeyLookup = (*Keyring)(nil)
