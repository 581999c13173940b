// Package dbsecret is the database credential secret: its RDS-shaped value, its bootstrap, and the alternating-users rotation that Secrets Manager runs for PostgreSQL.
package dbsecret

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/secrets"
)

// Strategies for Config.Strategy.
const (
	AlternatingUsers = "alternating_users"
	SingleUser       = "single_user"
)

// Roles is what the credential needs of the database tier (*pgha.Cluster).
type Roles interface {
	// EnsureLoginRoles makes owner a role nobody logs in as and each login
	// a member acting as it.
	EnsureLoginRoles(ctx context.Context, owner string, logins []string) error
	// SetPassword sets role's password (the server gets only a verifier).
	SetPassword(ctx context.Context, role, password string) error
}

// Config configures a Credential.
type Config struct {
	// Name is the secret's name, e.g. "courses/db". Required.
	Name string
	// Owner is the role that owns the app's database; the logins are
	// Owner_a and Owner_b. Required.
	Owner string
	// Database is the app's database. Required.
	Database string
	// Endpoint is the database endpoint apps connect to (host:port). Required.
	Endpoint string
	// Strategy is AlternatingUsers (default: no login ever fails) or SingleUser.
	Strategy string
	// Description is the secret's description. Default: none.
	Description string
	// Store and Driver are the secrets service's. Required.
	Store  *secrets.Store
	Driver *secrets.Driver
	// Roles changes passwords in the database. Required.
	Roles Roles
	// NewPassword generates a password (pgha.NewPassword). Required.
	NewPassword func() string
	// TestLogin logs in through addr as user (pgha.TestLogin). Required.
	TestLogin func(ctx context.Context, addr, database, user, password string) (bool, string, error)
	// Failpoints may crash a rotation between setSecret and finishSecret
	// (failpoint.SecretsCrashAfterSetSecret). Default: none.
	Failpoints secrets.Failpoint
	// OnStep, when set, is told each rotation step as it finishes. Default: none.
	OnStep func(step, user string)
}

// Credential is the database secret and its rotation (a secrets.Rotator).
type Credential struct {
	cfg Config
	arn string
	// strategy is cfg.Strategy, which SetStrategy changes while
	// rotations run.
	strategy atomic.Pointer[string]
	// at is cfg.Endpoint and cfg.Database, which SetEndpoint changes
	// while rotations run.
	at atomic.Pointer[location]
}

// location is where the secret says the database is.
type location struct{ endpoint, database string }

var _ secrets.Rotator = (*Credential)(nil)

// New returns the credential and registers it as its secret's rotator.
func New(cfg Config) *Credential {
	if cfg.Strategy == "" {
		cfg.Strategy = AlternatingUsers
	}
	c := &Credential{cfg: cfg}
	c.strategy.Store(&cfg.Strategy)
	c.at.Store(&location{cfg.Endpoint, cfg.Database})
	cfg.Driver.Register(cfg.Name, c)
	return c
}

// SetStrategy makes the next rotation use strategy (AlternatingUsers or
// SingleUser).
func (c *Credential) SetStrategy(strategy string) error {
	if strategy != AlternatingUsers && strategy != SingleUser {
		return fmt.Errorf("set rotation strategy of %s: %q is neither %s nor %s", c.cfg.Name, strategy, AlternatingUsers, SingleUser)
	}
	c.strategy.Store(&strategy)
	return nil
}

// SetEndpoint makes endpoint (host:port) and database where the secret
// says the database is: Follow then writes them into AWSCURRENT, and
// rotations test their logins there.
func (c *Credential) SetEndpoint(endpoint, database string) error {
	if _, err := netip.ParseAddrPort(endpoint); err != nil {
		return fmt.Errorf("set endpoint of %s: %w", c.cfg.Name, err)
	}
	if database == "" {
		return fmt.Errorf("set endpoint of %s: the database name is empty", c.cfg.Name)
	}
	c.at.Store(&location{endpoint, database})
	return nil
}

// Endpoint is the endpoint the secret names (after Follow).
func (c *Credential) Endpoint() string { return c.at.Load().endpoint }

// Users are the two alternating login roles.
func (c *Credential) Users() [2]string {
	return [2]string{c.cfg.Owner + "_a", c.cfg.Owner + "_b"}
}

// ARN is the secret's ARN (after Bootstrap).
func (c *Credential) ARN() string { return c.arn }

// Value is the RDS-shaped secret value.
type Value struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	DBName   string `json:"dbname"`
	Engine   string `json:"engine"`
}

// Parse reads a secret value; its error never echoes the value.
func Parse(s string) (Value, error) {
	var v Value
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return Value{}, errors.New("secret value is not the database JSON")
	}
	if v.Username == "" || v.Password == "" {
		return Value{}, errors.New("secret value lacks username or password")
	}
	return v, nil
}

// newValue returns a value for user with a fresh random password.
func (c *Credential) newValue(user string, password string) Value {
	at := c.at.Load()
	ep, _ := netip.ParseAddrPort(at.endpoint)
	return Value{Username: user, Password: password, Host: ep.Addr().String(), Port: int(ep.Port()), DBName: at.database, Engine: "postgres"}
}

// Bootstrap creates the login roles, creates the secret on first start
// (user Owner_a) and makes the database agree with AWSCURRENT otherwise (it
// may have been restored or recreated). It reports whether it created the
// secret.
func (c *Credential) Bootstrap(ctx context.Context) (created bool, err error) {
	users := c.Users()
	if err := c.cfg.Roles.EnsureLoginRoles(ctx, c.cfg.Owner, users[:]); err != nil {
		return false, fmt.Errorf("bootstrap database logins: %w", err)
	}
	cur, err := c.cfg.Store.GetSecretValue(secrets.GetSecretValueInput{SecretId: c.cfg.Name})
	var ae *secrets.APIError
	switch {
	case errors.As(err, &ae) && ae.Code == secrets.CodeResourceNotFound:
		v := c.newValue(users[0], c.cfg.NewPassword())
		if err := c.cfg.Roles.SetPassword(ctx, v.Username, v.Password); err != nil {
			return false, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return false, err
		}
		s := string(b)
		out, err := c.cfg.Store.CreateSecret(secrets.CreateSecretInput{
			Name: c.cfg.Name, SecretString: &s, Description: c.cfg.Description,
			Tags: []secrets.Tag{{Key: "haven:rotation", Value: *c.strategy.Load()}},
		})
		if err != nil {
			return false, fmt.Errorf("create database secret: %w", err)
		}
		c.arn = out.ARN
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read database secret: %w", err)
	}
	c.arn = cur.ARN
	v, err := Parse(*cur.SecretString)
	if err != nil {
		return false, fmt.Errorf("read database secret: %w", err)
	}
	if err := c.cfg.Roles.SetPassword(ctx, v.Username, v.Password); err != nil {
		return false, err
	}
	if _, err := c.Follow(ctx); err != nil {
		return false, err
	}
	return false, nil
}

// Follow makes AWSCURRENT name the configured endpoint and database, as RDS
// updates a managed secret's host: a version with the same login and the
// new host, port and dbname. It is called on every start and on every
// apply, so no version an app can read keeps an old endpoint. A rotation
// pending from before the move wrote its AWSPENDING with the old endpoint:
// it is cancelled (AWSCURRENT's login still works: Bootstrap set its
// password), and the next scheduled rotation starts afresh. It reports
// whether it changed the secret.
func (c *Credential) Follow(ctx context.Context) (bool, error) {
	cur, err := c.cfg.Store.GetSecretValue(secrets.GetSecretValueInput{SecretId: c.cfg.Name})
	if err != nil {
		return false, fmt.Errorf("read database secret: %w", err)
	}
	v, err := Parse(*cur.SecretString)
	if err != nil {
		return false, fmt.Errorf("read database secret: %w", err)
	}
	want := c.newValue(v.Username, v.Password)
	if want.Host == v.Host && want.Port == v.Port && want.DBName == v.DBName {
		return false, nil
	}
	if pending, err := c.Pending(); err != nil {
		return false, err
	} else if pending {
		if _, err := c.cfg.Driver.Cancel(ctx, c.cfg.Name); err != nil {
			return false, fmt.Errorf("cancel the rotation of %s pending from before the endpoint moved: %w", c.cfg.Name, err)
		}
	}
	v.Host, v.Port, v.DBName = want.Host, want.Port, want.DBName
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	str := string(b)
	if _, err := c.cfg.Store.PutSecretValue(secrets.PutSecretValueInput{SecretId: c.cfg.Name, SecretString: &str}); err != nil {
		return false, fmt.Errorf("move database secret to endpoint %s, database %s: %w", c.Endpoint(), want.DBName, err)
	}
	return true, nil
}

// Pending reports whether the secret has an AWSPENDING version other than
// AWSCURRENT: a rotation that did not finish.
func (c *Credential) Pending() (bool, error) {
	out, err := c.cfg.Store.ListSecretVersionIds(secrets.ListSecretVersionIdsInput{SecretId: c.cfg.Name})
	if err != nil {
		return false, fmt.Errorf("list versions of %s: %w", c.cfg.Name, err)
	}
	for _, v := range out.Versions {
		if slices.Contains(v.VersionStages, secrets.StagePending) && !slices.Contains(v.VersionStages, secrets.StageCurrent) {
			return true, nil
		}
	}
	return false, nil
}

// Resume finishes a rotation a crash interrupted, or rolls it back when it
// cannot finish (AWSCURRENT unchanged). It says which, or "" when no
// rotation was pending.
func (c *Credential) Resume(ctx context.Context) (string, error) {
	pending, err := c.Pending()
	if err != nil || !pending {
		return "", err
	}
	if _, err := c.cfg.Driver.Rotate(ctx, c.cfg.Name); err == nil {
		return "finished the interrupted rotation of " + c.cfg.Name, nil
	}
	if _, err := c.cfg.Driver.Cancel(ctx, c.cfg.Name); err != nil {
		return "", fmt.Errorf("roll back interrupted rotation of %s: %w", c.cfg.Name, err)
	}
	return "rolled back the interrupted rotation of " + c.cfg.Name + " (AWSCURRENT unchanged)", nil
}

// TestLogin logs in through the endpoint with one version of a database
// secret. loggedIn is false, with the server's reason, when the database
// refuses it. The password never leaves this process.
func (c *Credential) TestLogin(ctx context.Context, in secrets.GetSecretValueInput) (versionID, user string, loggedIn bool, reason string, err error) {
	if in.SecretId == "" {
		in.SecretId = c.cfg.Name
	}
	v, err := c.cfg.Store.GetSecretValue(in)
	if err != nil {
		return "", "", false, "", err
	}
	if v.SecretString == nil {
		return v.VersionId, "", false, "", errors.New("the secret version is binary, not a database login")
	}
	s, err := Parse(*v.SecretString)
	if err != nil {
		return v.VersionId, "", false, "", err
	}
	ok, reason, err := c.cfg.TestLogin(ctx, c.Endpoint(), s.DBName, s.Username, s.Password)
	return v.VersionId, s.Username, ok, reason, err
}

func (c *Credential) step(name, user string) {
	if c.cfg.OnStep != nil {
		c.cfg.OnStep(name, user)
	}
}

// CreateSecret picks the role not in AWSCURRENT (alternating users) and a
// fresh password for it.
func (c *Credential) CreateSecret(_ context.Context, in secrets.StepInput) (string, error) {
	cur, err := Parse(in.Current)
	if err != nil {
		return "", err
	}
	next := cur.Username
	if *c.strategy.Load() != SingleUser {
		u := c.Users()
		next = u[0]
		if cur.Username == u[0] {
			next = u[1]
		}
	}
	b, err := json.Marshal(c.newValue(next, c.cfg.NewPassword()))
	if err == nil {
		c.step("createSecret", next)
	}
	return string(b), err
}

// SetSecret sets the pending password in the database.
func (c *Credential) SetSecret(ctx context.Context, in secrets.StepInput) error {
	s, err := Parse(in.Pending)
	if err != nil {
		return err
	}
	if err := c.cfg.Roles.SetPassword(ctx, s.Username, s.Password); err != nil {
		return err
	}
	c.step("setSecret", s.Username)
	// A crash drill dies here like a power loss, between setSecret and finishSecret.
	if c.cfg.Failpoints != nil {
		return c.cfg.Failpoints.Hit(failpoint.SecretsCrashAfterSetSecret)
	}
	return nil
}

// TestSecret logs in with the pending credential through the endpoint.
func (c *Credential) TestSecret(ctx context.Context, in secrets.StepInput) error {
	s, err := Parse(in.Pending)
	if err != nil {
		return err
	}
	ok, reason, err := c.cfg.TestLogin(ctx, c.Endpoint(), s.DBName, s.Username, s.Password)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("pending credential of %s does not log in: %s", s.Username, reason)
	}
	c.step("testSecret", s.Username)
	return nil
}

// FinishSecret has nothing to do in the database: the driver moves AWSCURRENT.
func (c *Credential) FinishSecret(_ context.Context, in secrets.StepInput) error {
	if s, err := Parse(in.Pending); err == nil {
		c.step("finishSecret", s.Username)
	}
	return nil
}
