// Package rdslogins gives an app on RDS PostgreSQL its own database logins,
// the way the local region does: an owner role nobody logs in as, two login
// roles that are members of it, and a Secrets Manager secret rotated with
// alternating users. It is the logic of the AWS module's db-logins Lambda
// function (cmd/haven-rds-logins).
package rdslogins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
)

// Config is what the function knows about the database, from its
// environment. No value in it is a secret.
type Config struct {
	// AppSecretID is the ARN of the app's secret, the only one it rotates.
	AppSecretID string
	// MasterSecretID is the ARN of the RDS-managed master secret.
	MasterSecretID string
	// Host, Port and DBName locate the app's database.
	Host   string
	Port   int
	DBName string
	// Owner is the role that owns the database; nobody logs in as it.
	Owner string
	// Logins are the two login roles, members of Owner, that the secret
	// alternates between.
	Logins [2]string
	// Strategy is "alternating_users" (default) or "single_user" (the
	// secret's user keeps its name; only the password changes).
	Strategy string
	// SSLMode is the libpq sslmode for every connection. Default "require"
	// (RDS forces TLS).
	SSLMode string
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ConfigFromEnv reads the HAVEN_* variables the module sets.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		AppSecretID: getenv("HAVEN_APP_SECRET_ID"), MasterSecretID: getenv("HAVEN_MASTER_SECRET_ID"),
		Host: getenv("HAVEN_DB_HOST"), DBName: getenv("HAVEN_DB_NAME"), Owner: getenv("HAVEN_DB_OWNER"),
		Strategy: getenv("HAVEN_DB_STRATEGY"), SSLMode: getenv("HAVEN_DB_SSLMODE"),
	}
	var errs []error
	port, err := strconv.Atoi(getenv("HAVEN_DB_PORT"))
	if err != nil {
		errs = append(errs, fmt.Errorf("HAVEN_DB_PORT: must be a port number, got %q", getenv("HAVEN_DB_PORT")))
	}
	c.Port = port
	logins := strings.Split(getenv("HAVEN_DB_LOGINS"), ",")
	if len(logins) != 2 {
		errs = append(errs, fmt.Errorf("HAVEN_DB_LOGINS: must name two roles separated by a comma, got %q", getenv("HAVEN_DB_LOGINS")))
	} else {
		c.Logins = [2]string{strings.TrimSpace(logins[0]), strings.TrimSpace(logins[1])}
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("read configuration: %w", errors.Join(errs...))
	}
	return c, nil
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	for name, v := range map[string]string{"app secret": c.AppSecretID, "master secret": c.MasterSecretID, "database host": c.Host} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s: must be set", name))
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("database port: must be 1–65535, got %d", c.Port))
	}
	for name, v := range map[string]string{"database name": c.DBName, "owner role": c.Owner, "first login": c.Logins[0], "second login": c.Logins[1]} {
		if !identRE.MatchString(v) {
			errs = append(errs, fmt.Errorf("%s: must be a lower-case SQL identifier, got %q", name, v))
		}
	}
	if c.Logins[0] == c.Logins[1] || c.Logins[0] == c.Owner || c.Logins[1] == c.Owner {
		errs = append(errs, fmt.Errorf("logins: must be two roles distinct from each other and from the owner %q, got %q", c.Owner, c.Logins))
	}
	switch c.Strategy {
	case "":
		c.Strategy = "alternating_users"
	case "alternating_users", "single_user":
	default:
		errs = append(errs, fmt.Errorf("strategy: must be alternating_users or single_user, got %q", c.Strategy))
	}
	switch c.SSLMode {
	case "":
		c.SSLMode = "require"
	case "disable", "require", "verify-ca", "verify-full":
	default:
		errs = append(errs, fmt.Errorf("sslmode: must be disable, require, verify-ca or verify-full, got %q", c.SSLMode))
	}
	return errors.Join(errs...)
}

// SecretsAPI is the part of the Secrets Manager client the function uses;
// *secretsmanager.Client implements it.
type SecretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	DescribeSecret(ctx context.Context, in *secretsmanager.DescribeSecretInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.DescribeSecretOutput, error)
	UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error)
}

// Service creates the logins and rotates their secret.
type Service struct {
	cfg     Config
	secrets SecretsAPI
	log     *slog.Logger
	// NewPassword returns a fresh password; replaceable in tests.
	NewPassword func() string
}

// New returns a Service. cfg must pass Validate.
func New(cfg Config, secrets SecretsAPI, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configure db-logins: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Service{cfg: cfg, secrets: secrets, log: log.With("component", "rdslogins"), NewPassword: newPassword}, nil
}

// Event is what the function is invoked with: Secrets Manager's rotation
// event, or {"haven": "bootstrap"} from the module at deploy.
type Event struct {
	SecretID           string `json:"SecretId"`
	ClientRequestToken string `json:"ClientRequestToken"`
	Step               string `json:"Step"`
	Haven              string `json:"haven"`
}

// Handle decodes one invocation and runs it. The result names what was done;
// it never holds a password.
func (s *Service) Handle(ctx context.Context, payload []byte) ([]byte, error) {
	var ev Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	switch {
	case ev.Haven == "bootstrap":
		user, err := s.Bootstrap(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(map[string]string{"bootstrap": "done", "current_user": user})
	case ev.Step != "":
		if err := s.Rotate(ctx, ev); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]string{"step": ev.Step, "done": "true"})
	}
	return nil, errors.New(`decode event: neither a rotation step (SecretId, ClientRequestToken, Step) nor {"haven": "bootstrap"}`)
}

// dbSecret is the app secret's value: the same JSON as the local region's
// database secret (and AWS's rotation templates).
type dbSecret struct {
	Engine   string `json:"engine"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	DBName   string `json:"dbname"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// masterSecret is the RDS-managed master secret's value.
type masterSecret struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// parseSecret decodes a secret value without ever echoing it.
func parseSecret(what, s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("%s: the value is not the expected JSON", what)
	}
	return nil
}

// connect opens a connection as user/password to the app's database.
func (s *Service) connect(ctx context.Context, user, password string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=%s sslmode=%s connect_timeout=10", s.cfg.Host, s.cfg.Port, s.cfg.DBName, s.cfg.SSLMode))
	if err != nil {
		return nil, fmt.Errorf("connect to %s:%d: %w", s.cfg.Host, s.cfg.Port, err)
	}
	cfg.User, cfg.Password = user, password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s:%d as %s: %w", s.cfg.Host, s.cfg.Port, user, err)
	}
	return conn, nil
}

// connectMaster logs in with the master secret's AWSCURRENT value.
func (s *Service) connectMaster(ctx context.Context) (*pgx.Conn, error) {
	out, err := s.secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &s.cfg.MasterSecretID})
	if err != nil {
		return nil, fmt.Errorf("read the master secret: %w", err)
	}
	var m masterSecret
	if err := parseSecret("master secret", deref(out.SecretString), &m); err != nil {
		return nil, err
	}
	if m.Username == "" || m.Password == "" {
		return nil, errors.New("master secret: no username or password in it")
	}
	return s.connect(ctx, m.Username, m.Password)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// isLogin reports whether user is one of the app's two login roles: the
// only roles whose passwords the function ever sets.
func (s *Service) isLogin(user string) bool {
	return user == s.cfg.Logins[0] || user == s.cfg.Logins[1]
}

// next returns the login the next rotation sets a password for.
func (s *Service) next(current string) string {
	if s.cfg.Strategy == "single_user" {
		return current
	}
	if current == s.cfg.Logins[0] {
		return s.cfg.Logins[1]
	}
	return s.cfg.Logins[0]
}
