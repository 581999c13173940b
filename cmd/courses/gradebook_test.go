package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestCSVSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Amara Okafor", "Amara Okafor"},
		{"", ""},
		{"=HYPERLINK(\"http://evil.example\",\"x\")", "'=HYPERLINK(\"http://evil.example\",\"x\")"},
		{"+1+1", "'+1+1"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1:A9)", "'@SUM(A1:A9)"},
		{"\t=1", "'\t=1"},
		{"\r=1", "'\r=1"},
		{"  =1+1", "'  =1+1"},
		{"＝1+1", "'＝1+1"},
		{"O'Brien", "O'Brien"},
		{"Anne-Marie", "Anne-Marie"},
		{"a=b", "a=b"},
	}
	for _, tt := range tests {
		if got := csvSafe(tt.in); got != tt.want {
			t.Errorf("csvSafe(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPageWindow(t *testing.T) {
	tests := []struct {
		cur, pages int
		want       []int
	}{
		{1, 1, []int{1}},
		{1, 3, []int{1, 2, 3}},
		{1, 14, []int{1, 2, 3, 0, 14}},
		{7, 14, []int{1, 0, 5, 6, 7, 8, 9, 0, 14}},
		{14, 14, []int{1, 0, 12, 13, 14}},
		{4, 14, []int{1, 2, 3, 4, 5, 6, 0, 14}},
	}
	for _, tt := range tests {
		if got := pageWindow(tt.cur, tt.pages); !slices.Equal(got, tt.want) {
			t.Errorf("pageWindow(%d, %d) = %v, want %v", tt.cur, tt.pages, got, tt.want)
		}
	}
	if got := clampPage("99", 14); got != 14 {
		t.Errorf("clampPage(99, 14) = %d", got)
	}
	if got := clampPage("x", 14); got != 1 {
		t.Errorf("clampPage(x, 14) = %d", got)
	}
}

func TestBuildRows(t *testing.T) {
	students := []User{{ID: 1, Name: "A"}, {ID: 2, Name: "B"}}
	cols := []AssignmentStat{{Name: "Quiz"}, {Name: "Essay"}}
	grades := []gradeRow{{1, "Essay", 80}, {1, "Quiz", 60}, {2, "Quiz", 90}, {3, "Quiz", 10}, {2, "Gone", 5}}
	rows := buildRows(students, cols, grades)
	if len(rows) != 2 {
		t.Fatalf("rows = %d", len(rows))
	}
	a, b := rows[0], rows[1]
	if a.Cells[0] != (GradebookCell{"Quiz", 60, true}) || a.Cells[1] != (GradebookCell{"Essay", 80, true}) || a.Total != 140 || a.Graded != 2 || a.Average != 70 {
		t.Errorf("row A = %+v", a)
	}
	if b.Cells[0] != (GradebookCell{"Quiz", 90, true}) || b.Cells[1].Has || b.Total != 90 || b.Graded != 1 || b.Average != 90 {
		t.Errorf("row B = %+v", b)
	}
}

func TestNormSearchAndFilename(t *testing.T) {
	if got := normSearch("  Müller "); got != "Müller" {
		t.Errorf("normSearch = %q", got)
	}
	if got := normSearch(strings.Repeat("é", 80)); len(got) > maxSearchLen || !strings.HasPrefix(strings.Repeat("é", 80), got) {
		t.Errorf("normSearch of a long string = %d bytes, valid prefix: %v", len(got), strings.HasPrefix(strings.Repeat("é", 80), got))
	}
	if got := csvFilename(`BIO-100-1`); got != "BIO-100-1-grades.csv" {
		t.Errorf("csvFilename = %q", got)
	}
	if got := csvFilename(`a"b/c\d`); got != "a_b_c_d-grades.csv" {
		t.Errorf("csvFilename of an odd code = %q", got)
	}
}

func TestSafeNext(t *testing.T) {
	ok := []string{"/courses", "/courses/1/gradebook?q=ana&page=2", "/grades", "/courses/1/gradebook?q=m%C3%BCller"}
	for _, n := range ok {
		if got := safeNext(n); got != n {
			t.Errorf("safeNext(%q) = %q, want it unchanged", n, got)
		}
	}
	bad := []string{"", "courses", "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example",
		"https://evil.example/", "http:/evil.example", "/%2F%2Fevil.example", "/%5Cevil.example", "javascript:alert(1)",
		"/courses\n/x", "/courses\t", " /courses", "/login", "/login?next=/x", "/logout", "/api/me", "/a b",
		"/" + strings.Repeat("a", 3000)}
	for _, n := range bad {
		if got := safeNext(n); got != "" {
			t.Errorf("safeNext(%q) = %q, want refused", n, got)
		}
	}
}

func TestMigrationsExpandOnly(t *testing.T) {
	// After the initial schema, a migration may add but never take away:
	// an older app version runs side by side during a rolling deploy.
	forbidden := regexp.MustCompile(`(?i)\b(DROP|RENAME|TRUNCATE|DELETE|UPDATE)\b|ALTER\s+COLUMN|SET\s+NOT\s+NULL|ADD\s+COLUMN\s+\w+\s+[^,;]*\bNOT\s+NULL\b(?:[^,;]*\bDEFAULT\b)?`)
	for _, m := range migrations[1:] {
		if m.breakingReason() != "" {
			continue // a contract step, marked: haven deploy refuses it without --allow-breaking
		}
		if loc := forbidden.FindString(m.sql); loc != "" {
			// NOT NULL with a DEFAULT is fine (PostgreSQL 11+ adds it without
			// a rewrite, and old inserts get the default).
			if strings.Contains(strings.ToUpper(loc), "DEFAULT") {
				continue
			}
			t.Errorf("migration %d (%s) is not expand-only: %q", m.version, m.name, loc)
		}
	}
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migration %d has version %d: versions must be 1, 2, 3, ... in order", i, m.version)
		}
	}
}

// TestMigrationsListed: `courses migrations --json` lists every migration
// in order, with none of today's breaking; a migration carrying the marker is
// reported breaking with its reason, and the marker anywhere else is not one.
func TestMigrationsListed(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"migrations", "--json"}, &out, &errb); err != nil {
		t.Fatalf("courses migrations --json: %v\n%s", err, errb.String())
	}
	var got []MigrationInfo
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not a JSON list: %v\n%s", err, out.String())
	}
	if len(got) != len(migrations) {
		t.Fatalf("%d migrations listed, want %d", len(got), len(migrations))
	}
	for i, m := range got {
		if m.Version != migrations[i].version || m.Name != migrations[i].name || m.Breaking {
			t.Errorf("listed %+v, want version %d %q, not breaking", m, migrations[i].version, migrations[i].name)
		}
	}

	contract := migration{4, "drop id_token", `
-- breaking: drops sessions.id_token, which versions before 4 still write
ALTER TABLE sessions DROP COLUMN id_token;`}
	quoted := migration{5, "comment", `COMMENT ON TABLE sessions IS 'see -- breaking: below';`}
	l := migrationList([]migration{contract, quoted})
	if !l[0].Breaking || l[0].Reason != "drops sessions.id_token, which versions before 4 still write" {
		t.Errorf("marked migration listed as %+v, want breaking with its reason", l[0])
	}
	if l[1].Breaking {
		t.Errorf("the marker inside a statement made %+v breaking; only a line starting with it counts", l[1])
	}
}

// TestSeedLargeCourse checks the seed's course 1: exactly the first 651
// students, graded, so the gradebook can be tried at a real class size.
func TestSeedLargeCourse(t *testing.T) {
	pg := startPG(t)
	log := testLogger(t)
	db := openTestDB(t, pg, log)
	ctx := context.Background()
	if _, err := Migrate(ctx, db, log); err != nil {
		t.Fatal(err)
	}
	cfg := SeedConfig{Students: 1000, Courses: 10, Password: testPassword, hashCost: bcrypt.MinCost}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	res, err := Seed(ctx, db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.LargeCourse != 651 {
		t.Errorf("LargeCourse = %d, want 651", res.LargeCourse)
	}
	var n, lo, hi, assignments, graded int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*), min(student_id), max(student_id) FROM enrolments WHERE course_id = 1`).Scan(&n, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if n != 651 || lo != 1 || hi != 651 {
		t.Errorf("course 1: %d students, ids %d..%d; want 651, 1..651", n, lo, hi)
	}
	if err := db.Pool().QueryRow(ctx, `SELECT count(DISTINCT assignment), count(DISTINCT student_id) FROM grades WHERE course_id = 1`).Scan(&assignments, &graded); err != nil {
		t.Fatal(err)
	}
	if assignments < 5 || graded != 651 {
		t.Errorf("course 1 grades: %d assignments, %d students graded; want ≥5 and every one of 651", assignments, graded)
	}
	var teacher string
	if err := db.Pool().QueryRow(ctx, `SELECT u.email FROM courses c JOIN users u ON u.id = c.teacher_id WHERE c.id = 1`).Scan(&teacher); err != nil || teacher != "teacher1@example.edu" {
		t.Errorf("course 1's teacher = %q (%v), want teacher1@example.edu", teacher, err)
	}
	// Everyone else still has their courses.
	var without int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM users u WHERE role = 'student' AND NOT EXISTS (SELECT 1 FROM enrolments e WHERE e.student_id = u.id)`).Scan(&without); err != nil || without != 0 {
		t.Errorf("students without a course: %d (%v)", without, err)
	}
}

// gradebookFixture is a seeded database with a 651-student course 1, and
// teacher1 logged in.
type gradebookFixture struct {
	db      *DB
	base    string
	teacher *client
	csrf    string
}

func newGradebookFixture(t *testing.T) *gradebookFixture {
	t.Helper()
	pg := startPG(t)
	log := testLogger(t)
	db := openTestDB(t, pg, log)
	ctx := context.Background()
	if _, err := Migrate(ctx, db, log); err != nil {
		t.Fatal(err)
	}
	cfg := SeedConfig{Students: 700, Courses: 10, Teachers: 2, Password: testPassword, hashCost: bcrypt.MinCost}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Seed(ctx, db, cfg); err != nil {
		t.Fatal(err)
	}
	_, hs := newTestServer(t, db)
	c := newClient(t, hs.URL)
	me := c.apiLogin("teacher1@example.edu", testPassword)
	return &gradebookFixture{db: db, base: hs.URL, teacher: c, csrf: me.CSRFToken}
}

var (
	rowRe     = regexp.MustCompile(`<tr id="s-(\d+)"`)
	showingRe = regexp.MustCompile(`Showing (\d+)–(\d+) of (\d+)`)
)

func TestGradebook(t *testing.T) {
	f := newGradebookFixture(t)
	ctx := context.Background()
	c := f.teacher

	// Page 1 of 651 students, 50 rows, with every assignment as a column.
	resp, page := c.get("/courses/1/gradebook")
	if resp.StatusCode != 200 {
		t.Fatalf("gradebook: %d\n%s", resp.StatusCode, page)
	}
	if m := showingRe.FindStringSubmatch(page); m == nil || m[1] != "1" || m[2] != "50" || m[3] != "651" {
		t.Errorf("gradebook page 1 says %v, want Showing 1–50 of 651", m)
	}
	if rows := rowRe.FindAllStringSubmatch(page, -1); len(rows) != 50 {
		t.Errorf("gradebook page 1 has %d rows, want 50", len(rows))
	}
	var assignments []string
	rows, err := f.db.Pool().Query(ctx, `SELECT DISTINCT assignment FROM grades WHERE course_id = 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a string
		_ = rows.Scan(&a)
		assignments = append(assignments, a)
	}
	for _, a := range assignments {
		if !strings.Contains(page, `<th scope="col" class="num">`+a+`</th>`) {
			t.Errorf("gradebook has no column for %q", a)
		}
	}
	// The last page holds the last student; an out-of-range page is clamped.
	resp, page = c.get("/courses/1/gradebook?page=999")
	if m := showingRe.FindStringSubmatch(page); resp.StatusCode != 200 || m == nil || m[1] != "651" || m[2] != "651" {
		t.Errorf("gradebook page 999: %d, %v; want Showing 651–651", resp.StatusCode, m)
	}
	if !strings.Contains(page, `aria-current="page"><span class="sr-only">Page </span>14</a>`) {
		t.Errorf("page 14 is not marked current")
	}

	// Course averages agree with the database's own arithmetic.
	var quizAvg float64
	if err := f.db.Pool().QueryRow(ctx, `SELECT avg(score)::float8 FROM grades WHERE course_id = 1 AND assignment = 'Quiz 1'`).Scan(&quizAvg); err != nil {
		t.Fatal(err)
	}
	if want := strconv.FormatFloat(quizAvg, 'f', 1, 64) + `<span class="meta graded">`; !strings.Contains(page, want) {
		t.Errorf("course average of Quiz 1: page lacks %q", want)
	}

	// Search finds a student by part of their name, and by email.
	var sid int64
	var name, email string
	if err := f.db.Pool().QueryRow(ctx, `SELECT id, name, email FROM users WHERE id = 417`).Scan(&sid, &name, &email); err != nil {
		t.Fatal(err)
	}
	resp, page = c.get("/courses/1/gradebook?q=" + url.QueryEscape(strings.ToUpper(name)))
	if resp.StatusCode != 200 || !strings.Contains(page, `<tr id="s-417"`) {
		t.Errorf("search by name %q: %d, row 417 missing", name, resp.StatusCode)
	}
	var matches int
	_ = f.db.Pool().QueryRow(ctx, `SELECT count(*) FROM enrolments e JOIN users u ON u.id = e.student_id
		WHERE e.course_id = 1 AND strpos(lower(u.name), lower($1)) > 0`, name).Scan(&matches)
	if !strings.Contains(page, fmt.Sprintf("%d student", matches)) {
		t.Errorf("search by name: page does not say %d matches", matches)
	}
	resp, page = c.get("/courses/1/gradebook?q=student417%40")
	if got := rowRe.FindAllStringSubmatch(page, -1); resp.StatusCode != 200 || len(got) != 1 || got[0][1] != "417" {
		t.Errorf("search by email: %d, rows %v; want exactly student 417", resp.StatusCode, got)
	}
	// A search that matches nobody says so.
	if _, page := c.get("/courses/1/gradebook?q=zzzz-nobody"); !strings.Contains(page, "No student matches this search.") {
		t.Errorf("empty search result not explained")
	}

	// Edit one grade: the form, a rejected score that is kept and
	// explained by its field, then a saved one.
	editPath := "/courses/1/gradebook/edit?student=417&assignment=" + url.QueryEscape("Quiz 1") + "&q=student417%40"
	resp, page = c.get(editPath)
	if resp.StatusCode != 200 || !strings.Contains(page, name) || !strings.Contains(page, `name="assignment" value="Quiz 1"`) {
		t.Fatalf("edit page: %d\n%s", resp.StatusCode, page)
	}
	post := url.Values{"csrf_token": {f.csrf}, "student": {"417"}, "assignment": {"Quiz 1"}, "q": {"student417@"}, "page": {"1"}, "score": {"101"}}
	resp, page = c.postForm("/courses/1/gradebook/edit", post)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, `value="101"`) ||
		!strings.Contains(page, `aria-invalid="true" aria-describedby="score-err"`) || !strings.Contains(page, msgGradeScore) {
		t.Errorf("invalid score: %d; want 422 with the input kept and the error by the field\n%s", resp.StatusCode, page)
	}
	post.Set("score", "93.5")
	resp, _ = c.postForm("/courses/1/gradebook/edit", post)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/courses/1/gradebook?q=student417%40&saved=417#s-417" {
		t.Errorf("save: %d → %q", resp.StatusCode, loc)
	}
	var score float64
	if err := f.db.Pool().QueryRow(ctx, `SELECT score::float8 FROM grades WHERE course_id = 1 AND student_id = 417 AND assignment = 'Quiz 1'`).Scan(&score); err != nil || score != 93.5 {
		t.Errorf("saved score = %v (%v), want 93.5", score, err)
	}
	_, page = c.get("/courses/1/gradebook?q=student417%40&saved=417")
	if !strings.Contains(page, "Grade saved for "+htmlEsc(name)+".") || !strings.Contains(page, `<tr id="s-417" class="saved">`) {
		t.Errorf("gradebook after save lacks the message or the highlighted row")
	}
	// Without the CSRF token: refused.
	post.Del("csrf_token")
	if resp, _ := c.postForm("/courses/1/gradebook/edit", post); resp.StatusCode != http.StatusForbidden {
		t.Errorf("edit without CSRF token: %d, want 403", resp.StatusCode)
	}

	// CSV export of the whole course, with a formula-injection attempt in a
	// student's name and in an assignment name.
	evil := `=HYPERLINK("http://evil.example","click")`
	if _, err := f.db.Pool().Exec(ctx, `UPDATE users SET name = $1 WHERE id = 2`, evil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Pool().Exec(ctx, `INSERT INTO grades (course_id, student_id, assignment, score) VALUES (1, 3, '@SUM(1+1)', 50)`); err != nil {
		t.Fatal(err)
	}
	resp, body := c.get("/courses/1/gradebook.csv")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="`+csvFilename(courseCode(t, f.db, 1))+`"` {
		t.Fatalf("csv: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
	}
	if !strings.HasPrefix(body, "\uFEFF") {
		t.Errorf("csv has no UTF-8 byte order mark")
	}
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "\uFEFF"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 652 {
		t.Errorf("csv has %d lines, want a header and 651 students", len(recs))
	}
	header := recs[0]
	if header[0] != "Name" || header[1] != "Email" || header[len(header)-3] != "Total" || !slices.Contains(header, "'@SUM(1+1)") {
		t.Errorf("csv header = %q", header)
	}
	quiz := slices.Index(header, "Quiz 1")
	found := 0
	for _, r := range recs[1:] {
		switch r[1] {
		case "student417@example.edu":
			found++
			if r[quiz] != "93.5" {
				t.Errorf("csv: student 417's Quiz 1 = %q, want 93.5", r[quiz])
			}
		case "student2@example.edu":
			found++
			if r[0] != "'"+evil {
				t.Errorf("csv: formula in a name not defused: %q", r[0])
			}
		}
		for _, cell := range r {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("csv cell a spreadsheet would run: %q", cell)
			}
		}
	}
	if found != 2 {
		t.Errorf("csv: found %d of students 417 and 2", found)
	}
	// The export follows the search.
	if _, body := c.get("/courses/1/gradebook.csv?q=student417%40"); strings.Count(body, "\n") != 2 {
		t.Errorf("csv with a search: %d lines, want 2", strings.Count(body, "\n"))
	}

	// Only the course's teacher: another teacher and a student get 404.
	other := newClient(t, f.base)
	other.apiLogin("teacher2@example.edu", testPassword)
	for _, p := range []string{"/courses/1/gradebook", "/courses/1/gradebook.csv", editPath} {
		if resp, _ := other.get(p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("another teacher GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	st := newClient(t, f.base)
	sme := st.apiLogin("student1@example.edu", testPassword)
	if resp, _ := st.get("/courses/1/gradebook"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("student GET gradebook: %d, want 404", resp.StatusCode)
	}
	if resp, _ := st.postForm("/courses/1/gradebook/edit", url.Values{"csrf_token": {sme.CSRFToken}, "student": {"1"}, "assignment": {"Quiz 1"}, "score": {"100"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("student POST a grade edit: %d, want 404", resp.StatusCode)
	}
}

func htmlEsc(s string) string {
	r := strings.NewReplacer("'", "&#39;", `"`, "&#34;", "&", "&amp;", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}

func courseCode(t *testing.T, db *DB, id int64) string {
	t.Helper()
	var code string
	if err := db.Pool().QueryRow(context.Background(), `SELECT code FROM courses WHERE id = $1`, id).Scan(&code); err != nil {
		t.Fatal(err)
	}
	return code
}

// TestPagesKeepInputAndIdentity covers issue 18's complaints about the
// teacher view: a failed grade post clears the form and shows its error
// off-screen; error pages lose the navigation and the signed-in user; a
// user always lands on "my courses"; no favicon; no message after logout.
func TestPagesKeepInputAndIdentity(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	_, hs := newTestServer(t, db)

	t.Run("grade form keeps its input", func(t *testing.T) {
		c := newClient(t, hs.URL)
		me := c.apiLogin("teacher1@example.edu", testPassword)
		form := url.Values{"csrf_token": {me.CSRFToken}, "student_email": {"student1@example.edu"}, "assignment": {"Oral exam"}, "score": {"150"}}
		resp, page := c.postForm("/courses/1/grades", form)
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("invalid grade: %d, want 422", resp.StatusCode)
		}
		for _, want := range []string{`value="student1@example.edu"`, `value="Oral exam"`, `value="150"`,
			`aria-invalid="true" aria-describedby="score-err" autofocus`, `<p id="score-err" class="field-error">` + htmlEsc(msgGradeScore)} {
			if !strings.Contains(page, want) {
				t.Errorf("invalid grade page lacks %q", want)
			}
		}
		// The error sits inside the form, not at the top of the page.
		if i, j := strings.Index(page, `id="grade-h"`), strings.Index(page, "score-err"); i < 0 || j < i {
			t.Errorf("the score error is not inside the grade form")
		}
		// A student who is not in the course: the error is on the email.
		form = url.Values{"csrf_token": {me.CSRFToken}, "student_email": {"nobody@example.edu"}, "assignment": {"Oral exam"}, "score": {"70"}}
		resp, page = c.postForm("/courses/1/grades", form)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, `id="student_email-err"`) || !strings.Contains(page, `value="70"`) {
			t.Errorf("not-enrolled student: %d; want 422 with the error by the email field and the score kept", resp.StatusCode)
		}
	})

	t.Run("error pages keep navigation and identity", func(t *testing.T) {
		c := newClient(t, hs.URL)
		c.apiLogin("teacher1@example.edu", testPassword)
		for _, p := range []string{"/no-such-page", "/courses/999999", "/courses/1/gradebook/edit?student=x"} {
			resp, page := c.get(p)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
			}
			if !strings.Contains(page, `<nav aria-label="Main">`) || !strings.Contains(page, `action="/logout"`) ||
				!strings.Contains(page, "Signed in as ") || !strings.Contains(page, "teacher1@example.edu") {
				t.Errorf("404 at %s lost the navigation or the user:\n%s", p, page)
			}
		}
		// Form expired (a stale CSRF token): the page still knows the user.
		resp, page := c.postForm("/courses/1/grades", url.Values{"csrf_token": {"stale"}, "student_email": {"x@y"}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Form expired") || !strings.Contains(page, "Signed in as ") ||
			!strings.Contains(page, `href="/courses"`) {
			t.Errorf("form expired: %d, navigation or user missing:\n%s", resp.StatusCode, page)
		}
		// A panic's 500 page too.
		s, err := NewServer(ServerConfig{DB: db, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		h := s.recoverer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			withSessionContext(r, &Session{User: User{ID: 9, Email: "teacher9@example.edu", Name: "Dr. Nine", Role: "teacher"}, CSRFToken: "tok"})
			panic("boom")
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/courses", nil))
		if body := rec.Body.String(); rec.Code != http.StatusInternalServerError || !strings.Contains(body, "Signed in as Dr. Nine") ||
			!strings.Contains(body, `action="/logout"`) || strings.Contains(body, "boom") {
			t.Errorf("panic page: %d, want 500 with the navigation and the user, and no panic text:\n%s", rec.Code, body)
		}
		// Anonymous: the navigation offers the login page.
		anon := newClient(t, hs.URL)
		if _, page := anon.get("/no-such-page"); !strings.Contains(page, `<a href="/login">Log in</a>`) {
			t.Errorf("anonymous 404 has no way to log in:\n%s", page)
		}
	})

	t.Run("login lands on the page asked for", func(t *testing.T) {
		c := newClient(t, hs.URL)
		want := "/courses/1/gradebook?q=ana&page=2"
		resp, _ := c.get(want)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || loc != "/login?next="+url.QueryEscape(want) {
			t.Fatalf("anonymous GET %s: %d → %q", want, resp.StatusCode, loc)
		}
		_, page := c.get(loc)
		if !strings.Contains(page, `name="next" value="`+htmlEsc(want)+`"`) {
			t.Fatalf("login page does not carry next:\n%s", page)
		}
		resp, _ = c.postForm("/login", url.Values{"email": {"teacher1@example.edu"}, "password": {testPassword}, "csrf_token": {formToken(t, page)}, "next": {want}})
		if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || got != want {
			t.Errorf("after login: %d → %q, want %q", resp.StatusCode, got, want)
		}
		// Logged in, the login page forwards to next at once.
		if resp, _ := c.get("/login?next=" + url.QueryEscape("/grades")); resp.Header.Get("Location") != "/grades" {
			t.Errorf("logged-in GET /login?next=/grades → %q", resp.Header.Get("Location"))
		}
		// No open redirect: a foreign next is dropped, on the page and after login.
		for _, evil := range []string{"//evil.example/x", "https://evil.example", "/\\evil.example", "/%2F%2Fevil.example"} {
			a := newClient(t, hs.URL)
			_, page := a.get("/login?next=" + url.QueryEscape(evil))
			if strings.Contains(page, `name="next"`) {
				t.Errorf("login page kept next=%q", evil)
			}
			resp, _ := a.postForm("/login", url.Values{"email": {"student1@example.edu"}, "password": {testPassword}, "csrf_token": {formToken(t, page)}, "next": {evil}})
			if got := resp.Header.Get("Location"); got != "/courses" {
				t.Errorf("login with next=%q → %q, want /courses", evil, got)
			}
		}
	})

	t.Run("favicon", func(t *testing.T) {
		c := newClient(t, hs.URL)
		resp, body := c.get("/favicon.ico")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/x-icon" {
			t.Fatalf("favicon: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		b := []byte(body)
		var dir [3]uint16
		_ = binary.Read(bytes.NewReader(b), binary.LittleEndian, &dir)
		size := binary.LittleEndian.Uint32(b[14:18])
		off := binary.LittleEndian.Uint32(b[18:22])
		if dir != [3]uint16{0, 1, 1} || b[6] != 32 || b[7] != 32 || int(off+size) != len(b) {
			t.Fatalf("favicon is not a one-image ICO: dir %v, entry %v", dir, b[6:22])
		}
		img, err := png.Decode(bytes.NewReader(b[off:]))
		if err != nil || img.Bounds().Dx() != 32 {
			t.Errorf("favicon image: %v, %v", err, img)
		}
		if resp, body := c.get("/static/favicon.svg"); resp.StatusCode != 200 || !strings.Contains(body, "<svg") {
			t.Errorf("favicon.svg: %d", resp.StatusCode)
		}
		if _, page := c.get("/login"); !strings.Contains(page, `<link rel="icon" href="/favicon.ico"`) {
			t.Errorf("pages do not link the icon")
		}
	})

	t.Run("message after logout", func(t *testing.T) {
		c := newClient(t, hs.URL)
		me := c.apiLogin("student1@example.edu", testPassword)
		if resp, page := c.get("/logout"); resp.StatusCode != 200 || !strings.Contains(page, `action="/logout"`) {
			t.Errorf("GET /logout: %d, want a confirmation form", resp.StatusCode)
		}
		resp, _ := c.postForm("/logout", url.Values{"csrf_token": {me.CSRFToken}})
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || loc != "/login?msg=logged-out" {
			t.Fatalf("logout: %d → %q", resp.StatusCode, loc)
		}
		if _, page := c.get(loc); !strings.Contains(page, `role="status">You have logged out.`) {
			t.Errorf("no logout message:\n%s", page)
		}
		// Only known messages: the page never echoes the URL.
		if _, page := c.get("/login?msg=" + url.QueryEscape("Your account is locked, call 555")); strings.Contains(page, "555") {
			t.Errorf("login page echoes msg from the URL")
		}
		// A dead session sends the user to log in, saying why, and back.
		c.cookies[sessionCookie] = "stale-token"
		resp, _ = c.get("/grades")
		if loc := resp.Header.Get("Location"); loc != "/login?msg=session-ended&next=%2Fgrades" {
			t.Errorf("stale session → %q", loc)
		}
	})
}
