package iam

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/haven-platform/haven/internal/clock"
)

// AWS error codes returned by the verifier.
const (
	CodeMissingAuthenticationToken = "MissingAuthenticationTokenException"
	CodeUnrecognizedClient         = "UnrecognizedClientException"
	CodeInvalidSignature           = "InvalidSignatureException"
	CodeExpiredToken               = "ExpiredTokenException"
	CodeIncompleteSignature        = "IncompleteSignatureException"
	CodeRequestEntityTooLarge      = "RequestEntityTooLargeException"
)

// AuthError is a refused request, carrying the AWS error code and HTTP status to return.
type AuthError struct {
	Code    string
	Message string
	Status  int
}

func (e *AuthError) Error() string { return e.Code + ": " + e.Message }

func authErr(code string, status int, format string, args ...any) *AuthError {
	return &AuthError{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

// KeyLookup resolves an access key id to its credential; *Issuer implements it.
type KeyLookup interface {
	Lookup(accessKeyID string) (Credentials, error)
}

// DefaultMaxSkew is the largest difference between X-Amz-Date and the server clock
// that is accepted, as on AWS.
const DefaultMaxSkew = 5 * time.Minute

// DefaultMaxBody is the default request body limit (Secrets Manager values are ≤ 64 KiB).
const DefaultMaxBody = 1 << 20

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Keys resolves access key ids. Required.
	Keys KeyLookup
	// Service is the signing name requests must be scoped to, e.g. "secretsmanager". Required.
	Service string
	// Region is the region requests must be scoped to, e.g. "eu-west-1". Required.
	Region string
	// MaxSkew is the accepted clock skew. Default 5m.
	MaxSkew time.Duration
	// MaxBody is the largest body accepted, in bytes. Default 1 MiB.
	MaxBody int64
	// SignedHeaders are headers (lower case) every request must sign, on top
	// of host, x-amz-date and every x-amz-* header it carries, e.g.
	// "x-amz-target" for a JSON protocol whose operation is a header (a
	// request without it is refused). Default none.
	SignedHeaders []string
	// Clock is the time source. Default the wall clock.
	Clock clock.Clock
}

// Verifier checks SigV4-signed requests by re-signing them with the AWS SDK's signer.
type Verifier struct {
	cfg    VerifierConfig
	signer *v4.Signer
}

// NewVerifier returns a Verifier with defaults filled in.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.MaxSkew == 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	v := &Verifier{cfg: cfg, signer: v4.NewSigner()}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return v, nil
}

// Validate checks the configuration.
func (v *Verifier) Validate() error {
	switch {
	case v.cfg.Keys == nil:
		return errors.New("verifier.keys: required")
	case v.cfg.Service == "":
		return errors.New("verifier.service: required")
	case v.cfg.Region == "":
		return errors.New("verifier.region: required")
	case v.cfg.MaxSkew < 0:
		return fmt.Errorf("verifier.max_skew: must be ≥ 0, got %s", v.cfg.MaxSkew)
	case v.cfg.MaxBody < 0:
		return fmt.Errorf("verifier.max_body: must be ≥ 0, got %d", v.cfg.MaxBody)
	}
	return nil
}

// authHeader is a parsed Authorization header.
type authHeader struct {
	AccessKeyID   string
	Date          string // yyyymmdd
	Region        string
	Service       string
	SignedHeaders []string
	Signature     string
}

const algorithm = "AWS4-HMAC-SHA256"

// parseAuthorization parses "AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
// SignedHeaders=a;b, Signature=hex".
func parseAuthorization(h string) (authHeader, error) {
	var a authHeader
	rest, ok := strings.CutPrefix(h, algorithm+" ")
	if !ok {
		return a, errors.New("unsupported authorization algorithm")
	}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || seen[k] {
			return a, fmt.Errorf("malformed authorization component %q", part)
		}
		seen[k] = true
		switch k {
		case "Credential":
			f := strings.Split(val, "/")
			if len(f) != 5 || f[4] != "aws4_request" || f[0] == "" {
				return a, errors.New("credential must have the form AKID/date/region/service/aws4_request")
			}
			a.AccessKeyID, a.Date, a.Region, a.Service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			if val == "" {
				return a, errors.New("SignedHeaders is empty")
			}
			a.SignedHeaders = strings.Split(val, ";")
		case "Signature":
			if len(val) != 64 {
				return a, errors.New("signature must be 64 hex characters")
			}
			if _, err := hex.DecodeString(val); err != nil {
				return a, errors.New("signature must be 64 hex characters")
			}
			a.Signature = val
		default:
			return a, fmt.Errorf("unknown authorization component %q", k)
		}
	}
	if a.AccessKeyID == "" || a.SignedHeaders == nil || a.Signature == "" {
		return a, errors.New("authorization header requires Credential, SignedHeaders and Signature")
	}
	return a, nil
}

// Verify authenticates r. On success it returns the principal and the request body
// (at most MaxBody bytes); r.Body is replaced by a reader over the same bytes.
// On failure the error is an *AuthError.
func (v *Verifier) Verify(r *http.Request) (Principal, []byte, error) {
	body, err := readBody(r, v.cfg.MaxBody)
	if err != nil {
		return Principal{}, nil, err
	}
	p, err := v.verify(r, body)
	return p, body, err
}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, authErr(CodeRequestEntityTooLarge, http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, authErr(CodeIncompleteSignature, http.StatusBadRequest, "read request body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, authErr(CodeRequestEntityTooLarge, http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", limit)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

func (v *Verifier) verify(r *http.Request, body []byte) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, authErr(CodeMissingAuthenticationToken, http.StatusBadRequest, "Missing Authentication Token")
	}
	a, err := parseAuthorization(h)
	if err != nil {
		return Principal{}, authErr(CodeIncompleteSignature, http.StatusBadRequest, "Authorization header is malformed: %v", err)
	}
	if a.Service != v.cfg.Service {
		return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest, "Credential should be scoped to correct service: '%s'.", v.cfg.Service)
	}
	if a.Region != v.cfg.Region {
		return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest, "Credential should be scoped to a valid region, not '%s'.", a.Region)
	}
	if !slices.IsSorted(a.SignedHeaders) || !slices.Contains(a.SignedHeaders, "host") || !slices.Contains(a.SignedHeaders, "x-amz-date") {
		return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest, "SignedHeaders must be sorted and include host and x-amz-date")
	}
	// As AWS requires, the signature covers every x-amz-* header sent (an
	// unsigned X-Amz-Target would let whoever relays a request change its
	// operation) and the headers this service binds.
	for _, name := range v.cfg.SignedHeaders {
		if !slices.Contains(a.SignedHeaders, name) {
			return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest, "SignedHeaders must include %s", name)
		}
	}
	for name := range r.Header {
		if l := strings.ToLower(name); strings.HasPrefix(l, "x-amz-") && !slices.Contains(a.SignedHeaders, l) {
			return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest, "header %s must be signed: include it in SignedHeaders", l)
		}
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return Principal{}, authErr(CodeIncompleteSignature, http.StatusBadRequest, "X-Amz-Date must be in ISO 8601 basic format")
	}
	if a.Date != amzDate[:8] {
		return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s'", a.Date, amzDate[:8])
	}
	now := v.cfg.Clock.Now().UTC()
	if d := now.Sub(t); d > v.cfg.MaxSkew || d < -v.cfg.MaxSkew {
		return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest,
			"Signature expired: %s is now earlier than %s (%s - 5 min.)",
			amzDate, now.Add(-v.cfg.MaxSkew).Format("20060102T150405Z"), now.Format("20060102T150405Z"))
	}

	creds, err := v.cfg.Keys.Lookup(a.AccessKeyID)
	switch {
	case errors.Is(err, ErrExpired):
		return Principal{}, authErr(CodeExpiredToken, http.StatusBadRequest, "The security token included in the request is expired")
	case err != nil:
		return Principal{}, authErr(CodeUnrecognizedClient, http.StatusBadRequest, "The security token included in the request is invalid.")
	}
	// The session token must be present, signed, and equal to the one issued.
	tokens := r.Header.Values("X-Amz-Security-Token")
	if creds.SessionToken != "" {
		if len(tokens) != 1 || subtle.ConstantTimeCompare([]byte(tokens[0]), []byte(creds.SessionToken)) != 1 {
			return Principal{}, authErr(CodeUnrecognizedClient, http.StatusBadRequest, "The security token included in the request is invalid.")
		}
		if !slices.Contains(a.SignedHeaders, "x-amz-security-token") {
			return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest, "x-amz-security-token must be signed")
		}
	}

	want, err := v.resign(r, a, body, t, creds)
	if err != nil {
		return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest, "re-sign request: %v", err)
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(a.Signature)) != 1 {
		return Principal{}, authErr(CodeInvalidSignature, http.StatusBadRequest,
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return creds.Principal, nil
}

// resign builds a clone of r holding only the signed headers, signs it with the SDK's
// signer and returns the signature it computed.
func (v *Verifier) resign(r *http.Request, a authHeader, body []byte, t time.Time, creds Credentials) (string, error) {
	u := &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if r.TLS != nil {
		u.Scheme = "https"
	}
	clone := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: http.Header{}}
	for _, name := range a.SignedHeaders {
		switch name {
		case "host":
			continue
		case "content-length":
			clone.ContentLength = int64(len(body))
			if clone.ContentLength == 0 {
				return "", errors.New("content-length signed for an empty body")
			}
			continue
		}
		vals := r.Header.Values(name)
		if len(vals) == 0 {
			return "", fmt.Errorf("signed header %q is missing", name)
		}
		clone.Header[textproto.CanonicalMIMEHeaderKey(name)] = vals
	}
	sum := sha256.Sum256(body)
	ac := aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}
	err := v.signer.SignHTTP(context.Background(), ac, clone, hex.EncodeToString(sum[:]), a.Service, a.Region, t,
		func(o *v4.SignerOptions) { o.DisableSessionToken = creds.SessionToken == "" })
	if err != nil {
		return "", err
	}
	got, err := parseAuthorization(clone.Header.Get("Authorization"))
	if err != nil {
		return "", err
	}
	if !slices.Equal(got.SignedHeaders, a.SignedHeaders) {
		return "", fmt.Errorf("signed headers differ: %s", strings.Join(got.SignedHeaders, ";"))
	}
	return got.Signature, nil
}
