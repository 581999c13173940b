package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want errClass
	}{
		{"nil", nil, classOther},
		{"read only transaction", &pgconn.PgError{Code: "25006"}, classRoleChanged},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, classRoleChanged},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, classRoleChanged},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, classRoleChanged},
		{"connection failure class 08", &pgconn.PgError{Code: "08006"}, classRoleChanged},
		{"wrapped 08", fmt.Errorf("query: %w", &pgconn.PgError{Code: "08003"}), classRoleChanged},
		{"bad password", &pgconn.PgError{Code: "28P01"}, classAuthFailed},
		{"unique violation", &pgconn.PgError{Code: "23505"}, classOther},
		{"syntax error", &pgconn.PgError{Code: "42601"}, classOther},
		{"EOF", fmt.Errorf("read: %w", io.EOF), classRoleChanged},
		{"unexpected EOF", io.ErrUnexpectedEOF, classRoleChanged},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, classRoleChanged},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, classRoleChanged},
		{"no rows", pgx.ErrNoRows, classOther},
		{"caller cancelled", context.Canceled, classOther},
		{"caller deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), classOther},
		{"app error", errors.New("student is not enrolled"), classOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		n      int
		jitter float64
		want   time.Duration
	}{
		{0, 0, 50 * time.Millisecond},
		{1, 0, 100 * time.Millisecond},
		{3, 0, 400 * time.Millisecond},
		{5, 0, time.Second},
		{50, 0, time.Second},
		{0, 0.999999, 25*time.Millisecond + 25}, // at most half removed
		{50, 0.5, 750 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := backoff(tt.n, tt.jitter); got != tt.want {
			t.Errorf("backoff(%d, %v) = %v, want %v", tt.n, tt.jitter, got, tt.want)
		}
	}
}

func TestValidateGrade(t *testing.T) {
	tests := []struct {
		email, assignment, score string
		bad                      string // the first field that fails, "" when valid
		wantScore                float64
	}{
		{" Student1@Example.edu ", "Essay 1", "87.5", "", 87.5},
		{"student1@example.edu", "Essay 1", "0", "", 0},
		{"student1@example.edu", "Essay 1", "100", "", 100},
		{"student1@example.edu", "Essay 1", "100.5", "score", 0},
		{"student1@example.edu", "Essay 1", "-1", "score", 0},
		{"student1@example.edu", "Essay 1", "NaN", "score", 0},
		{"student1@example.edu", "Essay 1", "abc", "score", 0},
		{"student1@example.edu", "", "50", "assignment", 0},
		{"student1@example.edu", strings.Repeat("x", 101), "50", "assignment", 0},
		{"not-an-email", "Essay 1", "50", "student_email", 0},
		{"not-an-email", "", "x", "student_email", 0},
	}
	for _, tt := range tests {
		in, f := validateGrade(tt.email, tt.assignment, tt.score)
		if f.Focus() != tt.bad {
			t.Errorf("validateGrade(%q, %q, %q): first error on %q (%v), want %q", tt.email, tt.assignment, tt.score, f.Focus(), f.Errors, tt.bad)
			continue
		}
		if tt.bad == "" && (in.Score != tt.wantScore || in.Email != strings.ToLower(strings.TrimSpace(tt.email))) {
			t.Errorf("validateGrade(%q, %q, %q) = %+v, want score %v", tt.email, tt.assignment, tt.score, in, tt.wantScore)
		}
		// The form keeps what was typed, to show it again.
		if f.Get("student_email") != tt.email || f.Get("assignment") != tt.assignment || f.Get("score") != tt.score {
			t.Errorf("validateGrade(%q, %q, %q) kept %v, want the input as typed", tt.email, tt.assignment, tt.score, f.Values)
		}
	}
}

func TestParseSecret(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    DBCredentials
		wantErr bool
	}{
		{"full", `{"username":"app","password":"s3cret-pw","host":"db.internal","port":5432,"dbname":"courses"}`,
			DBCredentials{"app", "s3cret-pw", "db.internal", 5432, "courses"}, false},
		{"string port", `{"username":"app","password":"s3cret-pw","port":"6432"}`, DBCredentials{Username: "app", Password: "s3cret-pw", Port: 6432}, false},
		{"no password", `{"username":"app"}`, DBCredentials{}, true},
		{"bad port", `{"username":"app","password":"s3cret-pw","port":70000}`, DBCredentials{}, true},
		{"not json", `s3cret-pw`, DBCredentials{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSecret(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret-pw") {
				t.Errorf("error leaks the secret: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCredentialsNeverLogged checks that neither slog nor %v print the password.
func TestCredentialsNeverLogged(t *testing.T) {
	c := DBCredentials{Username: "app", Password: "hunter2-very-secret", Host: "h", Port: 5432, DBName: "d"}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("creds", "c", c)
	log.Info("creds", slog.Any("c", &c))
	fmt.Fprintf(&buf, "%v %+v %s", c, c, c)
	if strings.Contains(buf.String(), "hunter2") {
		t.Errorf("password leaked: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "app") {
		t.Errorf("username missing from log: %s", buf.String())
	}
}

func TestMakePDF(t *testing.T) {
	pdf := makePDF("Biology (intro): Syllabus", []string{"line one", `back\slash`})
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(pdf, []byte("%%EOF\n")) {
		t.Fatalf("not a PDF: %q", pdf)
	}
	// Every xref offset must point at "N 0 obj".
	m := regexp.MustCompile(`startxref\n(\d+)\n`).FindSubmatch(pdf)
	if m == nil {
		t.Fatal("no startxref")
	}
	xref, _ := strconv.Atoi(string(m[1]))
	if !bytes.HasPrefix(pdf[xref:], []byte("xref\n")) {
		t.Fatalf("startxref %d does not point at xref", xref)
	}
	entries := regexp.MustCompile(`(\d{10}) 00000 n `).FindAllSubmatch(pdf[xref:], -1)
	if len(entries) != 5 {
		t.Fatalf("got %d xref entries, want 5", len(entries))
	}
	for i, e := range entries {
		off, _ := strconv.Atoi(string(e[1]))
		want := fmt.Sprintf("%d 0 obj", i+1)
		if !bytes.HasPrefix(pdf[off:], []byte(want)) {
			t.Errorf("xref entry %d points at %q, want %q", i+1, pdf[off:off+10], want)
		}
	}
	if !bytes.Contains(pdf, []byte(`Biology \(intro\)`)) {
		t.Errorf("parentheses not escaped")
	}
}

func TestServeConfigValidate(t *testing.T) {
	good := serveConfig{Listen: "127.0.1.3:8080", ShutdownTimeout: time.Second, StartupTimeout: time.Second, MaxConns: 8, RetryBudget: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	bad := good
	bad.Listen = "8080"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "--listen") {
		t.Errorf("want --listen error, got %v", err)
	}
	bad = good
	bad.MaxConns = 0
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "--max-conns") {
		t.Errorf("want --max-conns error, got %v", err)
	}
	for flag, mut := range map[string]func(*serveConfig){
		"--trusted-proxies":     func(c *serveConfig) { c.TrustedProxies = "10.0.0.1" },
		"--proxy-hops":          func(c *serveConfig) { c.ProxyHops = -1 },
		"--login-window":        func(c *serveConfig) { c.Throttle.Window = time.Millisecond },
		"--login-account-limit": func(c *serveConfig) { c.Throttle.AccountLimit = -3 },
	} {
		bad = good
		mut(&bad)
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("want %s error, got %v", flag, err)
		}
	}
	// Defaults fill in before validation; the trusted list is parsed.
	ok := good
	ok.TrustedProxies, ok.ProxyHops = "10.0.0.0/8", 2
	if err := ok.Validate(); err != nil || ok.Throttle.AccountLimit != DefaultAccountLimit || ok.clientIP.Hops != 2 || len(ok.clientIP.TrustedProxies) != 1 {
		t.Errorf("Validate = %v, config %+v", err, ok)
	}
}

func TestDefaultListen(t *testing.T) {
	t.Setenv("HOST", "127.0.1.3")
	t.Setenv("PORT", "9090")
	if got, want := defaultListen(), "127.0.1.3:9090"; got != want {
		t.Errorf("defaultListen() = %q, want %q", got, want)
	}
}

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// TestResetPoolOncePerFailover checks that many requests failing together
// reset the pool once, not once each.
func TestResetPoolOncePerFailover(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	db, err := OpenDB(context.Background(), DBConfig{ConnString: "host=127.0.0.1 port=1 user=x dbname=x", Clock: clk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	started := clk.Now().UnixNano()
	clk.now = clk.now.Add(time.Millisecond)
	for range 5 { // five requests that started together all fail
		db.resetPool(started)
	}
	if got := db.Resets(); got != 1 {
		t.Errorf("resets after 5 concurrent failures = %d, want 1", got)
	}
	clk.now = clk.now.Add(time.Second)
	db.resetPool(clk.Now().UnixNano()) // a later attempt fails again
	if got := db.Resets(); got != 2 {
		t.Errorf("resets after a later failure = %d, want 2", got)
	}
}

// TestRetryBudget checks, with a fake clock and a dead address, that a read
// gives up with ErrDBUnavailable after the budget and not before.
func TestRetryBudget(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	port := freePort(t) // nothing listens there
	db, err := OpenDB(context.Background(), DBConfig{ConnString: fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", port),
		Clock: clk, Logger: testLogger(t), RetryBudget: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := clk.Now()
	calls := 0
	err = db.Read(context.Background(), func(ctx context.Context, q Querier) error {
		calls++
		_, err := q.Exec(ctx, "SELECT 1")
		return err
	})
	if !errors.Is(err, ErrDBUnavailable) {
		t.Fatalf("err = %v, want ErrDBUnavailable", err)
	}
	if spent := clk.Now().Sub(start); spent > 8*time.Second || spent < 4*time.Second {
		t.Errorf("waited %v of fake time, want within (4s, 8s]", spent)
	}
	if calls < 5 {
		t.Errorf("attempts = %d, want several", calls)
	}
}

func TestGroupGrades(t *testing.T) {
	in := []Grade{
		{CourseID: 1, CourseCode: "A", Assignment: "Essay"},
		{CourseID: 1, CourseCode: "A", Assignment: "Quiz"},
		{CourseID: 2, CourseCode: "B", Assignment: "Quiz"},
	}
	got := groupGrades(in)
	if len(got) != 2 || len(got[0].Grades) != 2 || len(got[1].Grades) != 1 || got[1].Code != "B" {
		t.Errorf("groupGrades = %+v", got)
	}
	if got := groupGrades(nil); len(got) != 0 {
		t.Errorf("groupGrades(nil) = %+v, want empty", got)
	}
}

// movingCreds is a secret whose endpoint moved: it names from until the
// app invalidates it, then to.
type movingCreds struct {
	mu               sync.Mutex
	from, to         int
	invalidated      bool
	fetches, invalid int
}

func (m *movingCreds) Credentials(context.Context) (DBCredentials, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fetches++
	port := m.from
	if m.invalidated {
		port = m.to
	}
	return DBCredentials{Username: "u", Password: "p", Host: "127.0.0.1", Port: port, DBName: "d"}, nil
}

func (m *movingCreds) Invalidate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.invalidated = true
	m.invalid++
}

// TestRefusedConnectionRereadsTheSecret: when the database's address
// refuses connections (its endpoint moved), the app reads the secret again
// and its next connection goes to the address the secret now names.
func TestRefusedConnectionRereadsTheSecret(t *testing.T) {
	if endpointGone(&net.OpError{Op: "read", Err: syscall.ECONNREFUSED}) || endpointGone(errors.New("x")) {
		t.Error("endpointGone: true for an error that is not a refused connection attempt")
	}
	moved, err := net.Listen("tcp", "127.0.0.1:0") // the new address: accepts, then hangs up
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	var accepted sync.WaitGroup
	accepted.Add(1)
	var once sync.Once
	go func() {
		for {
			c, err := moved.Accept()
			if err != nil {
				return
			}
			once.Do(accepted.Done)
			c.Close()
		}
	}()
	creds := &movingCreds{from: freePort(t), to: moved.Addr().(*net.TCPAddr).Port}
	clk := &fakeClock{now: time.Unix(1000, 0)}
	db, err := OpenDB(context.Background(), DBConfig{ConnString: "host=127.0.0.1 port=1 user=x dbname=x sslmode=disable",
		Clock: clk, Logger: testLogger(t), RetryBudget: 2 * time.Second, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Read(context.Background(), func(ctx context.Context, q Querier) error {
		_, err := q.Exec(ctx, "SELECT 1")
		return err
	})
	if !errors.Is(err, ErrDBUnavailable) {
		t.Fatalf("err = %v, want ErrDBUnavailable (the new address hangs up)", err)
	}
	accepted.Wait() // a connection reached the new address
	creds.mu.Lock()
	defer creds.mu.Unlock()
	if creds.invalid != 1 || creds.fetches < 2 {
		t.Errorf("invalidated %d times, fetched %d times; want 1 invalidation (the refused connection; the new address's hang-ups are not refusals) and a fetch after it",
			creds.invalid, creds.fetches)
	}
}
