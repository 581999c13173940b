package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// client is a tiny browser: it keeps cookies by hand (the session cookie is
// Secure, and httptest serves plain HTTP) and never follows redirects.
type client struct {
	t       *testing.T
	base    string
	hc      *http.Client
	cookies map[string]string
}

func newClient(t *testing.T, base string) *client {
	return &client{t: t, base: base, cookies: map[string]string{}, hc: &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (c *client) do(method, path, contentType string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	for k, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	return resp, string(b)
}

func (c *client) get(path string) (*http.Response, string) { return c.do("GET", path, "", nil, nil) }

func (c *client) postForm(path string, v url.Values) (*http.Response, string) {
	return c.do("POST", path, "application/x-www-form-urlencoded", strings.NewReader(v.Encode()), nil)
}

func (c *client) apiLogin(email, password string) meResponse {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	resp, b := c.do("POST", "/api/login", "application/json", strings.NewReader(string(body)), nil)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("api login: status %d: %s", resp.StatusCode, b)
	}
	var me meResponse
	if err := json.Unmarshal([]byte(b), &me); err != nil {
		c.t.Fatal(err)
	}
	return me
}

var csrfInput = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func formToken(t *testing.T, page string) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf_token in page:\n%s", page)
	}
	return m[1]
}

func newTestServer(t *testing.T, db *DB) (*Server, *httptest.Server) {
	t.Helper()
	s, err := NewServer(ServerConfig{DB: db, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return s, hs
}

// newHTTPTestServer serves s on a loopback port until the test ends and
// returns its base URL.
func newHTTPTestServer(t *testing.T, s *Server) string {
	t.Helper()
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

func TestMigrateConcurrent(t *testing.T) {
	pg := startPG(t)
	log := testLogger(t)
	ctx := context.Background()
	const n = 4
	var wg sync.WaitGroup
	applied := make([][]int, n)
	errs := make([]error, n)
	for i := range n {
		db := openTestDB(t, pg, log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = Migrate(ctx, db, log)
		}()
	}
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("migrator %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != len(migrations) {
		t.Errorf("migrations applied %d times in total, want %d (each exactly once)", total, len(migrations))
	}
	db := openTestDB(t, pg, log)
	var rows int
	if err := db.Pool().QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(migrations) {
		t.Errorf("schema_migrations has %d rows, want %d", rows, len(migrations))
	}
	again, err := Migrate(ctx, db, log)
	if err != nil || len(again) != 0 {
		t.Errorf("second run applied %v, err %v; want nothing", again, err)
	}
}

func TestSeedSmall(t *testing.T) {
	pg := startPG(t)
	log := testLogger(t)
	db := openTestDB(t, pg, log)
	ctx := context.Background()
	if _, err := Migrate(ctx, db, log); err != nil {
		t.Fatal(err)
	}
	cfg := SeedConfig{Students: 50, Courses: 5, Password: testPassword}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	cfg.Progress = &progress
	res, err := Seed(ctx, db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || res.Students != 50 || res.Teachers != 1 || res.Courses != 5 || res.Materials != 15 {
		t.Errorf("result = %+v", res)
	}
	if !strings.Contains(progress.String(), "users 51/51") {
		t.Errorf("progress output missing users line: %q", progress.String())
	}
	counts := map[string]int{}
	for _, tbl := range []string{"users", "courses", "enrolments", "materials", "grades"} {
		var n int
		if err := db.Pool().QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		counts[tbl] = n
	}
	if counts["users"] != 51 || counts["courses"] != 5 || counts["materials"] != 15 || counts["enrolments"] != res.Enrolments || counts["grades"] != res.Grades {
		t.Errorf("counts = %v, result = %+v", counts, res)
	}
	// With 5 courses every student gets 4-5 distinct ones.
	if counts["enrolments"] < 50*4 || counts["enrolments"] > 50*5 {
		t.Errorf("enrolments = %d, want 200-250", counts["enrolments"])
	}
	var email, role string
	if err := db.Pool().QueryRow(ctx, "SELECT email, role FROM users WHERE id = 50").Scan(&email, &role); err != nil {
		t.Fatal(err)
	}
	if email != "student50@example.edu" || role != "student" {
		t.Errorf("user 50 = %s/%s, want student50@example.edu/student", email, role)
	}
	var hashes int
	if err := db.Pool().QueryRow(ctx, "SELECT count(DISTINCT password_hash) FROM users").Scan(&hashes); err != nil {
		t.Fatal(err)
	}
	if hashes != 1 {
		t.Errorf("distinct password hashes = %d, want 1 (hashed once)", hashes)
	}

	// Seeding again is a no-op.
	res2, err := Seed(ctx, db, cfg)
	if err != nil || !res2.Skipped {
		t.Errorf("second seed = %+v, %v; want skipped", res2, err)
	}
	// --force replaces everything, deterministically.
	var before string
	_ = db.Pool().QueryRow(ctx, "SELECT string_agg(course_id || ':' || student_id, ',' ORDER BY student_id, course_id) FROM enrolments").Scan(&before)
	cfg.Force = true
	if res3, err := Seed(ctx, db, cfg); err != nil || res3.Skipped {
		t.Fatalf("forced seed = %+v, %v", res3, err)
	}
	var after string
	_ = db.Pool().QueryRow(ctx, "SELECT string_agg(course_id || ':' || student_id, ',' ORDER BY student_id, course_id) FROM enrolments").Scan(&after)
	if before != after || before == "" {
		t.Errorf("seed is not deterministic")
	}
}

func TestLoginFlowAndCSRF(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	_, hs := newTestServer(t, db)
	c := newClient(t, hs.URL)

	resp, _ := c.get("/courses")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("anonymous /courses: %d → %q, want 303 → /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := c.get("/login")
	if resp.StatusCode != 200 || !strings.Contains(page, `<label for="email">`) {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, page)
	}
	tok := formToken(t, page)

	// No token: 403, and no session.
	resp, _ = c.postForm("/login", url.Values{"email": {"student1@example.edu"}, "password": {testPassword}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("login without CSRF token: %d, want 403", resp.StatusCode)
	}
	// Wrong token: 403, and a fresh form that keeps the email and says why.
	resp, page = c.postForm("/login", url.Values{"email": {"student1@example.edu"}, "password": {testPassword}, "csrf_token": {tok + "x"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, `value="student1@example.edu"`) || !strings.Contains(page, "form had expired") {
		t.Errorf("login with wrong CSRF token: %d, want 403 and the form again with the email kept\n%s", resp.StatusCode, page)
	}
	if _, ok := c.cookies[sessionCookie]; ok {
		t.Fatal("session cookie set without CSRF token")
	}
	tok = formToken(t, page) // the fresh form's token matches the fresh cookie
	// Wrong password: 401 and the form again.
	resp, page = c.postForm("/login", url.Values{"email": {"student1@example.edu"}, "password": {"wrong-password"}, "csrf_token": {tok}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "do not match") {
		t.Errorf("wrong password: %d", resp.StatusCode)
	}
	tok = formToken(t, page)
	resp, _ = c.postForm("/login", url.Values{"email": {"student1@example.edu"}, "password": {testPassword}, "csrf_token": {tok}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/courses" {
		t.Fatalf("login: %d → %q, want 303 → /courses", resp.StatusCode, resp.Header.Get("Location"))
	}
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			sc = ck
		}
	}
	if sc == nil || !sc.Secure || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie = %+v, want Secure, HttpOnly, SameSite=Lax", sc)
	}

	resp, page = c.get("/courses")
	if resp.StatusCode != 200 || !strings.Contains(page, "My courses") || !strings.Contains(page, `href="/courses/`) {
		t.Fatalf("dashboard: %d\n%s", resp.StatusCode, page)
	}
	courseID := regexp.MustCompile(`href="/courses/(\d+)"`).FindStringSubmatch(page)[1]
	resp, page = c.get("/courses/" + courseID)
	if resp.StatusCode != 200 || !strings.Contains(page, "Syllabus") {
		t.Fatalf("course page: %d\n%s", resp.StatusCode, page)
	}
	dl := regexp.MustCompile(`href="(/courses/\d+/materials/\d+/download)"`).FindStringSubmatch(page)[1]
	resp, body := c.get(dl)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || !strings.HasPrefix(body, "%PDF-") ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("download: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
	}
	if resp, _ := c.get("/grades"); resp.StatusCode != 200 {
		t.Errorf("grades page: %d", resp.StatusCode)
	}
	// A course the student is not enrolled in is a 404, not a leak.
	var other int64
	if err := db.Pool().QueryRow(context.Background(),
		"SELECT min(id) FROM courses WHERE id NOT IN (SELECT course_id FROM enrolments WHERE student_id = 1)").Scan(&other); err == nil && other > 0 {
		if resp, _ := c.get(fmt.Sprintf("/courses/%d", other)); resp.StatusCode != 404 {
			t.Errorf("foreign course: %d, want 404", resp.StatusCode)
		}
	}

	// JSON API shares the session.
	resp, body = c.get("/api/me")
	var me meResponse
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &me) != nil || me.User.Email != "student1@example.edu" {
		t.Fatalf("/api/me: %d %s", resp.StatusCode, body)
	}
	resp, body = c.get("/api/courses")
	if resp.StatusCode != 200 || !strings.Contains(body, `"courses"`) {
		t.Errorf("/api/courses: %d %s", resp.StatusCode, body)
	}
	resp, body = c.get("/api/courses/" + courseID)
	if resp.StatusCode != 200 || !strings.Contains(body, `"materials"`) {
		t.Errorf("/api/courses/id: %d %s", resp.StatusCode, body)
	}
	if resp, _ := c.get("/api/grades"); resp.StatusCode != 200 {
		t.Errorf("/api/grades: %d", resp.StatusCode)
	}

	// Logout without token: 403 and still logged in; with token: logged out.
	resp, _ = c.postForm("/logout", url.Values{})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp, _ := c.get("/api/me"); resp.StatusCode != 200 {
		t.Errorf("session gone after rejected logout: %d", resp.StatusCode)
	}
	resp, _ = c.postForm("/logout", url.Values{"csrf_token": {me.CSRFToken}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d, want 303", resp.StatusCode)
	}
	oldCookie := sc.Value
	c.cookies[sessionCookie] = oldCookie // a stolen copy must be dead too
	if resp, _ := c.get("/api/me"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/api/me after logout: %d, want 401", resp.StatusCode)
	}
}

func TestTeacherPostsGrade(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	_, hs := newTestServer(t, db)
	c := newClient(t, hs.URL)
	me := c.apiLogin("teacher1@example.edu", testPassword)
	if me.User.Role != "teacher" {
		t.Fatalf("teacher1 role = %q", me.User.Role)
	}
	var course int64
	var student string
	if err := db.Pool().QueryRow(context.Background(), `SELECT c.id, u.email FROM courses c JOIN enrolments e ON e.course_id = c.id
		JOIN users u ON u.id = e.student_id WHERE c.teacher_id = $1 ORDER BY c.id, u.id LIMIT 1`, me.User.ID).Scan(&course, &student); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/courses/%d/grades", course)
	form := url.Values{"student_email": {student}, "assignment": {"Oral exam"}, "score": {"91.5"}}
	resp, _ := c.postForm(path, form)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("grade without CSRF token: %d, want 403", resp.StatusCode)
	}
	form.Set("csrf_token", me.CSRFToken)
	resp, _ = c.postForm(path, form)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "msg=graded") {
		t.Fatalf("grade: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Posting again replaces (idempotent upsert).
	form.Set("score", "92")
	c.postForm(path, form)
	var n int
	var score float64
	if err := db.Pool().QueryRow(context.Background(), `SELECT count(*), max(score)::float8 FROM grades g JOIN users u ON u.id = g.student_id
		WHERE g.course_id = $1 AND u.email = $2 AND assignment = 'Oral exam'`, course, student).Scan(&n, &score); err != nil {
		t.Fatal(err)
	}
	if n != 1 || score != 92 {
		t.Errorf("grade rows = %d, score = %v; want 1, 92", n, score)
	}
	// The student sees it.
	sc := newClient(t, hs.URL)
	sc.apiLogin(student, testPassword)
	if _, body := sc.get("/api/grades"); !strings.Contains(body, "Oral exam") {
		t.Errorf("student grades miss the new grade: %s", body)
	}
	// Students cannot grade.
	_, body := sc.get("/api/me")
	var sme meResponse
	_ = json.Unmarshal([]byte(body), &sme)
	resp, _ = sc.postForm(path, url.Values{"student_email": {student}, "assignment": {"x"}, "score": {"100"}, "csrf_token": {sme.CSRFToken}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("student grading: %d, want 403", resp.StatusCode)
	}
}

func TestSessionAcrossInstances(t *testing.T) {
	pg := startPG(t)
	log := testLogger(t)
	dbA := seededDB(t, pg, log)
	dbB := openTestDB(t, pg, log) // a separate pool, as a separate instance has
	_, a := newTestServer(t, dbA)
	_, b := newTestServer(t, dbB)

	ca := newClient(t, a.URL)
	me := ca.apiLogin("student7@example.edu", testPassword)
	token := ca.cookies[sessionCookie]
	// The browser's next request lands on another instance behind the LB.
	cb := newClientWith(t, b.URL, map[string]string{sessionCookie: token})
	resp, body := cb.get("/api/me")
	if resp.StatusCode != 200 || !strings.Contains(body, "student7@example.edu") {
		t.Fatalf("instance B /api/me: %d %s", resp.StatusCode, body)
	}
	// CSRF token issued by A is accepted by B: logout on B.
	resp, _ = cb.do("POST", "/api/logout", "", nil, map[string]string{csrfHeader: me.CSRFToken})
	if resp.StatusCode != 200 {
		t.Fatalf("logout on B: %d", resp.StatusCode)
	}
	// A sees the logout too: the old cookie is dead everywhere.
	stale := newClientWith(t, a.URL, map[string]string{sessionCookie: token})
	if resp, _ := stale.get("/api/me"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("logged-out cookie on A: %d, want 401", resp.StatusCode)
	}
}

func newClientWith(t *testing.T, base string, cookies map[string]string) *client {
	c := newClient(t, base)
	c.cookies = cookies
	return c
}

func TestHealthzDoesNotTouchDB(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	srv, hs := newTestServer(t, db)
	c := newClient(t, hs.URL)
	if resp, _ := c.get("/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz with DB up: %d", resp.StatusCode)
	}
	pg.Stop(t)
	resp, body := c.get("/healthz")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz with DB down: %d %q, want 200 ok", resp.StatusCode, body)
	}
	if resp, _ := c.get("/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with DB down: %d, want 503", resp.StatusCode)
	}
	pg.Start(t)
	srv.SetDraining()
	if resp, body := c.get("/readyz"); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("readyz while draining: %d %q, want 503 draining", resp.StatusCode, body)
	}
}

// TestRetryAcrossRestart restarts PostgreSQL under a logged-in user: a read
// issued while the server is down waits, retries, and succeeds once it is
// back; reads right after the restart succeed on fresh connections.
func TestRetryAcrossRestart(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	_, hs := newTestServer(t, db)
	c := newClient(t, hs.URL)
	c.apiLogin("student3@example.edu", testPassword)
	for range 3 { // fill the pool with connections that the restart will kill
		if resp, _ := c.get("/api/courses"); resp.StatusCode != 200 {
			t.Fatalf("warm-up: %d", resp.StatusCode)
		}
	}
	resetsBefore := db.Resets()
	pg.Stop(t)
	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", hs.URL+"/api/courses", nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: c.cookies[sessionCookie]})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b)}
	}()
	// Wait until the request has failed at least once (it is retrying).
	deadline := time.Now().Add(5 * time.Second)
	for db.Resets() == resetsBefore && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if db.Resets() == resetsBefore {
		t.Fatal("request did not hit the dead database")
	}
	pg.Start(t)
	r := <-done
	if r.status != 200 || !strings.Contains(r.body, `"courses"`) {
		t.Fatalf("read across restart: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/api/me", "/courses", "/api/grades"} {
		if resp, _ := c.get(p); resp.StatusCode != 200 {
			t.Errorf("%s after restart: %d", p, resp.StatusCode)
		}
	}
}

// TestDBPolicy checks the retry policy on a real server: errors before COMMIT
// are retried for writes, a lost connection mid-transaction too, and the
// budget ends in a friendly ErrDBUnavailable.
func TestDBPolicy(t *testing.T) {
	pg := startPG(t)
	log := testLogger(t)
	db := openTestDB(t, pg, log)
	ctx := context.Background()
	if _, err := db.Pool().Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}

	// A read-only error (what a demoted primary says) before COMMIT: retried.
	attempts := 0
	err := db.Write(ctx, func(ctx context.Context, tx pgx.Tx) error {
		attempts++
		if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
			return err
		}
		if attempts == 1 {
			return &pgconn.PgError{Code: "25006", Message: "cannot execute INSERT in a read-only transaction"}
		}
		return nil
	})
	if err != nil || attempts != 2 {
		t.Errorf("write after 25006: err %v, attempts %d; want nil, 2", err, attempts)
	}

	// The connection dies mid-transaction: not committed, so retried.
	attempts = 0
	err = db.Write(ctx, func(ctx context.Context, tx pgx.Tx) error {
		attempts++
		if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
			return err
		}
		if attempts == 1 {
			_, err := tx.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
			return err
		}
		return nil
	})
	if err != nil || attempts != 2 {
		t.Errorf("write after killed backend: err %v, attempts %d; want nil, 2", err, attempts)
	}
	var n int
	_ = db.Pool().QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
	if n != 2 {
		t.Errorf("rows = %d, want 2 (each write applied once)", n)
	}

	// An application error is not retried.
	attempts = 0
	err = db.Write(ctx, func(ctx context.Context, tx pgx.Tx) error {
		attempts++
		_, err := tx.Exec(ctx, "INSERT INTO t VALUES (1)") // duplicate key
		return err
	})
	if err == nil || attempts != 1 {
		t.Errorf("duplicate key: err %v, attempts %d; want error, 1", err, attempts)
	}

	// Database gone for longer than the budget: ErrDBUnavailable.
	short, err := OpenDB(ctx, DBConfig{ConnString: pg.ConnString(), Logger: log, RetryBudget: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	pg.Stop(t)
	err = short.Read(ctx, func(ctx context.Context, q Querier) error {
		_, err := q.Exec(ctx, "SELECT 1")
		return err
	})
	if !errors.Is(err, ErrDBUnavailable) {
		t.Errorf("read with DB down: %v, want ErrDBUnavailable", err)
	}
}
