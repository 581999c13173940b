package imds

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	ec2imds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/testkit"
)

func newIssuer(t testing.TB, clk clock.Clock, ttl time.Duration) *iam.Issuer {
	t.Helper()
	iss, err := iam.NewIssuer(iam.IssuerConfig{TTL: ttl, Clock: clk, Account: "123456789012", Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func startServer(t testing.TB, iss CredentialIssuer, clk clock.Clock, in Instance) *Server {
	t.Helper()
	s := New(Config{Instance: in, Issuer: iss, Clock: clk, Logger: testkit.Logger(t)})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func do(t testing.TB, method, u string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func token(t testing.TB, s *Server) string {
	t.Helper()
	code, body, _ := do(t, http.MethodPut, s.Endpoint()+"/latest/api/token", map[string]string{hdrTTL: "60"})
	if code != 200 {
		t.Fatalf("PUT token = %d", code)
	}
	return body
}

var instA = Instance{ID: "i-0aaaaaaaaaaaaaaaa", AvailabilityZone: "eu-west-1a", Role: "app", PrivateIP: "10.0.1.10"}
var instB = Instance{ID: "i-0bbbbbbbbbbbbbbbb", AvailabilityZone: "eu-west-1b", Role: "app", PrivateIP: "10.0.2.10"}

func TestNeedsRefresh(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		now      time.Time
		lifetime time.Duration
		want     bool
	}{
		{"fresh 1h", t0, time.Hour, false},
		{"1h with 16m left", t0.Add(44 * time.Minute), time.Hour, false},
		{"1h with 14m left", t0.Add(46 * time.Minute), time.Hour, true},
		{"30s with 11s left", t0.Add(19 * time.Second), 30 * time.Second, false},
		{"30s with 9s left", t0.Add(21 * time.Second), 30 * time.Second, true},
		{"expired", t0.Add(2 * time.Hour), time.Hour, true},
	}
	for _, tt := range tests {
		if got := NeedsRefresh(tt.now, t0, t0.Add(tt.lifetime)); got != tt.want {
			t.Errorf("%s: NeedsRefresh = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestTokenRules(t *testing.T) {
	clk := clock.NewFake(time.Now())
	s := startServer(t, newIssuer(t, clk, time.Hour), clk, instA)
	tokURL := s.Endpoint() + "/latest/api/token"
	tests := []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"ttl 1", map[string]string{hdrTTL: "1"}, 200},
		{"ttl 21600", map[string]string{hdrTTL: "21600"}, 200},
		{"ttl 0", map[string]string{hdrTTL: "0"}, 400},
		{"ttl 21601", map[string]string{hdrTTL: "21601"}, 400},
		{"ttl junk", map[string]string{hdrTTL: "ten"}, 400},
		{"ttl missing", nil, 400},
		{"forwarded", map[string]string{hdrTTL: "60", "X-Forwarded-For": "10.0.0.1"}, 403},
	}
	for _, tt := range tests {
		code, _, h := do(t, http.MethodPut, tokURL, tt.hdr)
		if code != tt.want {
			t.Errorf("%s: status = %d, want %d", tt.name, code, tt.want)
		}
		if code == 200 && h.Get(hdrTTL) != tt.hdr[hdrTTL] {
			t.Errorf("%s: ttl header = %q", tt.name, h.Get(hdrTTL))
		}
	}

	idURL := s.Endpoint() + "/latest/meta-data/instance-id"
	if code, _, _ := do(t, http.MethodGet, idURL, nil); code != 401 {
		t.Errorf("GET without token = %d, want 401", code)
	}
	if code, _, _ := do(t, http.MethodGet, idURL, map[string]string{hdrToken: "forged"}); code != 401 {
		t.Errorf("GET with forged token = %d, want 401", code)
	}
	tok := token(t, s)
	if code, body, _ := do(t, http.MethodGet, idURL, map[string]string{hdrToken: tok}); code != 200 || body != instA.ID {
		t.Errorf("GET instance-id = %d %q", code, body)
	}
	clk.Advance(61 * time.Second)
	if code, _, _ := do(t, http.MethodGet, idURL, map[string]string{hdrToken: tok}); code != 401 {
		t.Errorf("GET with expired token = %d, want 401", code)
	}
	if code, _, _ := do(t, http.MethodPost, idURL, nil); code != 405 {
		t.Errorf("POST = %d, want 405", code)
	}
}

func TestMetadataPaths(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	s := startServer(t, newIssuer(t, clk, time.Hour), clk, instA)
	tok := map[string]string{hdrToken: token(t, s)}
	get := func(p string) (int, string) {
		code, body, _ := do(t, http.MethodGet, s.Endpoint()+p, tok)
		return code, body
	}
	for p, want := range map[string]string{
		"/latest/meta-data/instance-id":                 instA.ID,
		"/latest/meta-data/placement/availability-zone": "eu-west-1a",
		"/latest/meta-data/placement/region":            "eu-west-1",
		"/latest/meta-data/local-ipv4":                  "10.0.1.10",
		"/latest/meta-data/iam/security-credentials/":   "app",
	} {
		if code, body := get(p); code != 200 || body != want {
			t.Errorf("GET %s = %d %q, want %q", p, code, body, want)
		}
	}
	if code, _ := get("/latest/meta-data/iam/security-credentials/other"); code != 404 {
		t.Errorf("other role = %d, want 404", code)
	}
	if code, _ := get("/latest/meta-data/nope"); code != 404 {
		t.Errorf("unknown path = %d, want 404", code)
	}
	_, body := get("/latest/dynamic/instance-identity/document")
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["instanceId"] != instA.ID || doc["availabilityZone"] != "eu-west-1a" || doc["region"] != "eu-west-1" {
		t.Errorf("identity document = %v", doc)
	}
	_, body = get("/latest/meta-data/iam/info")
	var info map[string]string
	if err := json.Unmarshal([]byte(body), &info); err != nil || info["Code"] != "Success" || !strings.HasSuffix(info["InstanceProfileArn"], ":instance-profile/app") {
		t.Errorf("iam/info = %s (%v)", body, err)
	}
}

type credsDoc struct {
	Code, LastUpdated, Type, AccessKeyId, SecretAccessKey, Token, Expiration string
}

func getCreds(t testing.TB, s *Server, tok string) credsDoc {
	t.Helper()
	code, body, _ := do(t, http.MethodGet, s.Endpoint()+"/latest/meta-data/iam/security-credentials/app", map[string]string{hdrToken: tok})
	if code != 200 {
		t.Fatalf("GET creds = %d", code)
	}
	var c credsDoc
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCredentialsRefresh(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	iss := newIssuer(t, clk, 30*time.Second)
	s := startServer(t, iss, clk, instA)
	tok := token(t, s)
	c1 := getCreds(t, s, tok)
	if c1.Code != "Success" || c1.Type != "AWS-HMAC" || c1.AccessKeyId == "" || c1.SecretAccessKey == "" || c1.Token == "" {
		t.Fatalf("creds = %+v", c1)
	}
	exp, err := time.Parse(time.RFC3339, c1.Expiration)
	if err != nil || !exp.Equal(clk.Now().Add(30*time.Second)) {
		t.Errorf("Expiration = %q (%v)", c1.Expiration, err)
	}
	clk.Advance(15 * time.Second) // 15s of 30s left: keep
	if c := getCreds(t, s, tok); c.AccessKeyId != c1.AccessKeyId {
		t.Errorf("refreshed with half the lifetime left")
	}
	clk.Advance(6 * time.Second) // 9s left < 10s: refresh
	c2 := getCreds(t, s, tok)
	if c2.AccessKeyId == c1.AccessKeyId {
		t.Fatalf("not refreshed with under a third of the lifetime left")
	}
	// The old set stays valid until it expires, as on EC2.
	if _, err := iss.Lookup(c1.AccessKeyId); err != nil {
		t.Errorf("old credentials refused before expiry: %v", err)
	}
	p, err := iss.Lookup(c2.AccessKeyId)
	if err != nil || p.Principal.InstanceID != instA.ID || p.Principal.Role != "app" {
		t.Errorf("new credentials bound to %+v (%v)", p.Principal, err)
	}
}

// TestInstanceIsolation proves an instance can never obtain another instance's identity.
func TestInstanceIsolation(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	iss := newIssuer(t, clk, time.Hour)
	a := startServer(t, iss, clk, instA)
	otherRole := instB
	otherRole.Role = "worker"
	b := startServer(t, iss, clk, otherRole)

	tokA, tokB := token(t, a), token(t, b)
	// A's token is worthless at B and vice versa, on every path.
	for _, p := range []string{"/latest/meta-data/instance-id", "/latest/meta-data/iam/security-credentials/", "/latest/meta-data/iam/security-credentials/app", "/latest/meta-data/iam/security-credentials/worker"} {
		if code, _, _ := do(t, http.MethodGet, b.Endpoint()+p, map[string]string{hdrToken: tokA}); code != 401 {
			t.Errorf("A's token at B %s = %d, want 401", p, code)
		}
		if code, _, _ := do(t, http.MethodGet, a.Endpoint()+p, map[string]string{hdrToken: tokB}); code != 401 {
			t.Errorf("B's token at A %s = %d, want 401", p, code)
		}
	}
	// Each endpoint serves only its own role.
	if code, _, _ := do(t, http.MethodGet, b.Endpoint()+"/latest/meta-data/iam/security-credentials/app", map[string]string{hdrToken: tokB}); code != 404 {
		t.Errorf("A's role at B = %d, want 404", code)
	}
	if code, body, _ := do(t, http.MethodGet, b.Endpoint()+"/latest/meta-data/iam/security-credentials/", map[string]string{hdrToken: tokB}); code != 200 || body != "worker" {
		t.Errorf("B's role list = %d %q", code, body)
	}
	// Credentials served by each endpoint are bound to that instance only.
	ca := getCreds(t, a, tokA)
	pa, err := iss.Lookup(ca.AccessKeyId)
	if err != nil || pa.Principal.InstanceID != instA.ID {
		t.Errorf("A's credentials bound to %+v (%v)", pa.Principal, err)
	}
	// Same role on two instances: still different credentials, each bound to its own instance.
	b2 := startServer(t, iss, clk, instB)
	cb := getCreds(t, b2, token(t, b2))
	pb, err := iss.Lookup(cb.AccessKeyId)
	if err != nil || pb.Principal.InstanceID != instB.ID || cb.AccessKeyId == ca.AccessKeyId {
		t.Errorf("B's credentials = %s bound to %+v (%v)", cb.AccessKeyId, pb.Principal, err)
	}
}

// TestSDK retrieves metadata and credentials with the real AWS SDK clients.
func TestSDK(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	iss := newIssuer(t, clk, time.Hour)
	s := startServer(t, iss, clk, instA)
	ctx := context.Background()

	client := ec2imds.New(ec2imds.Options{Endpoint: s.Endpoint()})
	out, err := client.GetMetadata(ctx, &ec2imds.GetMetadataInput{Path: "instance-id"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Content)
	out.Content.Close()
	if string(b) != instA.ID {
		t.Errorf("instance-id = %q", b)
	}
	doc, err := client.GetInstanceIdentityDocument(ctx, &ec2imds.GetInstanceIdentityDocumentInput{})
	if err != nil || doc.InstanceID != instA.ID || doc.AvailabilityZone != "eu-west-1a" || doc.Region != "eu-west-1" {
		t.Errorf("identity document = %+v (%v)", doc, err)
	}
	reg, err := client.GetRegion(ctx, &ec2imds.GetRegionInput{})
	if err != nil || reg.Region != "eu-west-1" {
		t.Errorf("GetRegion = %+v (%v)", reg, err)
	}

	// The default credential chain, with IMDS as the only source.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_EC2_METADATA_SERVICE_ENDPOINT":      s.Endpoint(),
		"AWS_EC2_METADATA_DISABLED":              "",
		"AWS_ACCESS_KEY_ID":                      "",
		"AWS_SECRET_ACCESS_KEY":                  "",
		"AWS_SESSION_TOKEN":                      "",
		"AWS_PROFILE":                            "",
		"AWS_CONFIG_FILE":                        empty,
		"AWS_SHARED_CREDENTIALS_FILE":            empty,
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_REGION":                             "eu-west-1",
	} {
		t.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := iss.Lookup(creds.AccessKeyID)
	if err != nil {
		t.Fatalf("SDK credentials unknown to the issuer: %v", err)
	}
	if c.SecretAccessKey != creds.SecretAccessKey || c.SessionToken != creds.SessionToken || c.Principal.InstanceID != instA.ID {
		t.Errorf("SDK got credentials that do not match those issued to %s", instA.ID)
	}
	if !creds.CanExpire || !creds.Expires.Equal(c.Expiration) {
		t.Errorf("SDK expiry = %v, want %v", creds.Expires, c.Expiration)
	}
}

// FuzzIMDS drives the handler with arbitrary requests: it never panics, answers only
// 200 or 4xx, and state changes only for a well-formed token PUT.
func FuzzIMDS(f *testing.F) {
	f.Add("GET", "/latest/meta-data/instance-id", "", "", false, true)
	f.Add("PUT", "/latest/api/token", "60", "", false, false)
	f.Add("PUT", "/latest/api/token", "60", "", true, false)
	f.Add("GET", "/latest/meta-data/iam/security-credentials/app", "", "x", false, true)
	f.Add("DELETE", "/latest/../../etc/passwd", "-1", "tok", false, false)
	f.Fuzz(func(t *testing.T, method, path, ttl, tokHdr string, xff, useValid bool) {
		clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		iss := newIssuer(t, clk, time.Hour)
		s := New(Config{Instance: instA, Issuer: iss, Clock: clk, Logger: slog.New(slog.DiscardHandler)})
		if _, err := s.currentCredentials(); err != nil {
			t.Fatal(err)
		}
		h := s.Handler()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, &http.Request{Method: http.MethodPut, URL: &url.URL{Path: "/latest/api/token"}, Header: http.Header{hdrTTL: {"60"}}})
		valid := rec.Body.String()
		akid := s.creds.AccessKeyID

		hdr := http.Header{}
		if ttl != "" {
			hdr.Set(hdrTTL, ttl)
		}
		if useValid {
			hdr.Set(hdrToken, valid)
		} else if tokHdr != "" {
			hdr.Set(hdrToken, tokHdr)
		}
		if xff {
			hdr.Set("X-Forwarded-For", "10.0.0.1")
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, &http.Request{Method: method, URL: &url.URL{Path: path}, Header: hdr})
		code := rec.Code
		if code != 200 && (code < 400 || code > 499) {
			t.Fatalf("%s %q: status %d, want 200 or 4xx", method, path, code)
		}
		wellFormedPut := method == "PUT" && path == "/latest/api/token" && !xff && ttlOK(ttl)
		authedGet := (method == "GET" || method == "HEAD") && useValid && valid != ""
		if code == 200 && !wellFormedPut && !authedGet {
			t.Fatalf("%s %q (ttl %q, xff %v, valid token %v): status 200 for a malformed request", method, path, ttl, xff, useValid)
		}
		if wellFormedPut && code != 200 {
			t.Fatalf("well-formed PUT refused with %d", code)
		}
		s.mu.Lock()
		n := len(s.tokens)
		s.mu.Unlock()
		wantTokens := 1
		if wellFormedPut {
			wantTokens = 2
		}
		if n != wantTokens {
			t.Fatalf("tokens = %d, want %d", n, wantTokens)
		}
		if s.creds.AccessKeyID != akid {
			t.Fatal("credentials changed")
		}
	})
}

func ttlOK(s string) bool {
	var n int
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
		if n > MaxTokenTTL {
			return false
		}
	}
	return s != "" && n >= 1
}
