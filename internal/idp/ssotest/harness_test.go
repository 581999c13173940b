package ssotest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/idp"
	"github.com/haven-platform/haven/internal/idp/idpsecrets"
	"github.com/haven-platform/haven/internal/imds"
	"github.com/haven-platform/haven/internal/secrets"
)

// Shared by every test: the courses binary and one PostgreSQL cluster (each
// test gets its own database in it).
var shared struct {
	bin     string // the courses binary
	pgPort  int
	pgAdmin string // connection string to database postgres
	setup   error
}

const pgBin = "/usr/lib/postgresql/15/bin"

func TestMain(m *testing.M) {
	code := func() int {
		cleanup, err := setup()
		defer cleanup()
		if err != nil {
			// Never skip: every test fails with the reason.
			shared.setup = err
		}
		return m.Run()
	}()
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// setup builds bin/courses and starts a PostgreSQL 15 cluster owned by the
// postgres OS user on a free loopback port.
func setup() (func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	dir, err := os.MkdirTemp("", "haven-ssotest-")
	if err != nil {
		return cleanup, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		return cleanup, err
	}
	shared.bin = filepath.Join(dir, "courses")
	build := exec.Command("go", "build", "-o", shared.bin, "./cmd/courses")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return cleanup, fmt.Errorf("go build ./cmd/courses: %v\n%s", err, out)
	}

	u, err := user.Lookup("postgres")
	if err != nil {
		return cleanup, fmt.Errorf("look up the postgres user (install PostgreSQL 15: scripts/setup): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	pgDir := filepath.Join(dir, "pg")
	if err := os.Mkdir(pgDir, 0o700); err != nil {
		return cleanup, err
	}
	if err := os.Chown(pgDir, uid, gid); err != nil {
		return cleanup, err
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	run := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Dir = pgDir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			log, _ := os.ReadFile(filepath.Join(pgDir, "postgres.log"))
			return fmt.Errorf("%s %v: %v\n%s\n%s", filepath.Base(name), args, err, out, log)
		}
		return nil
	}
	data := filepath.Join(pgDir, "data")
	if err := run(pgBin+"/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		return cleanup, err
	}
	shared.pgPort = freePort()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off -c max_connections=100", shared.pgPort, pgDir)
	if err := run(pgBin+"/pg_ctl", "-D", data, "-l", filepath.Join(pgDir, "postgres.log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		return cleanup, err
	}
	cleanups = append(cleanups, func() { _ = run(pgBin+"/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop") })
	shared.pgAdmin = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", shared.pgPort)
	return cleanup, nil
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Test accounts. The seed's demo password is every seeded user's; the
// provider's accounts have their own (the provider keeps only hashes).
const (
	teacherEmail  = "teacher1@example.edu" // course 1's teacher in the seed
	studentEmail  = "student1@example.edu"
	outsiderEmail = "visitor@example.edu"
	newStaffEmail = "new.lecturer@example.edu" // not in the seed
	idpPassword   = "university-pa55word"
	seedPassword  = "exam-week-2026"
	clientID      = "courses"
	awsRegion     = "eu-west-1"
	account       = "123456789012"
	secretName    = "courses/oidc-client"
)

// clientSecret is made per test run, so no secret sits in the repository.
var clientSecret = "cs-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(os.Getpid())

// options shape a test region.
type options struct {
	staffSSOOnly bool
	// students and courses size the seed. Default 50 and 5.
	students, courses, teachers int
}

// region is what one test runs: a provider behind an issuer front that can
// tamper with token responses, the app process behind a TLS front (as
// behind the load balancer), Secrets Manager and instance metadata for the
// app's AWS calls, and a database.
type region struct {
	t        *testing.T
	ca       *ca.CA
	caFile   string
	idp      *idp.Provider
	keys     *idpsecrets.KeyStore
	issuer   string // the issuer front's URL: the issuer the app knows
	appURL   string // the app's TLS front: the public URL
	appAddr  string // the app process's own address
	db       *pgx.Conn
	app      *exec.Cmd
	appLog   *syncBuffer
	tamper   atomic.Pointer[func(idToken string) string]
	tls      *tls.Config // client config trusting the CA
	idpLogs  *syncBuffer
	database string
}

var dbSeq atomic.Int64

// newRegion starts everything for one test; t.Cleanup stops it all.
func newRegion(t *testing.T, o options) *region {
	t.Helper()
	if shared.setup != nil {
		t.Fatalf("test environment: %v", shared.setup)
	}
	if o.students == 0 {
		o.students, o.courses = 50, 5
	}
	r := &region{t: t, appLog: &syncBuffer{}, idpLogs: &syncBuffer{}}
	dir := t.TempDir()
	var err error
	if r.ca, err = ca.LoadOrCreate(filepath.Join(dir, "ca")); err != nil {
		t.Fatal(err)
	}
	r.caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(r.caFile, r.ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, err := r.ca.IssueServer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	r.tls = &tls.Config{RootCAs: r.ca.Pool()}

	// Listeners first: the provider's registration needs the app's public
	// URL, and the app needs the issuer's.
	appFrontLn := listen(t)
	issuerFrontLn := listen(t)
	idpLn := listen(t)
	r.appURL = "https://" + appFrontLn.Addr().String()
	r.issuer = "https://" + issuerFrontLn.Addr().String()

	// Secrets Manager, IAM and instance metadata, as the region runs them.
	iss, err := iam.NewIssuer(iam.IssuerConfig{TTL: time.Hour, Account: account, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	pol := iam.NewPolicies()
	sm, err := secrets.New(secrets.Config{Dir: filepath.Join(dir, "secrets"), Region: awsRegion, Account: account, Keys: iss, Policies: pol, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sm.Stop(context.Background()) })
	created, err := sm.Store().CreateSecret(secrets.CreateSecretInput{Name: secretName, SecretString: &clientSecret})
	if err != nil {
		t.Fatal(err)
	}
	// The instance role may read the client secret, and nothing else.
	if err := pol.Attach("courses-app", iam.Policy{Statement: []iam.Statement{{Effect: iam.Allow,
		Action: iam.StringList{"secretsmanager:GetSecretValue"}, Resource: iam.StringList{created.ARN}}}}); err != nil {
		t.Fatal(err)
	}
	md := imds.New(imds.Config{Instance: imds.Instance{ID: "i-0123456789abcdef0", AvailabilityZone: awsRegion + "a", Role: "courses-app"},
		Issuer: iss, Logger: discard()})
	if err := md.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = md.Stop(context.Background()) })

	// The provider, its signing keys in the secrets store.
	r.keys = &idpsecrets.KeyStore{Store: sm.Store(), Name: "haven/idp/signing-keys"}
	r.idp, err = idp.New(idp.Config{
		Issuer:   r.issuer,
		Listener: idpLn,
		TLS:      serverTLS,
		Keys:     r.keys,
		Users:    directory(t),
		Clients: []idp.Client{{ID: clientID, Name: "Courses", SecretHash: mustHash(t, clientSecret),
			RedirectURIs:           []string{r.appURL + "/login/sso/callback"},
			PostLogoutRedirectURIs: []string{r.appURL + "/login?msg=sso-logged-out"}}},
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(r.idpLogs, tWriter{t, "idp"}), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.idp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.idp.Stop(context.Background()) })
	r.serve(issuerFrontLn, serverTLS, r.issuerFront("https://"+idpLn.Addr().String()))

	// The database, seeded by the binary itself.
	r.database = fmt.Sprintf("sso%d", dbSeq.Add(1))
	admin, err := pgx.Connect(context.Background(), shared.pgAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+r.database); err != nil {
		t.Fatal(err)
	}
	admin.Close(context.Background())
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), shared.pgAdmin); err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+r.database+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	env := r.appEnv(md.Endpoint(), sm.Endpoint())
	seedArgs := []string{"seed", "--students", strconv.Itoa(o.students), "--courses", strconv.Itoa(o.courses), "--password", seedPassword}
	if o.teachers > 0 {
		seedArgs = append(seedArgs, "--teachers", strconv.Itoa(o.teachers))
	}
	seed := exec.Command(shared.bin, seedArgs...)
	seed.Env = env
	if out, err := seed.CombinedOutput(); err != nil {
		t.Fatalf("courses seed: %v\n%s", err, out)
	}
	if r.db, err = pgx.Connect(context.Background(), fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", shared.pgPort, r.database)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.db.Close(context.Background()) })

	// The app, configured by flags and environment only, as on an instance.
	args := []string{"serve", "--listen", "127.0.0.1:0", "--startup-timeout", "30s", "--shutdown-timeout", "5s",
		"--oidc-issuer", r.issuer, "--oidc-client-id", clientID, "--oidc-client-secret-id", created.ARN, "--public-url", r.appURL}
	if o.staffSSOOnly {
		args = append(args, "--sso-only-staff")
	}
	r.app = exec.Command(shared.bin, args...)
	r.app.Env = env
	r.app.Stdout = io.MultiWriter(r.appLog, tWriter{t, "app"})
	r.app.Stderr = r.app.Stdout
	if err := r.app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.app.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = r.app.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = r.app.Process.Kill()
			<-done
		}
	})
	r.appAddr = r.waitServing()
	target, _ := url.Parse("http://" + r.appAddr)
	r.serve(appFrontLn, serverTLS, httputil.NewSingleHostReverseProxy(target))
	return r
}

// appEnv is the app's environment: names and addresses only, as the fleet
// sets it. The AWS SDK gets credentials from instance metadata and reaches
// Secrets Manager at the region's endpoint; SSL_CERT_FILE makes the
// region's CA the one the app trusts for the provider.
func (r *region) appEnv(imdsURL, smURL string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + r.t.TempDir(),
		"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(shared.pgPort), "PGUSER=postgres", "PGDATABASE=" + r.database, "PGSSLMODE=disable",
		"AWS_REGION=" + awsRegion,
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + imdsURL,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + smURL,
		"AWS_CONFIG_FILE=" + filepath.Join(r.t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(r.t.TempDir(), "none"),
		"SSL_CERT_FILE=" + r.caFile,
	}
}

func listen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serve serves h with TLS on ln until the test ends.
func (r *region) serve(ln net.Listener, cfg *tls.Config, h http.Handler) {
	srv := &http.Server{Handler: h, TLSConfig: cfg.Clone(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	r.t.Cleanup(func() { _ = srv.Close() })
}

// issuerFront forwards everything to the provider. When a tamper function is
// set, it rewrites the id_token of the token endpoint's answers: the attacker
// on the back channel, or a provider gone wrong, whom the app must refuse.
func (r *region) issuerFront(backend string) http.Handler {
	target, _ := url.Parse(backend)
	p := httputil.NewSingleHostReverseProxy(target)
	p.Transport = &http.Transport{TLSClientConfig: r.tls}
	p.ModifyResponse = func(res *http.Response) error {
		f := r.tamper.Load()
		if f == nil || res.Request.URL.Path != "/oauth/token" || res.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		if tok, ok := m["id_token"].(string); ok {
			m["id_token"] = (*f)(tok)
		}
		body, _ = json.Marshal(m)
		res.Body = io.NopCloser(bytes.NewReader(body))
		res.ContentLength = int64(len(body))
		res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	return p
}

// setTamper arms (or with nil disarms) the issuer front.
func (r *region) setTamper(f func(string) string) {
	if f == nil {
		r.tamper.Store(nil)
		return
	}
	r.tamper.Store(&f)
}

// waitServing waits for the app's "serving" line and its readiness.
func (r *region) waitServing() string {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if l := r.appLog.lines("serving"); len(l) > 0 {
			addr, _ := l[0]["addr"].(string)
			res, err := http.Get("http://" + addr + "/readyz")
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					return addr
				}
			}
		}
		if r.app.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("the app did not become ready:\n%s", r.appLog.String())
	return ""
}

// directory is the provider's users: the seed's course 1 teacher and a
// student, a lecturer the app has never seen, and an account in no group
// the app knows.
func directory(t *testing.T) []idp.User {
	h := mustHash(t, idpPassword)
	return []idp.User{
		{Username: teacherEmail, Name: "Teacher One", Groups: []string{idp.GroupStaff}, PasswordHash: h},
		{Username: studentEmail, Name: "Student One", Groups: []string{idp.GroupStudents}, PasswordHash: h},
		{Username: newStaffEmail, Name: "New Lecturer", Groups: []string{idp.GroupStaff, "library"}, PasswordHash: h},
		{Username: outsiderEmail, Name: "A Visitor", Groups: []string{"alumni"}, PasswordHash: h},
	}
}

var hashCache sync.Map

func mustHash(t *testing.T, s string) string {
	if h, ok := hashCache.Load(s); ok {
		return h.(string)
	}
	h, err := idp.HashSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	hashCache.Store(s, h)
	return h
}

// signingKey returns the provider's current private key and its id, read
// from the store (the format idp documents: JSON, PKCS#8 base64), so a test
// can sign a token exactly as the provider would, with one claim wrong.
func (r *region) signingKey() (*rsa.PrivateKey, string) {
	r.t.Helper()
	blob, err := r.keys.Load(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	var f struct {
		Keys []struct {
			Kid, Retired string
			PrivateKey   string `json:"private_key"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(blob, &f); err != nil {
		r.t.Fatal(err)
	}
	for _, k := range f.Keys {
		if k.Retired != "" {
			continue
		}
		der, _ := base64.StdEncoding.DecodeString(k.PrivateKey)
		pk, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			r.t.Fatal(err)
		}
		return pk.(*rsa.PrivateKey), k.Kid
	}
	r.t.Fatal("no signing key in the store")
	return nil, ""
}

// resign returns tok with its claims changed by mutate, signed with key as
// kid: a token the provider's key really signed, wrong in one claim.
func resign(t *testing.T, tok string, key *rsa.PrivateKey, kid string, mutate func(map[string]any)) string {
	t.Helper()
	claims := claimsOf(t, tok)
	mutate(claims)
	payload, _ := json.Marshal(claims)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// claimsOf decodes a JWT's payload without verifying it.
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20s…", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// ---- the browser ----

// browser is an HTTP client with a cookie jar that trusts the region's CA and
// never follows a redirect by itself, so each hop can be checked.
type browser struct {
	t  *testing.T
	r  *region
	hc *http.Client
}

func (r *region) newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: r.tls}
	r.t.Cleanup(tr.CloseIdleConnections)
	return &browser{t: r.t, r: r, hc: &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is a read response.
type page struct {
	url      *url.URL
	status   int
	header   http.Header
	body     string
	location *url.URL
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	res, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	p := page{url: req.URL, status: res.StatusCode, header: res.Header, body: string(body)}
	if loc := res.Header.Get("Location"); loc != "" {
		p.location, _ = req.URL.Parse(loc)
	}
	return p
}

func (b *browser) get(u string) page {
	b.t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(u string, v url.Values) page {
	b.t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(v.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// follow follows redirects from p while stop(next URL) is false.
func (b *browser) follow(p page, stop func(*url.URL) bool) page {
	b.t.Helper()
	for range 10 {
		if p.location == nil || stop(p.location) {
			return p
		}
		p = b.get(p.location.String())
	}
	b.t.Fatalf("too many redirects, last at %s", p.url)
	return p
}

var (
	csrfRe = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	ridRe  = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)
)

func find(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in:\n%s", re, body)
	}
	return m[1]
}

// signIn is one sign-in's trail.
type signIn struct {
	authorize *url.URL // the app's authorization request
	callback  *url.URL // the provider's answer at the app
}

// toCallback starts a sign-in at the app (asking for next), signs in at the
// provider's login page when it shows one, and stops at the redirect back to
// the app's callback, which it returns unvisited.
func (b *browser) toCallback(username, password, next string) signIn {
	b.t.Helper()
	start := b.r.appURL + "/login/sso"
	if next != "" {
		start += "?" + url.Values{"next": {next}}.Encode()
	}
	p := b.get(start)
	if p.status != http.StatusSeeOther || p.location == nil || !strings.HasPrefix(p.location.String(), b.r.issuer+"/authorize?") {
		b.t.Fatalf("/login/sso: %d to %v\n%s", p.status, p.location, p.body)
	}
	s := signIn{authorize: p.location}
	isCallback := func(u *url.URL) bool { return strings.HasPrefix(u.String(), b.r.appURL+"/login/sso/callback") }
	p = b.follow(p, isCallback)
	if p.location == nil || !isCallback(p.location) {
		if p.status != http.StatusOK || !strings.Contains(p.body, `name="password"`) {
			b.t.Fatalf("want the provider's login page, got %d at %s\n%s", p.status, p.url, p.body)
		}
		p = b.post(b.r.issuer+"/login", url.Values{"csrf_token": {find(b.t, csrfRe, p.body)},
			"authRequestID": {find(b.t, ridRe, p.body)}, "username": {username}, "password": {password}})
		p = b.follow(p, isCallback)
	}
	if p.location == nil || !isCallback(p.location) {
		b.t.Fatalf("the provider did not send the browser back to the app: %d at %s\n%s", p.status, p.url, p.body)
	}
	s.callback = p.location
	return s
}

// ssoLogin signs in all the way and returns the app's answer to the
// callback and the trail.
func (b *browser) ssoLogin(username, password, next string) (page, signIn) {
	b.t.Helper()
	s := b.toCallback(username, password, next)
	return b.get(s.callback.String()), s
}

// appCookie returns the value of one of the app's cookies.
func (b *browser) appCookie(name string) string {
	u, _ := url.Parse(b.r.appURL + "/login/sso")
	for _, c := range b.hc.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setAppCookie(name, value, path string) {
	u, _ := url.Parse(b.r.appURL + path)
	b.hc.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: path, Secure: true, HttpOnly: true}})
}

// ---- logs ----

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// lines returns the JSON log lines whose msg is msg.
func (s *syncBuffer) lines(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

type tWriter struct {
	t    *testing.T
	name string
}

func (w tWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.name + ": " + l)
	}
	return len(b), nil
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
