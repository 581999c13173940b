package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// ClientSecretProvider reads the OpenID Connect client secret from a Secrets
// Manager secret (stage AWSCURRENT), the same way SecretsManagerProvider
// reads the database credential, and caches it in memory only. The secret is
// never in a flag, the environment or a file.
type ClientSecretProvider struct {
	client   secretFetcher
	secretID string
	log      *slog.Logger

	mu     sync.Mutex
	cached string
}

// NewClientSecretProvider builds a provider on the AWS SDK's default
// credential chain and endpoint settings.
func NewClientSecretProvider(ctx context.Context, secretID string, log *slog.Logger) (*ClientSecretProvider, error) {
	client, err := newSecretsManagerClient(ctx)
	if err != nil {
		return nil, err
	}
	return &ClientSecretProvider{client: client, secretID: secretID, log: log.With("component", "oidc-client-secret")}, nil
}

// Secret returns the cached client secret, fetching it on first use or after
// Invalidate.
func (p *ClientSecretProvider) Secret(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cached != "" {
		return p.cached, nil
	}
	out, err := p.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId:     aws.String(p.secretID),
		VersionStage: aws.String("AWSCURRENT"),
	})
	if err != nil {
		return "", fmt.Errorf("get secret %s: %w", p.secretID, err)
	}
	s, err := parseClientSecret(aws.ToString(out.SecretString))
	if err != nil {
		return "", fmt.Errorf("parse secret %s: %w", p.secretID, err)
	}
	p.cached = s
	p.log.Info("fetched the OpenID Connect client secret", "secret_id", p.secretID, "version_id", aws.ToString(out.VersionId))
	return s, nil
}

// Invalidate drops the cached secret (after the provider refused it, for
// example because it was rotated).
func (p *ClientSecretProvider) Invalidate() {
	p.mu.Lock()
	p.cached = ""
	p.mu.Unlock()
}

// parseClientSecret accepts the secret as the whole SecretString, or as a
// JSON object's "client_secret" field (how a secret with several keys keeps
// it). The error never includes the secret text.
func parseClientSecret(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		var v struct {
			ClientSecret string `json:"client_secret"`
		}
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return "", errors.New("secret looks like JSON but is not a valid object")
		}
		s = v.ClientSecret
	}
	if s == "" {
		return "", errors.New(`secret is empty: store the client secret itself, or {"client_secret": "..."}`)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", errors.New("secret spans several lines: store the client secret alone")
	}
	return s, nil
}
