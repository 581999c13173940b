package alarms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// DefaultHTTPTimeout bounds one request of an action's default client.
const DefaultHTTPTimeout = 10 * time.Second

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// URL receives a POST of each Notification as JSON. http or https; it
	// must not carry credentials (use Credentials). Required.
	URL string
	// Credentials, if set, authenticate each request (basic or bearer).
	// Default none.
	Credentials Credentials
	// Client sends the requests. Default an http.Client with a 10 s timeout
	// that does not follow redirects.
	Client *http.Client
}

// Webhook posts notifications as JSON to a URL: the generic action.
type Webhook struct {
	url    string
	creds  Credentials
	client *http.Client
}

var _ Action = (*Webhook)(nil)

// NewWebhook validates cfg and returns the action.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	u, err := checkURL("webhook.url", cfg.URL, false)
	if err != nil {
		return nil, err
	}
	return &Webhook{url: u.String(), creds: cfg.Credentials, client: clientOr(cfg.Client)}, nil
}

// Notify posts n. Any 2xx status acknowledges it. The request carries the
// header Idempotency-Key: n.IdempotencyKey.
func (w *Webhook) Notify(ctx context.Context, n Notification) (string, error) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // "OK -> ALARM", not "OK -\u003e ALARM"
	if err := enc.Encode(n); err != nil {
		return "", fmt.Errorf("encode notification: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, &body)
	if err != nil {
		return "", fmt.Errorf("post webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", n.IdempotencyKey)
	req.Header.Set("User-Agent", userAgent)
	if w.creds != nil {
		c, err := w.creds.Credential(ctx)
		if err != nil {
			return "", fmt.Errorf("get webhook credential: %w", err)
		}
		c.apply(req)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("post webhook: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("post webhook: answered %s: %s", resp.Status, snippet(resp.Body))
	}
	return fmt.Sprintf("webhook answered %s", resp.Status), nil
}

const userAgent = "haven-alarms/1"

func clientOr(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{
		Timeout:       DefaultHTTPTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// checkURL parses an action's endpoint. httpsOnly refuses plain http except
// to a loopback host (a local test server).
func checkURL(field, raw string, httpsOnly bool) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%s: must be set", field)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s: must be an http or https URL, got scheme %q", field, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%s: has no host", field)
	}
	if u.User != nil {
		// Say nothing of what the user info holds: it is a secret.
		return nil, errors.New(field + ": must not carry credentials in the URL: give them through the action's Credentials, backed by the secrets store")
	}
	if httpsOnly && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("%s: must be https (plain http is allowed only to a loopback host), got %s", field, u.Redacted())
	}
	return u, nil
}
