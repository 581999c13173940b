package ssotest

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/haven-platform/haven/internal/headless"
)

// The browser test drives the whole single sign-on flow in a headless
// Chromium, as a teacher would: the app sends them to the provider's login
// page, they sign in there and come back signed in as the teacher of the
// seed's 651-student course, open its gradebook, search a student, edit a
// grade, export the CSV, and log out; then the app and the provider both say
// they are signed out. axe-core (vendored in cmd/courses/testdata/axe)
// checks every page, the provider's included, and requires zero violations.
// Screenshots go to testdata/artifacts/browser (git-ignored), or to
// $SSOTEST_ARTIFACTS.
//
// It needs Chromium; without it the test fails and says how to install it.

type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

type browserRun struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	axe   string
	shots int
	pages int
	found int
}

const stepTimeout = 60 * time.Second

func (b *browserRun) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// load runs a step that loads a new page and waits for its load event
// (after every redirect of the way).
func (b *browserRun) load(what string, trigger chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(cdppage.LoadEventFired, nil, trigger)); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

func (b *browserRun) location() string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return loc
}

// errorCode is the network error Chromium's error page shows (such as
// net::ERR_CONNECTION_RESET), or "" on any other page.
func (b *browserRun) errorCode() string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('.error-code') || {textContent: ''}).textContent.trim()`))
	if err != nil {
		return "error code unknown: " + err.Error()
	}
	return s
}

func (b *browserRun) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.shot("failed-text")
		b.t.Fatalf("browser: text of %s: %v", sel, err)
	}
	return s
}

func (b *browserRun) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	b.shots++
	if err := os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.shots, name)), png, 0o644); err != nil {
		b.t.Error(err)
	}
}

func (b *browserRun) checkA11y(name string) {
	b.t.Helper()
	b.pages++
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](b.axe+"\n;void 0")); err != nil {
		b.t.Fatalf("inject axe-core on %s: %v", name, err)
	}
	vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]axeViolation](`axe.run(document, {resultTypes: ['violations']}).then(r =>
		r.violations.map(v => ({id: v.id, impact: v.impact || '', help: v.help,
			nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').replace(/\s+/g, ' '))})))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("run axe-core on %s: %v", name, err)
	}
	b.found += len(vs)
	for _, v := range vs {
		b.t.Errorf("axe on %s (%s): %s [%s] %s: %s", name, b.location(), v.ID, v.Impact, v.Help, strings.Join(v.Nodes, " | "))
	}
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SSOTEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts", "browser")
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

func TestBrowserTeacherSSO(t *testing.T) {
	bin, err := headless.Find()
	if err != nil {
		t.Fatal(err)
	}
	axe, err := os.ReadFile(filepath.Join(repoRoot(), "cmd", "courses", "testdata", "axe", "axe.min.js"))
	if err != nil {
		t.Fatalf("read the vendored axe-core: %v", err)
	}
	dir := artifactsDir(t)
	t.Logf("screenshots go to %s", dir)

	// The seed's course 1 has 651 students (student1..student651).
	r := newRegion(t, options{students: 700, courses: 10, teachers: 2})

	opts := append(headless.Options(bin, t.TempDir(), 1280, 900), chromedp.IgnoreCertErrors) // the region's CA
	// Chromium's own network log goes with the screenshots: a navigation
	// that ends on an error page is explained there (the default capture
	// mode leaves cookies and credentials out).
	opts = append(opts, chromedp.Flag("log-net-log", filepath.Join(dir, "netlog.json")))
	life, stop := context.WithTimeout(context.Background(), 4*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); stop() })
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	b := &browserRun{t: t, ctx: bctx, dir: dir, axe: string(axe)}

	// 1. The gradebook, signed out: the app's login page, offering the
	// university account and remembering the page asked for.
	want := "/courses/1/gradebook"
	b.do("open the gradebook signed out", chromedp.Navigate(r.appURL+want), chromedp.WaitVisible(chromedp.ID("sso")))
	if loc := b.location(); loc != r.appURL+"/login?next="+url.QueryEscape(want) {
		t.Errorf("signed out, %s went to %s", want, loc)
	}
	b.shot("app-login")
	b.checkA11y("app login page with single sign-on")

	// 2. To the provider's login page.
	b.load("choose the university account", chromedp.Click(chromedp.ID("sso")))
	if loc := b.location(); !strings.HasPrefix(loc, r.issuer+"/login?authRequestID=") {
		t.Fatalf("the university account link went to %s", loc)
	}
	if got := b.text("h1"); got != "Sign in" {
		t.Errorf("provider page heading = %q", got)
	}
	b.shot("idp-login")
	b.checkA11y("provider login page")

	// 3. A wrong password first: the error sits at the field.
	b.do("type a wrong password", chromedp.SendKeys(chromedp.ID("username"), teacherEmail), chromedp.SendKeys(chromedp.ID("password"), "not-it"))
	b.load("submit the wrong password", chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)))
	if got := b.text("#login-err"); !strings.Contains(got, "do not match") {
		t.Errorf("wrong password message = %q", got)
	}
	b.shot("idp-login-error")
	b.checkA11y("provider login page with an error")

	// 4. The right one: back at the gradebook, signed in as the teacher.
	b.do("type the password", chromedp.Clear(chromedp.ID("password")), chromedp.SendKeys(chromedp.ID("password"), idpPassword))
	b.load("sign in", chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)))
	if loc := b.location(); loc != r.appURL+want {
		b.shot("failed-sign-in")
		t.Fatalf("after signing in the browser is at %s (%s), want %s", loc, b.errorCode(), r.appURL+want)
	}
	b.do("see the gradebook", chromedp.WaitVisible(chromedp.CSS("table.gradebook")))
	if got := b.text("#gb-count"); !strings.Contains(got, "Showing 1–50 of 651") {
		t.Errorf("gradebook count = %q, want Showing 1–50 of 651", got)
	}
	if got := b.text("footer"); !strings.Contains(got, teacherEmail) || !strings.Contains(got, "teacher") {
		t.Errorf("footer = %q, want the signed-in teacher", got)
	}
	b.shot("gradebook")
	b.checkA11y("gradebook")

	// 5. Search a student by name.
	var name string
	if err := r.db.QueryRow(context.Background(), `SELECT name FROM users WHERE id = 417`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	b.do("type a search", chromedp.SendKeys(chromedp.ID("q"), name))
	b.load("search", chromedp.Click(chromedp.CSS(`form[role="search"] button`)))
	b.do("see the student", chromedp.WaitVisible(chromedp.ID("s-417")))
	b.shot("search")
	b.checkA11y("search results")

	// 6. Edit the student's Quiz 1.
	b.load("open the grade", chromedp.Click(chromedp.CSS(`#s-417 a[href*="assignment=Quiz%201"]`)))
	b.do("see the edit form", chromedp.WaitVisible(chromedp.ID("score")))
	b.do("type a new score", chromedp.Clear(chromedp.ID("score")), chromedp.SendKeys(chromedp.ID("score"), "91.5"))
	b.load("save the grade", chromedp.Click(chromedp.CSS(`form[action$="/gradebook/edit"] button[type="submit"]`)))
	b.do("see the saved row", chromedp.WaitVisible(chromedp.CSS("#s-417.saved")))
	if got := b.text(`p.notice.ok`); got != "Grade saved for "+name+"." {
		t.Errorf("message after saving = %q", got)
	}
	var score float64
	if err := r.db.QueryRow(context.Background(), `SELECT score::float8 FROM grades WHERE course_id = 1 AND student_id = 417 AND assignment = 'Quiz 1'`).Scan(&score); err != nil || score != 91.5 {
		t.Errorf("database score = %v (%v), want 91.5", score, err)
	}
	b.shot("grade-saved")
	b.checkA11y("gradebook after saving")

	// 7. Export the course as CSV.
	b.load("clear the search", chromedp.Click(chromedp.CSS(`#gb-count a`)))
	downloads := filepath.Join(t.TempDir(), "downloads")
	dctx, cancelDownload := context.WithTimeout(bctx, stepTimeout)
	defer cancelDownload()
	progress := chromedp.Events(dctx, cdpbrowser.DownloadProgress)
	b.do("download the CSV",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
				Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: new(true)})
			return err
		}),
		chromedp.Click(chromedp.CSS(`a[href$="/gradebook.csv"]`)))
	var file string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("wait for the download: %v", err)
		}
		if ev.State == cdpbrowser.DownloadProgressStateCanceled {
			t.Fatal("the CSV download was cancelled")
		}
		if ev.State == cdpbrowser.DownloadProgressStateCompleted {
			file = filepath.Join(downloads, ev.GUID)
			break
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "gradebook.csv"), data, 0o644)
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(data), "\uFEFF"))).ReadAll()
	if err != nil {
		t.Fatalf("parse the CSV: %v", err)
	}
	if len(recs) != 652 {
		t.Errorf("CSV: %d lines, want a header and 651 students", len(recs))
	}
	quiz := slices.Index(recs[0], "Quiz 1")
	for _, row := range recs[1:] {
		if row[1] == "student417@example.edu" && (quiz < 0 || row[quiz] != "91.5") {
			t.Errorf("CSV: student 417 = %q, want Quiz 1 = 91.5", row)
		}
	}

	// 8. Log out: through the provider's end_session and back; the app says
	// both sessions ended.
	b.load("log out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	if loc := b.location(); loc != r.appURL+"/login?msg=sso-logged-out" {
		t.Errorf("after logout the browser is at %s", loc)
	}
	if got := b.text(`p.notice.ok`); got != "You have logged out of Courses and of your university account." {
		t.Errorf("app after logout: %q", got)
	}
	if got := b.text("footer"); !strings.Contains(got, "Not signed in") {
		t.Errorf("app footer after logout = %q", got)
	}
	b.shot("app-logged-out")
	b.checkA11y("app login page after logout")

	// 9. The provider says so too.
	b.do("open the provider", chromedp.Navigate(r.issuer+"/"), chromedp.WaitVisible(chromedp.ID("signed-out")))
	if got := b.text("#signed-out"); !strings.HasPrefix(got, "You are not signed in.") {
		t.Errorf("provider after logout: %q", got)
	}
	b.shot("idp-signed-out")
	b.checkA11y("provider home page")

	// 10. And the gradebook asks for a login again.
	b.do("open the gradebook again", chromedp.Navigate(r.appURL+want), chromedp.WaitVisible(chromedp.ID("sso")))
	if loc := b.location(); !strings.HasPrefix(loc, r.appURL+"/login?next=") {
		t.Errorf("the gradebook after logout went to %s", loc)
	}
	t.Logf("axe-core 4.14.1: %d violations on %d pages (%d of the provider); %d screenshots in %s", b.found, b.pages, 3, b.shots, dir)
}
