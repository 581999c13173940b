package rdslogins

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"

	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/secrets"
)

// The tests run the function's logic against real parts: PostgreSQL 15 with
// SCRAM logins (the master is a CREATEROLE role that owns the database, as on
// RDS, not a superuser) and haven's Secrets Manager API through the AWS SDK,
// with SigV4 and an IAM policy like the module's for the function's role.

const masterUser = "haven_admin"

type env struct {
	t         *testing.T
	node      pgha.Node
	srv       *secrets.Server
	operator  *secretsmanager.Client // creates secrets, tampers with them
	fn        *secretsmanager.Client // the function's role
	masterARN string
	appARN    string
	masterPW  string
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func freePort(t *testing.T, addr netip.Addr) int {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testDir returns a temp dir the postgres user can traverse.
func testDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := testDir(t)
	addr := netip.AddrFrom4([4]byte{127, 0, 1, 241})
	e := &env{t: t, node: pgha.Node{
		Name: "db-a", Zone: "a", ListenAddr: addr, Port: freePort(t, addr),
		DataDir: filepath.Join(dir, "db-a", "data"), SocketDir: filepath.Join(dir, "db-a", "sock"), LogFile: filepath.Join(dir, "db-a.log"),
	}}
	c, err := pgha.New(pgha.Config{Nodes: []pgha.Node{e.node}, StateFile: filepath.Join(dir, "state.json"),
		AppAuth: pgha.AuthSCRAM, Logger: discard(), Durability: pgha.DurabilityPreferred})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	// RDS's shape: a master with CREATEROLE (not a superuser) owning the
	// database the module names.
	admin, err := pgx.Connect(ctx, e.node.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	e.masterPW = newPassword()
	v, _ := scramVerifier(e.masterPW)
	for _, st := range []string{
		"CREATE ROLE " + masterUser + " LOGIN CREATEROLE CREATEDB PASSWORD " + quoteLiteral(v),
		"CREATE DATABASE app OWNER " + masterUser,
	} {
		if _, err := admin.Exec(ctx, st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	admin.Close(ctx)

	iss, err := iam.NewIssuer(iam.IssuerConfig{Account: "123456789012", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	pol := iam.NewPolicies()
	op, err := iss.IssueOperator(0)
	if err != nil {
		t.Fatal(err)
	}
	must(t, pol.Set(iss.OperatorRole(), iam.Policy{Statement: []iam.Statement{{Effect: iam.Allow, Action: iam.StringList{"secretsmanager:*"}, Resource: iam.StringList{"*"}}}}))
	e.srv, err = secrets.New(secrets.Config{Dir: filepath.Join(dir, "secrets"), Region: "eu-west-1", Account: "123456789012", Keys: iss, Policies: pol, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	must(t, e.srv.Start(ctx))
	t.Cleanup(func() { _ = e.srv.Stop(context.Background()) })
	e.operator = e.client(op)

	mv, _ := json.Marshal(masterSecret{Username: masterUser, Password: e.masterPW})
	m, err := e.operator.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("courses/db-master") /* RDS names its own "rds!db-…", a name only RDS may create */, SecretString: aws.String(string(mv))})
	must(t, err)
	a, err := e.operator.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("courses/db-app-x")}) // no value, as the module creates it
	must(t, err)
	e.masterARN, e.appARN = aws.ToString(m.ARN), aws.ToString(a.ARN)

	// The function's role, as in deploy/terraform/db_logins.tf.
	must(t, pol.Set("db-logins", iam.Policy{Statement: []iam.Statement{
		{Sid: "ReadMasterSecret", Effect: iam.Allow, Action: iam.StringList{"secretsmanager:GetSecretValue"}, Resource: iam.StringList{e.masterARN}},
		{Sid: "RotateAppSecret", Effect: iam.Allow, Action: iam.StringList{"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"}, Resource: iam.StringList{e.appARN}},
	}}))
	fc, err := iss.Issue("db-logins", "i-0ccccccccccccccccc")
	must(t, err)
	e.fn = e.client(fc)
	return e
}

func (e *env) client(c iam.Credentials) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region: "eu-west-1", BaseEndpoint: aws.String(e.srv.Endpoint()), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken),
	})
}

func (e *env) config() Config {
	return Config{AppSecretID: e.appARN, MasterSecretID: e.masterARN, Host: e.node.ListenAddr.String(), Port: e.node.Port,
		DBName: "app", Owner: "app", Logins: [2]string{"app_a", "app_b"}, SSLMode: "disable"}
}

func (e *env) service(mod func(*Config)) *Service {
	e.t.Helper()
	cfg := e.config()
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, e.fn, discard())
	must(e.t, err)
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stage reads the app secret at a stage.
func (e *env) stage(ctx context.Context, stage string) (dbSecret, string) {
	e.t.Helper()
	out, err := e.operator.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &e.appARN, VersionStage: &stage})
	must(e.t, err)
	var v dbSecret
	must(e.t, json.Unmarshal([]byte(aws.ToString(out.SecretString)), &v))
	return v, aws.ToString(out.VersionId)
}

// login connects as user and returns session_user and current_user.
func (e *env) login(ctx context.Context, user, password string) (session, current string, err error) {
	cfg, err := pgx.ParseConfig("host=" + e.node.ListenAddr.String() + " dbname=app sslmode=disable connect_timeout=5")
	if err != nil {
		return "", "", err
	}
	cfg.Port, cfg.User, cfg.Password = uint16(e.node.Port), user, password
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", "", err
	}
	defer c.Close(ctx)
	err = c.QueryRow(ctx, "SELECT session_user, current_user").Scan(&session, &current)
	return session, current, err
}

func (e *env) exec(ctx context.Context, user, password, sql string) error {
	cfg, _ := pgx.ParseConfig("host=" + e.node.ListenAddr.String() + " dbname=app sslmode=disable connect_timeout=5")
	cfg.Port, cfg.User, cfg.Password = uint16(e.node.Port), user, password
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

func rotate(t *testing.T, ctx context.Context, s *Service, arn, token string) {
	t.Helper()
	for _, step := range []string{StepCreate, StepSet, StepTest, StepFinish} {
		if err := s.Rotate(ctx, Event{SecretID: arn, ClientRequestToken: token, Step: step}); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
}

func TestBootstrapThenRotateWithoutALoginGap(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	s := e.service(nil)

	user, err := s.Bootstrap(ctx)
	must(t, err)
	if user != "app_a" {
		t.Fatalf("bootstrap user %q, want app_a", user)
	}
	cur, v1 := e.stage(ctx, "AWSCURRENT")
	if cur.Username != "app_a" || cur.Host != e.node.ListenAddr.String() || cur.Port != e.node.Port || cur.DBName != "app" || cur.Engine != "postgres" || len(cur.Password) != 32 {
		t.Fatalf("first value %+v", dbSecret{Username: cur.Username, Host: cur.Host, Port: cur.Port, DBName: cur.DBName, Engine: cur.Engine})
	}
	// The roles look like the local region's.
	admin, err := pgx.Connect(ctx, e.node.AdminDSN())
	must(t, err)
	defer admin.Close(ctx)
	var ownerLogin bool
	var dbOwner string
	must(t, admin.QueryRow(ctx, "SELECT r.rolcanlogin, pg_get_userbyid(d.datdba) FROM pg_roles r, pg_database d WHERE r.rolname = 'app' AND d.datname = 'app'").Scan(&ownerLogin, &dbOwner))
	if ownerLogin || dbOwner != "app" {
		t.Errorf("owner role: can log in %v, database owned by %q; want NOLOGIN and app", ownerLogin, dbOwner)
	}
	for _, l := range []string{"app_a", "app_b"} {
		var member bool
		var conf []string
		must(t, admin.QueryRow(ctx, "SELECT pg_has_role($1, 'app', 'MEMBER'), coalesce(rolconfig, '{}') FROM pg_roles WHERE rolname = $1", l).Scan(&member, &conf))
		if !member || !strings.Contains(strings.Join(conf, ","), "role=app") {
			t.Errorf("%s: member of app %v, settings %v", l, member, conf)
		}
	}
	if sess, curUser, err := e.login(ctx, "app_a", cur.Password); err != nil || sess != "app_a" || curUser != "app" {
		t.Fatalf("app_a login: %s as %s, %v", sess, curUser, err)
	}
	must(t, e.exec(ctx, "app_a", cur.Password, "CREATE TABLE materials (id int PRIMARY KEY)"))

	// Bootstrap again: nothing changes.
	if user, err := s.Bootstrap(ctx); err != nil || user != "app_a" {
		t.Fatalf("second bootstrap: %q, %v", user, err)
	}
	if again, v := e.stage(ctx, "AWSCURRENT"); v != v1 || again.Password != cur.Password {
		t.Fatalf("second bootstrap wrote a new version %s (was %s)", v, v1)
	}

	// An app logs in with AWSCURRENT over and over while the secret rotates
	// twice: with alternating users no login may fail.
	stop := make(chan struct{})
	var attempts, failures atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, err := e.operator.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &e.appARN})
			if err != nil {
				continue
			}
			var v dbSecret
			_ = json.Unmarshal([]byte(aws.ToString(out.SecretString)), &v)
			attempts.Add(1)
			if _, _, err := e.login(ctx, v.Username, v.Password); err != nil {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	rotate(t, ctx, s, e.appARN, "11111111-1111-4111-8111-111111111111")
	second, _ := e.stage(ctx, "AWSCURRENT")
	prev, _ := e.stage(ctx, "AWSPREVIOUS")
	if second.Username != "app_b" || prev.Username != "app_a" || prev.Password != cur.Password {
		t.Fatalf("after the first rotation AWSCURRENT is %s and AWSPREVIOUS %s; want app_b and the old app_a", second.Username, prev.Username)
	}
	// The previous credential still works: nothing cut the app off.
	if _, _, err := e.login(ctx, "app_a", cur.Password); err != nil {
		t.Errorf("the previous credential stopped working: %v", err)
	}
	// app_b uses and migrates what app_a created (both act as the owner).
	must(t, e.exec(ctx, "app_b", second.Password, "ALTER TABLE materials ADD COLUMN title text"))
	rotate(t, ctx, s, e.appARN, "22222222-2222-4222-8222-222222222222")
	third, _ := e.stage(ctx, "AWSCURRENT")
	if third.Username != "app_a" || third.Password == cur.Password {
		t.Fatalf("after the second rotation AWSCURRENT is %s (same password as at first: %v)", third.Username, third.Password == cur.Password)
	}
	if _, _, err := e.login(ctx, "app_b", second.Password); err != nil {
		t.Errorf("app_b's credential stopped working at the second rotation: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("app logins during two rotations: %d, failed: %d", attempts.Load(), failures.Load())
	if attempts.Load() < 10 || failures.Load() != 0 {
		t.Errorf("%d of %d app logins failed during rotation (first: %v); want 0 of at least 10", failures.Load(), attempts.Load(), firstFailure.Load())
	}
}

func TestRotationStepsCanBeRetried(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	s := e.service(nil)
	_, err := s.Bootstrap(ctx)
	must(t, err)
	token := "33333333-3333-4333-8333-333333333333"
	for _, step := range []string{StepCreate, StepCreate, StepSet, StepSet, StepTest, StepTest, StepFinish, StepFinish, StepTest} {
		if err := s.Rotate(ctx, Event{SecretID: e.appARN, ClientRequestToken: token, Step: step}); err != nil {
			t.Fatalf("%s (retried): %v", step, err)
		}
	}
	cur, v := e.stage(ctx, "AWSCURRENT")
	if cur.Username != "app_b" || v != token {
		t.Fatalf("AWSCURRENT %s version %s, want app_b version %s", cur.Username, v, token)
	}
	if _, _, err := e.login(ctx, cur.Username, cur.Password); err != nil {
		t.Fatal(err)
	}
}

// TestRotationStaysOnTheAppsLogins: the function rotates only its own secret
// and sets passwords only for the app's two logins, whatever AWSPENDING says.
func TestRotationStaysOnTheAppsLogins(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	s := e.service(nil)
	_, err := s.Bootstrap(ctx)
	must(t, err)

	err = s.Rotate(ctx, Event{SecretID: e.masterARN, ClientRequestToken: "44444444-4444-4444-8444-444444444444", Step: StepCreate})
	if err == nil || !strings.Contains(err.Error(), "rotates only") {
		t.Fatalf("rotating the master secret: %v, want a refusal", err)
	}

	// Someone with PutSecretValue stages the master as the pending user.
	token := "55555555-5555-4555-8555-555555555555"
	evil, _ := json.Marshal(dbSecret{Engine: "postgres", Host: e.node.ListenAddr.String(), Port: e.node.Port, DBName: "app", Username: masterUser, Password: "Attacker0wnsTheMasterNow0000000"})
	_, err = e.operator.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &e.appARN, ClientRequestToken: &token,
		SecretString: aws.String(string(evil)), VersionStages: []string{"AWSPENDING"}})
	must(t, err)
	for _, step := range []string{StepCreate, StepSet, StepTest} {
		err := s.Rotate(ctx, Event{SecretID: e.appARN, ClientRequestToken: token, Step: step})
		if err == nil || !strings.Contains(err.Error(), "not one of the app's logins") {
			t.Errorf("%s with a pending master credential: %v, want a refusal", step, err)
		}
	}
	if _, _, err := e.login(ctx, masterUser, e.masterPW); err != nil {
		t.Errorf("the master's password changed: %v", err)
	}
}

// TestBootstrapRestoresAWSCURRENT: after a restore from an older snapshot the
// roles' passwords are old; bootstrap makes AWSCURRENT log in again.
func TestBootstrapRestoresAWSCURRENT(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	s := e.service(nil)
	_, err := s.Bootstrap(ctx)
	must(t, err)
	cur, _ := e.stage(ctx, "AWSCURRENT")
	admin, err := pgx.Connect(ctx, e.node.AdminDSN())
	must(t, err)
	_, err = admin.Exec(ctx, "ALTER ROLE app_a PASSWORD 'from-an-old-snapshot'")
	admin.Close(ctx)
	must(t, err)
	if _, _, err := e.login(ctx, "app_a", cur.Password); err == nil {
		t.Fatal("login with AWSCURRENT still works; the test did not change the password")
	}
	if _, err := s.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.login(ctx, "app_a", cur.Password); err != nil {
		t.Errorf("AWSCURRENT does not log in after bootstrap: %v", err)
	}
}

func TestSingleUserStrategyKeepsTheUser(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	s := e.service(func(c *Config) { c.Strategy = "single_user" })
	_, err := s.Bootstrap(ctx)
	must(t, err)
	first, _ := e.stage(ctx, "AWSCURRENT")
	rotate(t, ctx, s, e.appARN, "66666666-6666-4666-8666-666666666666")
	cur, _ := e.stage(ctx, "AWSCURRENT")
	if cur.Username != "app_a" || cur.Password == first.Password {
		t.Fatalf("single_user rotation: user %s, password changed %v", cur.Username, cur.Password != first.Password)
	}
	if _, _, err := e.login(ctx, "app_a", first.Password); err == nil {
		t.Error("the old password still works after a single-user rotation")
	}
}

func TestHandleDispatches(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	s := e.service(nil)
	out, err := s.Handle(ctx, []byte(`{"haven":"bootstrap"}`))
	if err != nil || string(out) != `{"bootstrap":"done","current_user":"app_a"}` {
		t.Fatalf("bootstrap event: %s, %v", out, err)
	}
	if strings.Contains(string(out), "password") {
		t.Error("the result mentions a password")
	}
	for _, bad := range []string{`{}`, `not json`, `{"haven":"drop"}`} {
		if _, err := s.Handle(ctx, []byte(bad)); err == nil {
			t.Errorf("Handle(%s) succeeded", bad)
		}
	}
	if _, err := s.Handle(ctx, []byte(`{"SecretId":"`+e.appARN+`","ClientRequestToken":"77777777-7777-4777-8777-777777777777","Step":"dropDatabase"}`)); err == nil || !strings.Contains(err.Error(), "unknown step") {
		t.Errorf("unknown step: %v", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	good := map[string]string{
		"HAVEN_APP_SECRET_ID": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:courses/db-app-x", "HAVEN_MASTER_SECRET_ID": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1",
		"HAVEN_DB_HOST": "courses-db.abc.eu-west-1.rds.amazonaws.com", "HAVEN_DB_PORT": "5432", "HAVEN_DB_NAME": "app",
		"HAVEN_DB_OWNER": "app", "HAVEN_DB_LOGINS": "app_a,app_b",
	}
	c, err := ConfigFromEnv(func(k string) string { return good[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Strategy != "alternating_users" || c.SSLMode != "require" || c.Logins != [2]string{"app_a", "app_b"} || c.Port != 5432 {
		t.Errorf("defaults: %+v", c)
	}
	for k, bad := range map[string]string{
		"HAVEN_DB_PORT": "postgres", "HAVEN_DB_LOGINS": "app_a", "HAVEN_DB_OWNER": "App; DROP", "HAVEN_DB_STRATEGY": "sometimes",
		"HAVEN_APP_SECRET_ID": "", "HAVEN_DB_SSLMODE": "prefer",
	} {
		env := map[string]string{}
		for kk, v := range good {
			env[kk] = v
		}
		env[k] = bad
		if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err == nil {
			t.Errorf("%s=%q accepted", k, bad)
		}
	}
	env := map[string]string{}
	for kk, v := range good {
		env[kk] = v
	}
	env["HAVEN_DB_LOGINS"] = "app,app_b"
	if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err == nil {
		t.Error("a login equal to the owner accepted")
	}
}

func TestScramVerifierShape(t *testing.T) {
	// Logging in with it is covered end to end above.
	v, err := scramVerifier("abc")
	if err != nil || !strings.HasPrefix(v, "SCRAM-SHA-256$4096:") || strings.Contains(v, "abc") {
		t.Fatalf("verifier %q, %v", v, err)
	}
	if a, b := newPassword(), newPassword(); len(a) != 32 || a == b {
		t.Errorf("passwords %q %q", a, b)
	}
}
