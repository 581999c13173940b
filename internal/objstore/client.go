package objstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/haven-platform/haven/internal/iam"
)

// Client talks to a store's control socket (dir/admin.sock).
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the store whose state directory is dir.
func NewClient(dir string) *Client {
	sock := filepath.Join(dir, SocketFile)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns:      4,
		IdleConnTimeout:   30 * time.Second,
		DisableKeepAlives: false,
	}
	return &Client{socket: sock, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://objstore"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("object store control socket %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("object store control socket %s: %w", c.socket, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return &apiError{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Health asks whether the store serves.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.do(ctx, http.MethodGet, "/v1/health", nil, &h)
	return h, err
}

// Status returns the store's latest published snapshot.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// PutCredentials registers temporary credentials haven's issuer handed out,
// so requests signed with them are verified (and authorised by their role).
func (c *Client) PutCredentials(ctx context.Context, cr iam.Credentials) error {
	if err := c.do(ctx, http.MethodPut, "/v1/credentials", CredentialOf(cr), nil); err != nil {
		return fmt.Errorf("register credentials %s with the object store: %w", cr.AccessKeyID, err)
	}
	return nil
}

// Revoke forgets one credential; ErrNotHeld if the store does not hold it.
func (c *Client) Revoke(ctx context.Context, accessKeyID string) error {
	err := c.do(ctx, http.MethodDelete, "/v1/credentials/"+url.PathEscape(accessKeyID), nil, nil)
	if ae, ok := err.(*apiError); ok && ae.Status == http.StatusNotFound {
		return ErrNotHeld
	}
	return err
}

// RevokeInstance forgets every credential of an instance and returns how
// many the store held.
func (c *Client) RevokeInstance(ctx context.Context, instanceID string) (int, error) {
	var out struct{ Revoked int }
	err := c.do(ctx, http.MethodDelete, "/v1/instances/"+url.PathEscape(instanceID)+"/credentials", nil, &out)
	return out.Revoked, err
}

// Reload makes the store reread dir/config.json (write it with WriteConfig
// first). An error says why the new configuration was refused; the running
// one stays.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/reload", nil, nil)
}
