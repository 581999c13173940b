package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"golang.org/x/crypto/bcrypt"
)

// The browser test drives the app in a real headless Chromium, as a teacher
// would: log in (landing on the page asked for), open the gradebook of the
// seed's 651-student course, search for a student, edit a grade, export the
// CSV, and log out. On every page it runs axe-core (vendored in
// testdata/axe, never from a CDN) and requires zero violations, in the light
// and the dark colour scheme. Screenshots of each step are kept in
// testdata/artifacts/browser (git-ignored), or in $COURSES_TEST_ARTIFACTS.
//
// It needs Chromium. Without it the test fails, and says how to install it:
// a browser test that skips itself is a test nobody runs.

// findChromium returns the Chromium binary: $HAVEN_CHROMIUM (the variable
// internal/headless reads, so one setting serves every browser test), or the
// first of the usual names on PATH. The app imports nothing from internal/,
// so this is its own copy of that rule.
func findChromium() (string, error) {
	if p := os.Getenv("HAVEN_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("find chromium: HAVEN_CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("find chromium: no chromium, chromium-browser or google-chrome on PATH; " +
		"the browser test needs it: install Debian's chromium (apt-get update && apt-get install -y chromium, " +
		"which scripts/setup does), or set HAVEN_CHROMIUM to a Chromium or Chrome binary")
}

// artifactsDir is where the screenshots go; it is emptied first.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("COURSES_TEST_ARTIFACTS")
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

type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// browserRun is the state of one browser session.
type browserRun struct {
	t     *testing.T
	ctx   context.Context
	base  string
	dir   string
	axe   string
	shots int
	pages int
	found int // axe violations
}

// stepTimeout bounds one step, so a step that hangs names itself.
const stepTimeout = 60 * time.Second

// do runs steps and fails the test on error.
func (b *browserRun) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// load runs a step that loads a new page (a click on a link or a submit
// button) and waits for the page's load event.
func (b *browserRun) load(what string, trigger chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, trigger)); err != nil {
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
	return strings.TrimPrefix(loc, b.base)
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

// shot saves a full-page screenshot as NN-name.png.
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

// checkA11y runs axe-core on the current page and fails on any violation.
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

func TestBrowserTeacherGradebook(t *testing.T) {
	chromium, err := findChromium()
	if err != nil {
		t.Fatal(err)
	}
	axe, err := os.ReadFile(filepath.Join("testdata", "axe", "axe.min.js"))
	if err != nil {
		t.Fatalf("read vendored axe-core: %v", err)
	}
	dir := artifactsDir(t)
	t.Logf("screenshots go to %s", dir)

	// The app over TLS, as the browser meets it behind the load balancer
	// (its cookies are Secure), on a database with the seed's large course.
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
	srv, err := NewServer(ServerConfig{DB: db, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.StartTLS()
	t.Cleanup(hs.Close)

	// A fresh profile, no sandbox (CI runs as root), nothing in the
	// background that would reach the network.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.IgnoreCertErrors, // httptest's certificate
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	life, stop := context.WithTimeout(context.Background(), 3*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); stop() })
	b := &browserRun{t: t, ctx: bctx, base: hs.URL, dir: dir, axe: string(axe)}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatalf("start chromium (%s): %v", chromium, err)
	}

	// 1. Ask for the gradebook while logged out: the login page, which
	// remembers where we were going.
	want := "/courses/1/gradebook"
	b.do("open the gradebook logged out", chromedp.Navigate(hs.URL+want), chromedp.WaitVisible(chromedp.ID("email")))
	if loc := b.location(); loc != "/login?next="+url.QueryEscape(want) {
		t.Errorf("logged out, %s went to %s", want, loc)
	}
	b.shot("login")
	b.checkA11y("login page")

	// 2. Log in as the course's teacher: back at the gradebook.
	b.do("fill in the login form",
		chromedp.SendKeys(chromedp.ID("email"), "teacher1@example.edu"),
		chromedp.SendKeys(chromedp.ID("password"), testPassword))
	b.load("log in", chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)))
	if loc := b.location(); loc != want {
		t.Fatalf("after login the browser is at %s, want %s", loc, want)
	}
	b.do("see the gradebook", chromedp.WaitVisible(chromedp.CSS("table.gradebook")))
	if got := b.text("#gb-count"); !strings.Contains(got, "Showing 1–50 of 651") {
		t.Errorf("gradebook count = %q, want Showing 1–50 of 651", got)
	}
	if got := b.text("footer"); !strings.Contains(got, "teacher1@example.edu") {
		t.Errorf("footer = %q, want the signed-in teacher", got)
	}
	b.shot("gradebook")
	b.checkA11y("gradebook")
	// The same page in the dark colour scheme.
	b.do("emulate the dark scheme", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return err
	}))
	b.shot("gradebook-dark")
	b.checkA11y("gradebook, dark scheme")
	b.do("back to the light scheme", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}})
		return err
	}))

	// 3. Search for one student by name.
	var name string
	if err := db.Pool().QueryRow(ctx, `SELECT name FROM users WHERE id = 417`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	b.do("type a search", chromedp.SendKeys(chromedp.ID("q"), name))
	b.load("search", chromedp.Click(chromedp.CSS(`form[role="search"] button`)))
	b.do("see the search results", chromedp.WaitVisible(chromedp.ID("s-417")))
	if got := b.text("#gb-count"); !strings.Contains(got, "match") || !strings.Contains(got, name) {
		t.Errorf("search summary = %q", got)
	}
	b.shot("search")
	b.checkA11y("search results")

	// 4. Edit student 417's Quiz 1.
	b.load("open the grade", chromedp.Click(chromedp.CSS(`#s-417 a[href*="assignment=Quiz%201"]`)))
	b.do("see the edit form", chromedp.WaitVisible(chromedp.ID("score")))
	if got := b.text("h1"); got != "Edit grade" {
		t.Errorf("edit page heading = %q", got)
	}
	b.shot("edit-grade")
	b.checkA11y("edit grade")
	b.do("type a new score", chromedp.Clear(chromedp.ID("score")), chromedp.SendKeys(chromedp.ID("score"), "88.5"))
	b.load("save the grade", chromedp.Click(chromedp.CSS(`form[action$="/gradebook/edit"] button[type="submit"]`)))
	b.do("see the saved row", chromedp.WaitVisible(chromedp.CSS("#s-417.saved")))
	if got := b.text(`p.notice.ok`); got != "Grade saved for "+name+"." {
		t.Errorf("message after saving = %q", got)
	}
	if loc := b.location(); !strings.Contains(loc, "saved=417") || !strings.Contains(loc, "#s-417") {
		t.Errorf("after saving the browser is at %s", loc)
	}
	cell := b.text(`#s-417 a[href*="assignment=Quiz%201"]`)
	if !strings.HasPrefix(cell, "88.5") {
		t.Errorf("Quiz 1 cell after saving = %q, want 88.5", cell)
	}
	var score float64
	if err := db.Pool().QueryRow(ctx, `SELECT score::float8 FROM grades WHERE course_id = 1 AND student_id = 417 AND assignment = 'Quiz 1'`).Scan(&score); err != nil || score != 88.5 {
		t.Errorf("database score = %v (%v), want 88.5", score, err)
	}
	b.shot("grade-saved")
	b.checkA11y("gradebook after saving")

	// 5. Export the whole course as CSV.
	b.load("clear the search", chromedp.Click(chromedp.CSS(`#gb-count a`)))
	downloads := filepath.Join(t.TempDir(), "downloads")
	dctx, cancelDownload := context.WithTimeout(bctx, stepTimeout)
	defer cancelDownload()
	progress := chromedp.Events(dctx, browser.DownloadProgress)
	b.do("download the CSV",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: new(true)})
			return err
		}),
		chromedp.Click(chromedp.CSS(`a[href$="/gradebook.csv"]`)))
	var file string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("wait for the download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatalf("the CSV download was cancelled")
		}
		if ev.State == browser.DownloadProgressStateCompleted {
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
		t.Fatalf("parse the downloaded CSV: %v", err)
	}
	if len(recs) != 652 {
		t.Errorf("downloaded CSV: %d lines, want a header and 651 students", len(recs))
	}
	quiz := slices.Index(recs[0], "Quiz 1")
	for _, r := range recs[1:] {
		if r[1] == "student417@example.edu" && (quiz < 0 || r[quiz] != "88.5") {
			t.Errorf("downloaded CSV: student 417 = %q, want Quiz 1 = 88.5", r)
		}
	}

	// 6. Other pages: the course page and a 404, which keeps the
	// navigation and the user.
	b.load("open the course", chromedp.Click(chromedp.CSS(`p.crumbs a[href="/courses/1"]`)))
	b.do("see the course", chromedp.WaitVisible(chromedp.ID("grade")))
	b.shot("course")
	b.checkA11y("course page (teacher)")
	nctx, cancelNav := context.WithTimeout(bctx, stepTimeout)
	resp, err := chromedp.Run(nctx, chromedp.NavigateResponse(hs.URL+"/courses/1/no-such-page"))
	cancelNav()
	if err != nil || resp.Status != http.StatusNotFound {
		t.Errorf("404 page: %v, %v", resp, err)
	}
	if got := b.text("nav"); !strings.Contains(got, "My courses") || !strings.Contains(got, "Log out") {
		t.Errorf("404 page navigation = %q", got)
	}
	b.shot("not-found")
	b.checkA11y("404 page")

	// 7. Log out: the login page says so.
	b.load("log out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	if got := b.text(`p.notice.ok`); !strings.Contains(got, "You have logged out") {
		t.Errorf("after logout: %q", got)
	}
	b.shot("logged-out")
	b.checkA11y("login page after logout")
	t.Logf("axe-core 4.14.1: %d violations on %d pages; %d screenshots in %s", b.found, b.pages, b.shots, dir)
}
