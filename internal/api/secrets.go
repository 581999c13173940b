package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// SecretsInfo describes the identity and secrets tier (GET /v1/secrets).
type SecretsInfo struct {
	// Endpoint is the Secrets Manager API URL (AWS_ENDPOINT_URL_SECRETS_MANAGER).
	Endpoint string `json:"endpoint"`
	// Region is the SigV4 region requests must be signed for.
	Region string `json:"region"`
	// DBSecret is the database credential secret's name; DBSecretARN its ARN.
	DBSecret    string `json:"db_secret"`
	DBSecretARN string `json:"db_secret_arn"`
	// AppRole is the instance profile role of the app fleet.
	AppRole string `json:"app_role"`
	// RotationS is the automatic rotation period in seconds (0: off).
	RotationS float64 `json:"rotation_s"`
	// Strategy is alternating_users or single_user.
	Strategy string `json:"strategy"`
	// AuditLog is the path of the audit trail.
	AuditLog string `json:"audit_log"`
	// SpecFile is the spec the region was started from (absolute when known).
	SpecFile string `json:"spec_file,omitempty"`
	// Metadata maps instance ids to their metadata endpoint URL.
	Metadata map[string]string `json:"metadata"`
	// AtRest are the files under the state dir that hold key material or
	// sealed data by design (0600), by path relative to the state dir, with
	// what each is: a plaintext scan skips them.
	AtRest map[string]string `json:"at_rest"`
}

// OperatorCredentialsRequest asks for operator credentials.
type OperatorCredentialsRequest struct {
	// TTLSeconds is their lifetime; 0 means 15 minutes. At most 12 hours.
	TTLSeconds int `json:"ttl_seconds,omitempty"`
}

// OperatorCredentials are temporary credentials of the operator identity (the
// CLI). They are handed out only over the daemon's 0600 unix socket and must
// be kept in memory only.
type OperatorCredentials struct {
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	SessionToken    string    `json:"session_token"`
	Expiration      time.Time `json:"expiration"`
	Endpoint        string    `json:"endpoint"`
	Region          string    `json:"region"`
}

// TestLoginRequest asks the daemon to log in to the database with one version
// of a database secret. The password never leaves the daemon.
type TestLoginRequest struct {
	SecretID     string `json:"secret_id"`
	VersionID    string `json:"version_id,omitempty"`
	VersionStage string `json:"version_stage,omitempty"`
}

// TestLoginResult says whether the login worked.
type TestLoginResult struct {
	VersionID string `json:"version_id"`
	Username  string `json:"username"`
	LoggedIn  bool   `json:"logged_in"`
	// Reason is why it failed, e.g. "28P01 password authentication failed".
	Reason string `json:"reason,omitempty"`
}

// RunRequest runs a command inside an instance: in its process group (and so
// with its identity), like SSM Run Command. Operator only.
type RunRequest struct {
	Argv []string `json:"argv"`
	// Env is added to PATH and HOME of the daemon and the instance's own
	// metadata and secrets settings.
	Env map[string]string `json:"env,omitempty"`
	// TimeoutMS bounds the run. Default 30000.
	TimeoutMS int `json:"timeout_ms,omitempty"`
}

// RunResult is a finished command's output.
type RunResult struct {
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

// SecretsInfo returns the secrets tier's settings.
func (c *Client) SecretsInfo(ctx context.Context) (SecretsInfo, error) {
	var s SecretsInfo
	err := c.do(ctx, http.MethodGet, "/v1/secrets", nil, &s)
	return s, err
}

// OperatorCredentials returns fresh operator credentials for the Secrets Manager API.
func (c *Client) OperatorCredentials(ctx context.Context, ttl time.Duration) (OperatorCredentials, error) {
	var oc OperatorCredentials
	err := c.do(ctx, http.MethodPost, "/v1/secrets/operator-credentials", OperatorCredentialsRequest{TTLSeconds: int(ttl / time.Second)}, &oc)
	return oc, err
}

// TestLogin asks the daemon whether a secret version still logs in to the database.
func (c *Client) TestLogin(ctx context.Context, r TestLoginRequest) (TestLoginResult, error) {
	var res TestLoginResult
	err := c.do(ctx, http.MethodPost, "/v1/secrets/test-login", r, &res)
	return res, err
}

// RunOnInstance runs a command inside an instance and returns its output.
func (c *Client) RunOnInstance(ctx context.Context, id string, r RunRequest) (RunResult, error) {
	var res RunResult
	err := c.do(ctx, http.MethodPost, "/v1/instances/"+url.PathEscape(id)+"/run", r, &res)
	return res, err
}

// AuditRecord is one Secrets Manager API call in the audit trail, like a
// CloudTrail event (GET /v1/secrets/audit). It never holds a secret value.
type AuditRecord struct {
	Time        time.Time `json:"time"`
	RequestID   string    `json:"requestId"`
	Principal   string    `json:"principal,omitempty"`
	AccessKeyID string    `json:"accessKeyId,omitempty"`
	Role        string    `json:"role,omitempty"`
	Instance    string    `json:"instance,omitempty"`
	Action      string    `json:"action"`
	SecretARN   string    `json:"secretArn,omitempty"`
	VersionID   string    `json:"versionId,omitempty"`
	Result      string    `json:"result"`
	SourceIP    string    `json:"sourceIp,omitempty"`
	UserAgent   string    `json:"userAgent,omitempty"`
	// Count, when above 1, says the record stands for Count unauthenticated
	// failures from SourceIP between Time and Until (aggregated per window).
	Count int `json:"count,omitempty"`
	// Until is the time of the last failure an aggregated record counts.
	Until time.Time `json:"until,omitzero"`
}

// AuditQuery selects audit records; zero fields match everything.
type AuditQuery struct {
	// Since keeps records at or after this time.
	Since time.Time
	// Action keeps records of this action, e.g. GetSecretValue.
	Action string
	// Principal keeps records whose role or instance equals it.
	Principal string
	// Secret keeps records of this secret ARN.
	Secret string
	// Failed keeps only refused or failed calls.
	Failed bool
}

// Values encodes q as the route's query parameters.
func (q AuditQuery) Values() url.Values {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.Action != "" {
		v.Set("action", q.Action)
	}
	if q.Principal != "" {
		v.Set("principal", q.Principal)
	}
	if q.Secret != "" {
		v.Set("secret", q.Secret)
	}
	if q.Failed {
		v.Set("failed", "true")
	}
	return v
}

// ParseAuditQuery decodes the route's query parameters.
func ParseAuditQuery(v url.Values) (AuditQuery, error) {
	q := AuditQuery{Action: v.Get("action"), Principal: v.Get("principal"), Secret: v.Get("secret"), Failed: v.Get("failed") == "true"}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return q, fmt.Errorf("since: must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", s)
		}
		q.Since = t
	}
	return q, nil
}

// SecretsAudit reads the audit trail through the daemon.
func (c *Client) SecretsAudit(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	out := []AuditRecord{}
	path := "/v1/secrets/audit"
	if e := q.Values().Encode(); e != "" {
		path += "?" + e
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}
