package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// lockGrades holds an EXCLUSIVE lock on grades, so a grade POST blocks in the
// database: a real in-flight request. The returned func releases it.
func lockGrades(t *testing.T, pg *testPG) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE grades IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Commit(ctx)
			_ = conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// waitForLockWaiter waits until a backend is blocked on a lock.
func waitForLockWaiter(t *testing.T, pg *testPG) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for range 250 {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no request is blocked in the database")
}

// gradeTarget picks a course of teacher1 and one of its students.
func gradeTarget(t *testing.T, pg *testPG) (course int64, student string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT c.id, u.email FROM courses c JOIN users t ON t.id = c.teacher_id AND t.email = 'teacher1@example.edu'
		JOIN enrolments e ON e.course_id = c.id JOIN users u ON u.id = e.student_id ORDER BY c.id, u.id LIMIT 1`).Scan(&course, &student); err != nil {
		t.Fatal(err)
	}
	return course, student
}

type httpResult struct {
	status int
	err    error
}

// postGradeAsync posts a grade through the JSON API in the background.
func postGradeAsync(base, cookie, csrf string, course int64, student string) <-chan httpResult {
	out := make(chan httpResult, 1)
	go func() {
		body := fmt.Sprintf(`{"student_email":%q,"assignment":"Shutdown drill","score":77}`, student)
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/courses/%d/grades", base, course), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(csrfHeader, csrf)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			out <- httpResult{0, err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out <- httpResult{resp.StatusCode, nil}
	}()
	return out
}

// waitRefused waits until addr stops accepting connections.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	for range 100 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server still accepts connections after shutdown began")
}

// TestGracefulShutdown cancels serve's context (as SIGTERM does) while a
// request is blocked in the database: the listener closes, the request
// finishes with 200, and serve returns nil.
func TestGracefulShutdown(t *testing.T) {
	pg := startPG(t)
	seededDB(t, pg, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	cfg := serveConfig{Listen: "127.0.0.1:0", ConnString: pg.ConnString(), ShutdownTimeout: 20 * time.Second,
		StartupTimeout: 10 * time.Second, MaxConns: 8, RetryBudget: 8 * time.Second}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	go func() { errc <- runServe(ctx, cfg, testLogger(t), func(a string) { addrc <- a }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("serve: %v", err)
	}
	base := "http://" + addr
	c := newClient(t, base)
	me := c.apiLogin("teacher1@example.edu", testPassword)
	course, student := gradeTarget(t, pg)

	release := lockGrades(t, pg)
	res := postGradeAsync(base, c.cookies[sessionCookie], me.CSRFToken, course, student)
	waitForLockWaiter(t, pg)
	cancel() // SIGTERM
	waitRefused(t, addr)
	select {
	case err := <-errc:
		t.Fatalf("serve returned with a request in flight: %v", err)
	default:
	}
	release()
	if r := <-res; r.err != nil || r.status != 200 {
		t.Errorf("in-flight request: status %d, err %v; want 200", r.status, r.err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("serve returned %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after the last request finished")
	}
}

// TestBinary builds the real binary, seeds with it, serves with the platform's
// env (HOST, PORT, PG*), and SIGTERMs it with a request in flight.
func TestBinary(t *testing.T) {
	pg := startPG(t)
	bin := filepath.Join(t.TempDir(), "courses")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=test-1", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := append(os.Environ(), pg.Env()...)

	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "courses test-1" {
		t.Errorf("version: %q, %v", out, err)
	}

	seed := exec.Command(bin, "seed", "--students", "50", "--courses", "5")
	seed.Env = env
	var seedErr strings.Builder
	seed.Stderr = &seedErr
	out, err = seed.Output()
	if err != nil {
		t.Fatalf("seed: %v\n%s", err, seedErr.String())
	}
	if !strings.Contains(string(out), "seeded 50 students") || !strings.Contains(string(out), testPassword) {
		t.Errorf("seed output: %s", out)
	}
	if !strings.Contains(seedErr.String(), "seed: users 51/51") {
		t.Errorf("seed progress on stderr: %s", seedErr.String())
	}
	seed = exec.Command(bin, "seed", "--students", "50", "--courses", "5")
	seed.Env = env
	if out, err := seed.Output(); err != nil || !strings.Contains(string(out), "already seeded") {
		t.Errorf("second seed: %s %v", out, err)
	}

	port := freePort(t)
	serve := exec.Command(bin, "serve")
	serve.Env = append(env, "HOST=127.0.0.1", fmt.Sprintf("PORT=%d", port))
	stdout, _ := serve.StdoutPipe()
	var stderr strings.Builder
	serve.Stderr = &stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if serve.ProcessState == nil {
			_ = serve.Process.Kill()
			_ = serve.Wait()
		}
	})
	var logMu sync.Mutex
	var logLines []string
	ready := make(chan string, 1)
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logLines = append(logLines, line)
			logMu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "serving" {
				ready <- m["addr"].(string)
			}
		}
	}()
	var addr string
	select {
	case addr = <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start; stderr: %s", stderr.String())
	}
	if want := fmt.Sprintf("127.0.0.1:%d", port); addr != want {
		t.Errorf("listening on %s, want %s (HOST:PORT)", addr, want)
	}
	base := "http://" + addr
	c := newClient(t, base)
	resp, _ := c.do("GET", "/healthz", "", nil, map[string]string{"X-Request-Id": "req-from-lb-42"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != "req-from-lb-42" {
		t.Errorf("healthz: %d, request id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	if resp, _ := c.get("/static/style.css"); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("style.css: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	me := c.apiLogin("teacher1@example.edu", testPassword)
	sessionValue := c.cookies[sessionCookie]
	course, student := gradeTarget(t, pg)

	release := lockGrades(t, pg)
	res := postGradeAsync(base, sessionValue, me.CSRFToken, course, student)
	waitForLockWaiter(t, pg)
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitRefused(t, addr)
	release()
	if r := <-res; r.err != nil || r.status != 200 {
		t.Errorf("in-flight request across SIGTERM: status %d, err %v; want 200", r.status, r.err)
	}
	waitErr := make(chan error, 1)
	go func() { <-scanDone; waitErr <- serve.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("serve exit: %v, want exit 0; stderr: %s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}

	logMu.Lock()
	all := strings.Join(logLines, "\n")
	logMu.Unlock()
	var sawAccess bool
	for _, l := range logLines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("stdout line is not JSON: %q", l)
			continue
		}
		if m["msg"] == "request" && m["path"] == "/healthz" && m["request_id"] == "req-from-lb-42" && m["status"] == float64(200) && m["method"] == "GET" {
			sawAccess = true
		}
	}
	if !sawAccess {
		t.Errorf("no JSON access log line for /healthz with the request id:\n%s", all)
	}
	for _, secret := range []string{testPassword, sessionValue, me.CSRFToken} {
		if strings.Contains(all, secret) || strings.Contains(stderr.String(), secret) {
			t.Errorf("log contains a secret value %q", secret[:4]+"…")
		}
	}
}
