package iam

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/haven-platform/haven/internal/clock"
)

func newIssuer(t *testing.T, clk clock.Clock, ttl time.Duration) *Issuer {
	t.Helper()
	iss, err := NewIssuer(IssuerConfig{TTL: ttl, Clock: clk, Account: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func TestIssueFormatAndBinding(t *testing.T) {
	clk := clock.NewFake(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	iss := newIssuer(t, clk, 0)
	c, err := iss.Issue("app", "i-0123456789abcdef0")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^ASIA[A-Z0-9]{16}$`).MatchString(c.AccessKeyID) {
		t.Errorf("AccessKeyID = %q, want ASIA + 16 upper alnum", c.AccessKeyID)
	}
	if len(c.SecretAccessKey) != 40 {
		t.Errorf("len(SecretAccessKey) = %d, want 40", len(c.SecretAccessKey))
	}
	if c.SessionToken == "" {
		t.Error("SessionToken is empty")
	}
	if got, want := c.Expiration.Sub(c.Issued), time.Hour; got != want {
		t.Errorf("lifetime = %s, want %s", got, want)
	}
	if c.Principal.Role != "app" || c.Principal.InstanceID != "i-0123456789abcdef0" {
		t.Errorf("principal = %+v", c.Principal)
	}
	if got, want := c.Principal.ARN(), "arn:aws:sts::123456789012:assumed-role/app/i-0123456789abcdef0"; got != want {
		t.Errorf("ARN = %q, want %q", got, want)
	}
	c2, _ := iss.Issue("app", "i-0123456789abcdef0")
	if c2.AccessKeyID == c.AccessKeyID || c2.SecretAccessKey == c.SecretAccessKey {
		t.Error("two issues returned the same key")
	}
	got, err := iss.Lookup(c.AccessKeyID)
	if err != nil || got.SecretAccessKey != c.SecretAccessKey {
		t.Fatalf("Lookup = %v, %v", got.AccessKeyID, err)
	}
	clk.Advance(time.Hour)
	if _, err := iss.Lookup(c.AccessKeyID); !errors.Is(err, ErrExpired) {
		t.Errorf("Lookup after expiry: err = %v, want ErrExpired", err)
	}
	if _, err := iss.Lookup("ASIAUNKNOWN000000000"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Lookup unknown: err = %v, want ErrUnknownKey", err)
	}
	if n := iss.RevokeInstance("i-0123456789abcdef0"); n != 2 {
		t.Errorf("RevokeInstance = %d, want 2", n)
	}
	op, err := iss.IssueOperator(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !op.Principal.Operator || op.Principal.Role != "haven-operator" || op.Expiration.Sub(op.Issued) != time.Minute {
		t.Errorf("operator = %+v", op)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"secretsmanager:Get*", "secretsmanager:GetSecretValue", true},
		{"secretsmanager:Get*", "secretsmanager:PutSecretValue", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"arn:aws:secretsmanager:*:*:secret:db-??????", "arn:aws:secretsmanager:eu-west-1:1:secret:db-AbC123", true},
		{"arn:aws:secretsmanager:*:*:secret:db-??????", "arn:aws:secretsmanager:eu-west-1:1:secret:db-AbC12", false},
		{"*a*b*c*", "xxaxxbxxcxx", true},
		{"*a*b*c*", "xxaxxcxxbxx", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"", "", true},
		{"", "x", false},
		{strings.Repeat("*a", 30) + "b", strings.Repeat("a", 5000), false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	const arnDB = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"
	allowGet := Policy{Statement: []Statement{{Effect: Allow, Action: StringList{"secretsmanager:Get*"}, Resource: StringList{"arn:aws:secretsmanager:*:*:secret:db-*"}}}}
	denyAll := Policy{Statement: []Statement{{Effect: Deny, Action: StringList{"*"}, Resource: StringList{"*"}}}}
	tests := []struct {
		name     string
		policies []Policy
		action   string
		resource string
		want     Decision
	}{
		{"no policy is default deny", nil, "secretsmanager:GetSecretValue", arnDB, ImplicitDeny},
		{"allow matches", []Policy{allowGet}, "secretsmanager:GetSecretValue", arnDB, Allowed},
		{"action is case-insensitive", []Policy{allowGet}, "SecretsManager:getsecretvalue", arnDB, Allowed},
		{"other action denied", []Policy{allowGet}, "secretsmanager:PutSecretValue", arnDB, ImplicitDeny},
		{"other resource denied", []Policy{allowGet}, "secretsmanager:GetSecretValue", strings.Replace(arnDB, "db-", "api-", 1), ImplicitDeny},
		{"resource is case-sensitive", []Policy{allowGet}, "secretsmanager:GetSecretValue", strings.Replace(arnDB, "db-", "DB-", 1), ImplicitDeny},
		{"explicit deny wins", []Policy{allowGet, denyAll}, "secretsmanager:GetSecretValue", arnDB, ExplicitDeny},
		{"explicit deny wins in either order", []Policy{denyAll, allowGet}, "secretsmanager:GetSecretValue", arnDB, ExplicitDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Evaluate(tt.policies, tt.action, tt.resource); got != tt.want {
				t.Errorf("Evaluate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPoliciesAuthorizeAndJSON(t *testing.T) {
	var p Policy
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":["arn:aws:secretsmanager:*:*:secret:db-*"]}]}`
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatal(err)
	}
	ps := NewPolicies()
	if err := ps.Attach("app", p); err != nil {
		t.Fatal(err)
	}
	app := Principal{Role: "app", InstanceID: "i-1", Account: "123456789012"}
	if err := ps.Authorize(app, "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:r:1:secret:db-x"); err != nil {
		t.Errorf("Authorize allowed action: %v", err)
	}
	err := ps.Authorize(app, "secretsmanager:PutSecretValue", "arn:aws:secretsmanager:r:1:secret:db-x")
	var ade *AccessDeniedError
	if !errors.As(err, &ade) || !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("Authorize denied action: err = %v", err)
	}
	if !strings.Contains(err.Error(), "assumed-role/app/i-1") {
		t.Errorf("message %q does not name the principal", err)
	}
	if err := ps.Attach("app", Policy{Statement: []Statement{{Effect: "Maybe", Action: StringList{"*"}, Resource: StringList{"*"}}}}); err == nil {
		t.Error("Attach accepted an invalid effect")
	}
}

// --- SigV4 ---

type sigEnv struct {
	clk   *clock.Fake
	iss   *Issuer
	ver   *Verifier
	creds Credentials
}

func newSigEnv(t *testing.T) *sigEnv {
	t.Helper()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	iss := newIssuer(t, clk, 10*time.Minute)
	ver, err := NewVerifier(VerifierConfig{Keys: iss, Service: "secretsmanager", Region: "eu-west-1", Clock: clk, MaxBody: 4096})
	if err != nil {
		t.Fatal(err)
	}
	c, err := iss.Issue("app", "i-1")
	if err != nil {
		t.Fatal(err)
	}
	return &sigEnv{clk: clk, iss: iss, ver: ver, creds: c}
}

func signedRequest(t testing.TB, c Credentials, body string, at time.Time, region string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:4566/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	r.Header.Set("User-Agent", "test")
	sum := sha256.Sum256([]byte(body))
	// Sign a client-side copy, as the SDK would, then copy the headers over.
	cr, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:4566/", strings.NewReader(body))
	cr.Header = r.Header.Clone()
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken},
		cr, hex.EncodeToString(sum[:]), "secretsmanager", region, at)
	if err != nil {
		t.Fatal(err)
	}
	r.Header = cr.Header
	return r
}

// signedRequestWithout signs a request without header, then adds it back
// unsigned, as a relay could.
func signedRequestWithout(t testing.TB, c Credentials, body string, at time.Time, header string) *http.Request {
	t.Helper()
	r := signedRequest(t, c, body, at, "eu-west-1")
	v := r.Header.Get(header)
	r.Header.Del(header)
	r.Header.Del("Authorization")
	sum := sha256.Sum256([]byte(body))
	cr, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:4566/", strings.NewReader(body))
	cr.Header = r.Header.Clone()
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken},
		cr, hex.EncodeToString(sum[:]), "secretsmanager", "eu-west-1", at)
	if err != nil {
		t.Fatal(err)
	}
	r.Header = cr.Header
	if strings.Contains(strings.ToLower(r.Header.Get("Authorization")), strings.ToLower(header)) {
		t.Fatalf("%s is signed: %s", header, r.Header.Get("Authorization"))
	}
	r.Header.Set(header, v)
	return r
}

func authCode(err error) string {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Code
	}
	if err != nil {
		return "non-AuthError: " + err.Error()
	}
	return ""
}

func TestVerify(t *testing.T) {
	body := `{"SecretId":"db"}`
	tests := []struct {
		name   string
		mutate func(e *sigEnv, r *http.Request) *http.Request
		want   string
	}{
		{"valid", func(e *sigEnv, r *http.Request) *http.Request { return r }, ""},
		{"missing auth", func(e *sigEnv, r *http.Request) *http.Request { r.Header.Del("Authorization"); return r }, CodeMissingAuthenticationToken},
		{"garbage auth", func(e *sigEnv, r *http.Request) *http.Request {
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 nonsense")
			return r
		}, CodeIncompleteSignature},
		{"tampered signature", func(e *sigEnv, r *http.Request) *http.Request {
			h := r.Header.Get("Authorization")
			last := h[len(h)-1]
			repl := byte('0')
			if last == '0' {
				repl = '1'
			}
			r.Header.Set("Authorization", h[:len(h)-1]+string(repl))
			return r
		}, CodeInvalidSignature},
		{"tampered body", func(e *sigEnv, r *http.Request) *http.Request {
			return withBody(r, `{"SecretId":"other"}`)
		}, CodeInvalidSignature},
		{"tampered signed header", func(e *sigEnv, r *http.Request) *http.Request {
			r.Header.Set("X-Amz-Target", "secretsmanager.PutSecretValue")
			return r
		}, CodeInvalidSignature},
		{"unsigned x-amz-target", func(e *sigEnv, r *http.Request) *http.Request {
			return signedRequestWithout(t, e.creds, body, e.clk.Now(), "X-Amz-Target")
		}, CodeInvalidSignature},
		{"unsigned x-amz-* header added", func(e *sigEnv, r *http.Request) *http.Request {
			r.Header.Set("X-Amz-Tagging", "a=b")
			return r
		}, CodeInvalidSignature},
		{"unsigned header added is fine", func(e *sigEnv, r *http.Request) *http.Request {
			r.Header.Set("X-Extra", "1")
			return r
		}, ""},
		{"unknown key", func(e *sigEnv, r *http.Request) *http.Request {
			e.iss.Revoke(e.creds.AccessKeyID)
			return r
		}, CodeUnrecognizedClient},
		{"wrong security token", func(e *sigEnv, r *http.Request) *http.Request {
			r.Header.Set("X-Amz-Security-Token", "bogus")
			return r
		}, CodeUnrecognizedClient},
		{"missing security token", func(e *sigEnv, r *http.Request) *http.Request {
			r.Header.Del("X-Amz-Security-Token")
			return r
		}, CodeUnrecognizedClient},
		{"expired credentials", func(e *sigEnv, r *http.Request) *http.Request {
			e.clk.Advance(10 * time.Minute)
			return signedRequest(t, e.creds, body, e.clk.Now(), "eu-west-1")
		}, CodeExpiredToken},
		{"clock skew", func(e *sigEnv, r *http.Request) *http.Request {
			return signedRequest(t, e.creds, body, e.clk.Now().Add(-6*time.Minute), "eu-west-1")
		}, CodeInvalidSignature},
		{"future skew", func(e *sigEnv, r *http.Request) *http.Request {
			return signedRequest(t, e.creds, body, e.clk.Now().Add(6*time.Minute), "eu-west-1")
		}, CodeInvalidSignature},
		{"small skew accepted", func(e *sigEnv, r *http.Request) *http.Request {
			return signedRequest(t, e.creds, body, e.clk.Now().Add(-4*time.Minute), "eu-west-1")
		}, ""},
		{"wrong region", func(e *sigEnv, r *http.Request) *http.Request {
			return signedRequest(t, e.creds, body, e.clk.Now(), "us-east-1")
		}, CodeInvalidSignature},
		{"body too large", func(e *sigEnv, r *http.Request) *http.Request {
			return signedRequest(t, e.creds, strings.Repeat("x", 5000), e.clk.Now(), "eu-west-1")
		}, CodeRequestEntityTooLarge},
		{"wrong secret", func(e *sigEnv, r *http.Request) *http.Request {
			c := e.creds
			c.SecretAccessKey = strings.Repeat("A", 40)
			return signedRequest(t, c, body, e.clk.Now(), "eu-west-1")
		}, CodeInvalidSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newSigEnv(t)
			r := tt.mutate(e, signedRequest(t, e.creds, body, e.clk.Now(), "eu-west-1"))
			p, _, err := e.ver.Verify(r)
			if got := authCode(err); got != tt.want {
				t.Fatalf("Verify code = %q (%v), want %q", got, err, tt.want)
			}
			if tt.want == "" && p.AccessKeyID != e.creds.AccessKeyID {
				t.Errorf("principal = %+v", p)
			}
		})
	}
}

func withBody(r *http.Request, body string) *http.Request {
	r.Body = http.NoBody
	r2 := httptest.NewRequest(r.Method, r.URL.String(), bytes.NewReader([]byte(body)))
	r2.Header = r.Header
	r2.Host = r.Host
	return r2
}

func TestVerifyReturnsBody(t *testing.T) {
	e := newSigEnv(t)
	r := signedRequest(t, e.creds, `{"a":1}`, e.clk.Now(), "eu-west-1")
	_, body, err := e.ver.Verify(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != `{"a":1}` {
		t.Errorf("body = %q", body)
	}
}

// FuzzSigV4 mutates the signed parts of a valid request: verification never panics,
// every mutation is refused with an *AuthError, and the issuer's state is unchanged.
func FuzzSigV4(f *testing.F) {
	f.Add("", "", "", "")
	f.Add("AWS4-HMAC-SHA256 Credential=ASIA/20250101/eu-west-1/secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, Signature=00", "", "x", "tok")
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e,SignedHeaders=,Signature=", "20250101T000000Z", "{}", "")
	f.Fuzz(func(t *testing.T, auth, date, body, token string) {
		e := newSigEnv(t)
		r := signedRequest(t, e.creds, `{"SecretId":"db"}`, e.clk.Now(), "eu-west-1")
		orig := r.Header.Clone()
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if date != "" {
			r.Header.Set("X-Amz-Date", date)
		}
		if token != "" {
			r.Header.Set("X-Amz-Security-Token", token)
		}
		if body != "" {
			r = withBody(r, body)
		}
		_, _, err := e.ver.Verify(r)
		changed := auth != "" && auth != orig.Get("Authorization") ||
			date != "" && date != orig.Get("X-Amz-Date") ||
			token != "" && token != orig.Get("X-Amz-Security-Token") ||
			body != "" && body != `{"SecretId":"db"}`
		if changed {
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 {
				t.Fatalf("mutated request: err = %v, want a 4xx AuthError", err)
			}
		}
		if c, err := e.iss.Lookup(e.creds.AccessKeyID); err != nil || c.SecretAccessKey != e.creds.SecretAccessKey {
			t.Fatalf("issuer state changed: %v", err)
		}
	})
}
