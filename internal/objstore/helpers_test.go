package objstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/haven-platform/haven/internal/iam"
)

// serveEnv makes the test binary run the object store (Main) instead of the
// tests, so every test store is its own process, as in the region.
const serveEnv = "HAVEN_OBJSTORE_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		if err := Main(context.Background(), os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "objstore:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	testRegion  = "eu-west-1"
	testAccount = "123456789012"
	appRole     = "courses-app"
	edgeRole    = "haven-edge"
)

// testLogger sends logs through t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func policy(stmts ...iam.Statement) iam.Policy {
	return iam.Policy{Version: "2012-10-17", Statement: stmts}
}

func allowS3(actions []string, resources ...string) iam.Statement {
	return iam.Statement{Effect: iam.Allow, Action: actions, Resource: resources}
}

// baseConfig is the store most tests run: a materials bucket the app may
// write and read under its own prefix, which only the edge (OAC) reads via the
// bucket policy, and an uploads bucket the app owns.
func baseConfig(t testing.TB) Config {
	edge := roleARN(testAccount, edgeRole)
	return Config{
		Listen:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		Region:  testRegion,
		Account: testAccount,
		Buckets: []Bucket{
			{Name: "materials", Policy: json.RawMessage(`{
				"Version": "2012-10-17",
				"Statement": [
					{"Sid": "EdgeReads", "Effect": "Allow", "Principal": {"AWS": "` + edge + `"},
					 "Action": "s3:GetObject", "Resource": "arn:aws:s3:::materials/*"},
					{"Sid": "NoSecrets", "Effect": "Deny", "Principal": {"AWS": "` + roleARN(testAccount, appRole) + `"},
					 "Action": "s3:GetObject", "Resource": "arn:aws:s3:::materials/secret/*"}
				]}`)},
			{Name: "uploads", CORS: []CORSRule{{AllowedOrigins: []string{"https://courses.example.edu"}, AllowedMethods: []string{"PUT", "GET"},
				AllowedHeaders: []string{"*"}, ExposeHeaders: []string{"ETag"}, MaxAgeSeconds: 600}}},
		},
		Roles: map[string][]iam.Policy{
			appRole: {policy(
				allowS3([]string{"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}, "arn:aws:s3:::uploads/*", "arn:aws:s3:::materials/*"),
				allowS3([]string{"s3:ListBucket", "s3:ListBucketMultipartUploads"}, "arn:aws:s3:::uploads", "arn:aws:s3:::materials"),
				iam.Statement{Effect: iam.Deny, Action: []string{"s3:DeleteObject"}, Resource: []string{"arn:aws:s3:::materials/*"}},
			)},
			edgeRole: {},
		},
		MaxUploadBytes:  64 << 20,
		ScanInterval:    Duration(100 * time.Millisecond),
		PublishInterval: Duration(50 * time.Millisecond),
	}
}

// store is one object store process started for a test, with an issuer
// whose credentials it holds.
type store struct {
	t      testing.TB
	dir    string
	cfg    Config
	proc   *Process
	client *Client
	iss    *iam.Issuer
	url    string

	app, edge, nobody iam.Credentials

	mu     sync.Mutex
	issued []iam.Credentials // every credential registered, for checkNoSecrets
}

// checkNoSecrets fails the test if the store's log holds a secret key or a
// session token of any credential it was given.
func (st *store) checkNoSecrets() {
	b, _ := os.ReadFile(filepath.Join(st.dir, LogFile))
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(b) == 0 {
		st.t.Errorf("the store wrote no log at all")
	}
	for _, c := range st.issued {
		if bytes.Contains(b, []byte(c.SecretAccessKey)) || bytes.Contains(b, []byte(c.SessionToken)) {
			st.t.Errorf("the store's log holds a secret of %s", c.AccessKeyID)
		}
	}
}

// startStore writes cfg to a fresh state directory, runs the store as a
// process (this test binary under serveEnv) and registers an app, an edge
// and a nobody credential.
func startStore(t testing.TB, cfg Config) *store {
	t.Helper()
	dir := t.TempDir()
	must(t, WriteConfig(dir, cfg))
	st := &store{t: t, dir: dir, cfg: cfg, url: "http://" + cfg.Listen}
	st.proc = testProcess(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must(t, st.proc.Start(ctx))
	t.Cleanup(func() {
		if err := st.proc.Stop(context.Background()); err != nil {
			t.Errorf("stop store: %v", err)
		}
		checkRaces(t, dir)
		st.checkNoSecrets()
	})
	st.client = st.proc.Client()
	t.Cleanup(st.client.Close)
	st.iss = mustIssuer(t)
	st.app = st.issue(appRole, "i-0aaaaaaaaaaaaaaa1")
	st.edge = st.issue(edgeRole, "edge")
	st.nobody = st.issue("nobody", "i-0bbbbbbbbbbbbbbb2")
	return st
}

// checkRaces fails the test if the store process (this test binary, built
// with -race when the tests are) reported a data race in its log.
func checkRaces(t testing.TB, dir string) {
	b, _ := os.ReadFile(filepath.Join(dir, LogFile))
	if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
		end := min(len(b), i+6000)
		t.Errorf("the store process reported a data race:\n%s", b[i:end])
	}
}

func mustIssuer(t testing.TB) *iam.Issuer {
	iss, err := iam.NewIssuer(iam.IssuerConfig{Account: testAccount, TTL: time.Hour, Logger: testLogger(t)})
	must(t, err)
	return iss
}

func testProcess(t testing.TB, dir string) *Process {
	exe, err := os.Executable()
	must(t, err)
	return &Process{Dir: dir, Command: []string{exe}, Env: append(os.Environ(), serveEnv+"=1"), Logger: testLogger(t)}
}

// issue has the issuer hand out a credential and registers it with the store.
func (st *store) issue(role, instance string) iam.Credentials {
	st.t.Helper()
	c, err := st.iss.Issue(role, instance)
	must(st.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(st.t, st.client.PutCredentials(ctx, c))
	st.mu.Lock()
	st.issued = append(st.issued, c)
	st.mu.Unlock()
	return c
}

// s3 returns an AWS SDK client signing with c. It does not set UsePathStyle:
// for an IP endpoint the SDK addresses buckets by path by itself, as it does
// for an app configured by AWS_ENDPOINT_URL_S3 alone.
func (st *store) s3(c iam.Credentials) *s3.Client {
	return s3.New(s3.Options{
		Region:           testRegion,
		BaseEndpoint:     aws.String(st.url),
		Credentials:      credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken),
		RetryMaxAttempts: 1,
	})
}

// waitStatus polls the store's published status until ok accepts it.
func (st *store) waitStatus(what string, ok func(Status) bool) Status {
	st.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last Status
	for time.Now().Before(deadline) {
		s, err := st.client.Status(context.Background())
		if err == nil {
			last = s
			if ok(s) {
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", " ")
	if pid := st.proc.PID(); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGQUIT) // the Go runtime dumps every goroutine into the log
		time.Sleep(200 * time.Millisecond)
	}
	st.t.Fatalf("status never showed %s; last:\n%s%s", what, b, st.proc.logTail())
	return last
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
		t.Fatalf("%s: error code %q (%v), want %q", what, got, err, want)
	}
}

// clientEnv is the environment of a client subprocess (aws CLI, python):
// this process's minus every AWS_ variable, plus the temporary credentials
// (only ever issued ones) and settings that keep it off ~/.aws and IMDS.
func clientEnv(t testing.TB, c iam.Credentials) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	none := t.TempDir()
	// The CLI v1 presigns with SigV2 unless told otherwise; versitygw, like
	// newer AWS regions, accepts SigV4 only. The config file holds no secret.
	must(t, os.WriteFile(none+"/config", []byte("[default]\nregion = "+testRegion+"\ns3 =\n    signature_version = s3v4\n"), 0o600))
	return append(env,
		"AWS_ACCESS_KEY_ID="+c.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+c.SecretAccessKey,
		"AWS_SESSION_TOKEN="+c.SessionToken,
		"AWS_DEFAULT_REGION="+testRegion,
		"AWS_CONFIG_FILE="+none+"/config",
		"AWS_SHARED_CREDENTIALS_FILE="+none+"/credentials",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_MAX_ATTEMPTS=1",
		"AWS_PAGER=",
	)
}

// runner runs a client program with one credential's environment.
type runner struct {
	t   testing.TB
	env []string
	dir string
	mu  sync.Mutex
}

func newRunner(t testing.TB, c iam.Credentials) *runner {
	return &runner{t: t, env: clientEnv(t, c), dir: t.TempDir()}
}

// run runs argv and returns stdout and stderr combined, and the error.
func (r *runner) run(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = r.env, r.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// aws runs the aws CLI against the store.
func (r *runner) aws(ctx context.Context, endpoint string, args ...string) (string, error) {
	bin, err := exec.LookPath("aws")
	if err != nil {
		r.t.Fatalf("the aws CLI is not on PATH: run scripts/setup (%v)", err)
	}
	return r.run(ctx, append([]string{bin, "--endpoint-url", endpoint}, args...)...)
}

func (r *runner) mustAWS(ctx context.Context, endpoint string, args ...string) string {
	r.t.Helper()
	out, err := r.aws(ctx, endpoint, args...)
	if err != nil {
		r.t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
