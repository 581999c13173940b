package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const pgBin = "/usr/lib/postgresql/15/bin"

// testPG is a throwaway PostgreSQL 15 cluster owned by the postgres OS user,
// listening on 127.0.0.1 on a free port, with its socket in its own dir.
type testPG struct {
	dir  string
	data string
	port int
	cred *syscall.Credential
}

// startPG initdb's and starts a cluster; t.Cleanup stops it (-m immediate).
func startPG(t *testing.T) *testPG {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("look up postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := t.TempDir()
	// t.TempDir's parent is 0700 root; postgres must be able to traverse it.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	p := &testPG{dir: dir, data: filepath.Join(dir, "data"), port: freePort(t),
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	p.run(t, pgBin+"/initdb", "-D", p.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
	p.Start(t)
	t.Cleanup(func() {
		cmd := exec.Command(pgBin+"/pg_ctl", "-D", p.data, "-m", "immediate", "-w", "stop")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
		_ = cmd.Run() // already stopped is fine
	})
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (p *testPG) run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = p.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "postgres.log"))
		t.Fatalf("%s %v: %v\n%s\n%s", filepath.Base(name), args, err, out.String(), log)
	}
}

// Start starts the server and waits until it accepts connections.
func (p *testPG) Start(t *testing.T) {
	t.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off -c max_connections=60",
		p.port, p.dir)
	p.run(t, pgBin+"/pg_ctl", "-D", p.data, "-l", filepath.Join(p.dir, "postgres.log"), "-w", "-t", "60", "-o", opts, "start")
}

// Stop kills the server at once, as a crash or failover would.
func (p *testPG) Stop(t *testing.T) {
	t.Helper()
	p.run(t, pgBin+"/pg_ctl", "-D", p.data, "-m", "immediate", "-w", "stop")
}

// ConnString is a libpq connection string for database postgres.
func (p *testPG) ConnString() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=2", p.port)
}

// Env is the PG* environment the platform would set.
func (p *testPG) Env() []string {
	return []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(p.port), "PGUSER=postgres", "PGDATABASE=postgres", "PGSSLMODE=disable"}
}

// testLogger sends slog output through t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// openTestDB opens a pool on p and closes it in t.Cleanup.
func openTestDB(t *testing.T, p *testPG, log *slog.Logger) *DB {
	t.Helper()
	db, err := OpenDB(context.Background(), DBConfig{ConnString: p.ConnString(), Logger: log, RetryBudget: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// seededDB migrates and seeds a small data set.
func seededDB(t *testing.T, p *testPG, log *slog.Logger) *DB {
	t.Helper()
	db := openTestDB(t, p, log)
	ctx := context.Background()
	if _, err := Migrate(ctx, db, log); err != nil {
		t.Fatal(err)
	}
	cfg := SeedConfig{Students: 50, Courses: 5, Password: testPassword, hashCost: bcrypt.MinCost, Progress: io.Discard}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Seed(ctx, db, cfg); err != nil {
		t.Fatal(err)
	}
	return db
}

const testPassword = "exam-week-2026"
