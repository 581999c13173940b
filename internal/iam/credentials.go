// Package iam issues temporary role credentials, evaluates access policies and verifies SigV4-signed requests.
package iam

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// DefaultTTL is the lifetime of issued credentials when IssuerConfig.TTL is zero (as on EC2).
const DefaultTTL = time.Hour

// expiredRetention is how long an expired credential is remembered so that it is
// refused with ExpiredTokenException rather than reported as unknown.
const expiredRetention = 6 * time.Hour

// Sentinel errors returned by Issuer.Lookup.
var (
	// ErrUnknownKey means no credential with that access key id was issued (or it was revoked).
	ErrUnknownKey = errors.New("unknown access key id")
	// ErrExpired means the credential existed but is past its expiration.
	ErrExpired = errors.New("credentials expired")
)

// Principal is the identity a credential is bound to.
type Principal struct {
	// AccessKeyID is the key the request was signed with.
	AccessKeyID string `json:"accessKeyId"`
	// Role is the role name the credential belongs to (for the operator, the operator role).
	Role string `json:"role"`
	// InstanceID is the instance the credential was issued to; empty for the operator.
	InstanceID string `json:"instance,omitempty"`
	// Operator is true for the CLI operator identity.
	Operator bool `json:"operator,omitempty"`
	// Account is the account id the role lives in.
	Account string `json:"account"`
}

// ARN returns the principal as an STS assumed-role ARN, as CloudTrail shows it.
func (p Principal) ARN() string {
	session := p.InstanceID
	if p.Operator {
		session = "operator"
	}
	return fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", p.Account, p.Role, session)
}

// Credentials is one set of temporary credentials, shaped like AWS's.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Issued is when the credentials were created (IMDS LastUpdated).
	Issued time.Time
	// Expiration is when they stop being accepted.
	Expiration time.Time
	// Principal is the identity they are bound to.
	Principal Principal
}

// IssuerConfig configures an Issuer.
type IssuerConfig struct {
	// TTL is the lifetime of issued credentials. Default 1h.
	TTL time.Duration
	// Account is the account id placed in principals and ARNs. Default "000000000000".
	Account string
	// OperatorRole is the role name of the operator identity. Default "haven-operator".
	OperatorRole string
	// Clock is the time source. Default the wall clock.
	Clock clock.Clock
	// Logger receives issue/revoke events (never secrets). Default slog.Default().
	Logger *slog.Logger
	// OnChange, if set, is called (outside the issuer's lock) after every
	// issue and revocation, for a caller that persists Snapshot so a
	// restarted issuer knows the credentials already handed out. Default none.
	OnChange func()
}

// Issuer issues temporary credentials and resolves access key ids back to them.
// Credentials live in memory; Snapshot and Restore carry them across a
// restart (sealed at rest by the caller).
type Issuer struct {
	cfg IssuerConfig
	log *slog.Logger

	mu    sync.Mutex
	creds map[string]*Credentials
}

// NewIssuer returns an Issuer with defaults filled in.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Account == "" {
		cfg.Account = "000000000000"
	}
	if cfg.OperatorRole == "" {
		cfg.OperatorRole = "haven-operator"
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	i := &Issuer{cfg: cfg, log: cfg.Logger.With("component", "iam"), creds: map[string]*Credentials{}}
	if err := i.Validate(); err != nil {
		return nil, err
	}
	return i, nil
}

// Validate checks the configuration.
func (i *Issuer) Validate() error {
	if i.cfg.TTL < time.Second {
		return fmt.Errorf("iam.ttl: must be ≥ 1s, got %s", i.cfg.TTL)
	}
	if len(i.cfg.Account) != 12 {
		return fmt.Errorf("iam.account: must be 12 digits, got %q", i.cfg.Account)
	}
	for _, c := range i.cfg.Account {
		if c < '0' || c > '9' {
			return fmt.Errorf("iam.account: must be 12 digits, got %q", i.cfg.Account)
		}
	}
	return nil
}

// TTL returns the lifetime of issued credentials.
func (i *Issuer) TTL() time.Duration { return i.cfg.TTL }

// Account returns the account id.
func (i *Issuer) Account() string { return i.cfg.Account }

// OperatorRole returns the operator's role name.
func (i *Issuer) OperatorRole() string { return i.cfg.OperatorRole }

// Issue creates a new credential bound to {role, instanceID}.
func (i *Issuer) Issue(role, instanceID string) (Credentials, error) {
	if role == "" || instanceID == "" {
		return Credentials{}, fmt.Errorf("issue credentials: role and instance id are required")
	}
	return i.issue(Principal{Role: role, InstanceID: instanceID, Account: i.cfg.Account}, i.cfg.TTL)
}

// IssueOperator creates a credential for the operator identity (the CLI), valid for ttl
// (the issuer's TTL when zero).
func (i *Issuer) IssueOperator(ttl time.Duration) (Credentials, error) {
	if ttl <= 0 {
		ttl = i.cfg.TTL
	}
	return i.issue(Principal{Role: i.cfg.OperatorRole, Operator: true, Account: i.cfg.Account}, ttl)
}

func (i *Issuer) issue(p Principal, ttl time.Duration) (Credentials, error) {
	akid, err := randomString("ASIA", 16, upperAlnum)
	if err != nil {
		return Credentials{}, fmt.Errorf("issue credentials: %w", err)
	}
	secret, err := randomString("", 40, secretAlphabet)
	if err != nil {
		return Credentials{}, fmt.Errorf("issue credentials: %w", err)
	}
	tok := make([]byte, 96)
	if _, err := rand.Read(tok); err != nil {
		return Credentials{}, fmt.Errorf("issue credentials: %w", err)
	}
	now := i.cfg.Clock.Now().UTC().Truncate(time.Second)
	p.AccessKeyID = akid
	c := &Credentials{
		AccessKeyID:     akid,
		SecretAccessKey: secret,
		SessionToken:    base64.StdEncoding.EncodeToString(tok),
		Issued:          now,
		Expiration:      now.Add(ttl),
		Principal:       p,
	}
	i.mu.Lock()
	i.sweepLocked(now)
	i.creds[akid] = c
	i.mu.Unlock()
	i.log.Info("credentials issued", "access_key_id", akid, "role", p.Role, "instance", p.InstanceID, "expiration", c.Expiration)
	i.changed()
	return *c, nil
}

func (i *Issuer) changed() {
	if i.cfg.OnChange != nil {
		i.cfg.OnChange()
	}
}

// Snapshot returns every credential still accepted or still remembered as
// expired (the secret keys included: seal them before they touch a disk).
func (i *Issuer) Snapshot() []Credentials {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweepLocked(i.cfg.Clock.Now())
	out := make([]Credentials, 0, len(i.creds))
	for _, c := range i.creds {
		out = append(out, *c)
	}
	return out
}

// Restore adds credentials an earlier issuer handed out (its Snapshot),
// so that they keep being accepted until they expire; those of another
// account are ignored. It returns how many it restored.
func (i *Issuer) Restore(creds []Credentials) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	n := 0
	for _, c := range creds {
		if c.AccessKeyID == "" || c.Principal.Account != i.cfg.Account {
			continue
		}
		cc := c
		i.creds[c.AccessKeyID] = &cc
		n++
	}
	i.sweepLocked(i.cfg.Clock.Now())
	return n
}

// Lookup returns the credential for an access key id. It returns ErrUnknownKey when
// no such key exists and ErrExpired (with the credential) when it has expired.
func (i *Issuer) Lookup(accessKeyID string) (Credentials, error) {
	i.mu.Lock()
	c, ok := i.creds[accessKeyID]
	i.mu.Unlock()
	if !ok {
		return Credentials{}, ErrUnknownKey
	}
	if !i.cfg.Clock.Now().Before(c.Expiration) {
		return *c, ErrExpired
	}
	return *c, nil
}

// Revoke forgets one credential; later requests signed with it are refused as unknown.
func (i *Issuer) Revoke(accessKeyID string) {
	i.mu.Lock()
	delete(i.creds, accessKeyID)
	i.mu.Unlock()
	i.changed()
}

// RevokeInstance forgets every credential issued to an instance (call it when the
// instance terminates). It returns how many were revoked.
func (i *Issuer) RevokeInstance(instanceID string) int {
	i.mu.Lock()
	n := 0
	for k, c := range i.creds {
		if c.Principal.InstanceID == instanceID {
			delete(i.creds, k)
			n++
		}
	}
	i.mu.Unlock()
	if n > 0 {
		i.changed()
	}
	return n
}

func (i *Issuer) sweepLocked(now time.Time) {
	for k, c := range i.creds {
		if now.Sub(c.Expiration) > expiredRetention {
			delete(i.creds, k)
		}
	}
}

const (
	upperAlnum     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// randomString returns prefix followed by n characters drawn uniformly from alphabet.
func randomString(prefix string, n int, alphabet string) (string, error) {
	out := make([]byte, 0, len(prefix)+n)
	out = append(out, prefix...)
	buf := make([]byte, n*2)
	limit := 256 - 256%len(alphabet)
	for len(out) < len(prefix)+n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("read random: %w", err)
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out = append(out, alphabet[int(b)%len(alphabet)])
			if len(out) == len(prefix)+n {
				break
			}
		}
	}
	return string(out), nil
}
