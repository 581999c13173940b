package secrets

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
)

const (
	testRegion  = "eu-west-1"
	testAccount = "123456789012"
)

// logBuffer collects log output so tests can check no secret leaks into it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 8<<20 { // bound memory in long fuzz runs
		l.buf.Reset()
	}
	l.buf.Write(p)
	return len(p), nil
}

func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }

type env struct {
	t      testing.TB
	dir    string
	clk    *clock.Offset // the server's clock (signature skew)
	issClk *clock.Offset // the issuer's clock (credential expiry)
	iss    *iam.Issuer
	pol    *iam.Policies
	srv    *Server
	logs   *logBuffer
	admin  iam.Credentials
	app    iam.Credentials
	nobody iam.Credentials
	mods   []func(*Config) // applied to the server's Config at every start
}

func newEnv(t testing.TB, mods ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clk: &clock.Offset{}, issClk: &clock.Offset{}, logs: &logBuffer{t: t}, mods: mods}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	e.iss, err = iam.NewIssuer(iam.IssuerConfig{TTL: 10 * time.Minute, Account: testAccount, Clock: e.issClk, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	e.pol = iam.NewPolicies()
	must(t, e.pol.Attach("admin", iam.Policy{Statement: []iam.Statement{{Effect: iam.Allow, Action: iam.StringList{"secretsmanager:*"}, Resource: iam.StringList{"*"}}}}))
	must(t, e.pol.Attach("app", iam.Policy{Statement: []iam.Statement{
		{Effect: iam.Allow, Action: iam.StringList{"secretsmanager:Get*", "secretsmanager:Describe*"}, Resource: iam.StringList{"arn:aws:secretsmanager:*:*:secret:db-??????"}},
	}}))
	e.admin, err = e.iss.IssueOperator(0)
	must(t, err)
	must(t, e.pol.Attach(e.iss.OperatorRole(), iam.Policy{Statement: []iam.Statement{{Effect: iam.Allow, Action: iam.StringList{"secretsmanager:*"}, Resource: iam.StringList{"*"}}}}))
	e.app, err = e.iss.Issue("app", "i-0aaaaaaaaaaaaaaaa")
	must(t, err)
	e.nobody, err = e.iss.Issue("nobody", "i-0bbbbbbbbbbbbbbbb")
	must(t, err)
	e.start(logger)
	return e
}

func (e *env) start(logger *slog.Logger) {
	e.t.Helper()
	cfg := Config{Dir: e.dir, Region: testRegion, Account: testAccount, Keys: e.iss, Policies: e.pol, Clock: e.clk, Logger: logger}
	for _, m := range e.mods {
		m(&cfg)
	}
	srv, err := New(cfg)
	must(e.t, err)
	must(e.t, srv.Start(context.Background()))
	e.t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	e.srv = srv
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type doerFunc func(*http.Request) (*http.Response, error)

func (f doerFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

func (e *env) client(c iam.Credentials, opts ...func(*secretsmanager.Options)) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:           testRegion,
		BaseEndpoint:     aws.String(e.srv.Endpoint()),
		Credentials:      credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken),
		RetryMaxAttempts: 1,
	}, opts...)
}

func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return "non-API error: " + err.Error()
	}
	return ""
}

func wantCode(t testing.TB, what string, err error, want string) {
	t.Helper()
	if got := errCode(err); got != want {
		t.Fatalf("%s: error code = %q (%v), want %q", what, got, err, want)
	}
}

func containsAny(hay string, needles ...string) string {
	for _, n := range needles {
		if n != "" && strings.Contains(hay, n) {
			return n
		}
	}
	return ""
}

func secretsCreate(name, value string) *secretsmanager.CreateSecretInput {
	return &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}
}

func secretsGet(id string) *secretsmanager.GetSecretValueInput {
	return &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)}
}
