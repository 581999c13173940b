package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
)

// DBCredentials is what a CredentialProvider returns. Empty fields leave the
// connection string / env value in place.
type DBCredentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	DBName   string `json:"dbname"`
}

// LogValue keeps the password out of every log line.
func (c DBCredentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("username", c.Username),
		slog.String("host", c.Host),
		slog.Int("port", c.Port),
		slog.String("dbname", c.DBName),
		slog.String("password", "[redacted]"),
	)
}

// String keeps the password out of %v formatting.
func (c DBCredentials) String() string {
	return fmt.Sprintf("user=%s host=%s port=%d dbname=%s password=[redacted]", c.Username, c.Host, c.Port, c.DBName)
}

// CredentialProvider supplies database credentials before each new
// connection. Invalidate drops any cached value so the next call refetches
// (called after the server rejects the password, SQLSTATE 28P01).
type CredentialProvider interface {
	Credentials(ctx context.Context) (DBCredentials, error)
	Invalidate()
}

// beforeConnect is the pgxpool hook that applies provider credentials.
func beforeConnect(p CredentialProvider) func(context.Context, *pgx.ConnConfig) error {
	return func(ctx context.Context, cc *pgx.ConnConfig) error {
		c, err := p.Credentials(ctx)
		if err != nil {
			return fmt.Errorf("get database credentials: %w", err)
		}
		if c.Username != "" {
			cc.User = c.Username
		}
		cc.Password = c.Password
		if c.Host != "" {
			cc.Host = c.Host
			cc.Fallbacks = nil
		}
		if c.Port != 0 {
			cc.Port = uint16(c.Port)
		}
		if c.DBName != "" {
			cc.Database = c.DBName
		}
		return nil
	}
}

// secretFetcher is the one Secrets Manager call the provider makes.
type secretFetcher interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// SecretsManagerProvider reads {username,password,host,port,dbname} from an
// AWS Secrets Manager secret (stage AWSCURRENT) and caches it in memory only.
type SecretsManagerProvider struct {
	client   secretFetcher
	secretID string
	log      *slog.Logger

	mu     sync.Mutex
	cached *DBCredentials
}

// NewSecretsManagerProvider builds a provider using the AWS SDK default
// credential chain and endpoint settings (AWS_ENDPOINT_URL_SECRETS_MANAGER,
// IMDS, ...).
func NewSecretsManagerProvider(ctx context.Context, secretID string, log *slog.Logger) (*SecretsManagerProvider, error) {
	client, err := newSecretsManagerClient(ctx)
	if err != nil {
		return nil, err
	}
	return &SecretsManagerProvider{
		client:   client,
		secretID: secretID,
		log:      log.With("component", "db-credentials"),
	}, nil
}

// newSecretsManagerClient is the one way the app reaches Secrets Manager: the
// AWS SDK's default credential chain (instance metadata on an instance) and
// endpoint settings (AWS_ENDPOINT_URL_SECRETS_MANAGER in a local region).
func newSecretsManagerClient(ctx context.Context) (*secretsmanager.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	return secretsmanager.NewFromConfig(cfg), nil
}

// Credentials returns the cached secret, fetching it on first use or after
// Invalidate.
func (p *SecretsManagerProvider) Credentials(ctx context.Context) (DBCredentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cached != nil {
		return *p.cached, nil
	}
	out, err := p.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId:     aws.String(p.secretID),
		VersionStage: aws.String("AWSCURRENT"),
	})
	if err != nil {
		return DBCredentials{}, fmt.Errorf("get secret %s: %w", p.secretID, err)
	}
	c, err := parseSecret(aws.ToString(out.SecretString))
	if err != nil {
		return DBCredentials{}, fmt.Errorf("parse secret %s: %w", p.secretID, err)
	}
	p.cached = &c
	p.log.Info("fetched database credentials", "secret_id", p.secretID, "version_id", aws.ToString(out.VersionId), "credentials", c)
	return c, nil
}

// Invalidate drops the cached secret.
func (p *SecretsManagerProvider) Invalidate() {
	p.mu.Lock()
	p.cached = nil
	p.mu.Unlock()
}

// parseSecret decodes the RDS-style secret JSON. port may be a number or a
// string. The error never includes the secret text.
func parseSecret(s string) (DBCredentials, error) {
	var raw struct {
		Username string          `json:"username"`
		Password string          `json:"password"`
		Host     string          `json:"host"`
		Port     json.RawMessage `json:"port"`
		DBName   string          `json:"dbname"`
	}
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return DBCredentials{}, fmt.Errorf("secret is not a JSON object")
	}
	c := DBCredentials{Username: raw.Username, Password: raw.Password, Host: raw.Host, DBName: raw.DBName}
	if len(raw.Port) > 0 && string(raw.Port) != "null" {
		ps := string(raw.Port)
		if uq, err := strconv.Unquote(ps); err == nil {
			ps = uq
		}
		n, err := strconv.Atoi(ps)
		if err != nil || n <= 0 || n > 65535 {
			return DBCredentials{}, fmt.Errorf("secret field port: want 1-65535")
		}
		c.Port = n
	}
	if c.Username == "" || c.Password == "" {
		return DBCredentials{}, fmt.Errorf("secret fields username and password are required")
	}
	return c, nil
}
