package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserTeacherUpload: a teacher adds a material in a real Chromium,
// with the course page's upload form and its script: the file goes from the
// browser straight to the bucket (a presigned PUT across origins, through the
// bucket's CORS rule and the page's connect-src), the app confirms it, and
// the page lists it. The form passes axe-core.
func TestBrowserTeacherUpload(t *testing.T) {
	chromium, err := findChromium()
	if err != nil {
		t.Fatal(err)
	}
	axe, err := os.ReadFile(filepath.Join("testdata", "axe", "axe.min.js"))
	if err != nil {
		t.Fatalf("read vendored axe-core: %v", err)
	}
	pg := startPG(t)
	log := testLogger(t)
	db := seededDB(t, pg, log)
	bucket := newFakeBucket(t)
	srv, err := NewServer(ServerConfig{DB: db, Logger: log, Materials: testMaterials(t, bucket, false)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.StartTLS()
	t.Cleanup(hs.Close)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true), chromedp.IgnoreCertErrors,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	life, stop := context.WithTimeout(context.Background(), 2*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); stop() })
	b := &browserRun{t: t, ctx: bctx, base: hs.URL, dir: t.TempDir(), axe: string(axe)}
	// The browser starts with the first action on bctx itself (a step's
	// shorter context would end it).
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatalf("start chromium (%s): %v", chromium, err)
	}

	b.do("open the course logged out", chromedp.Navigate(hs.URL+"/courses/1"), chromedp.WaitVisible(chromedp.ID("email")))
	b.do("fill in the login form", chromedp.SendKeys(chromedp.ID("email"), "teacher1@example.edu"), chromedp.SendKeys(chromedp.ID("password"), testPassword))
	b.load("log in", chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)))
	b.do("see the upload form", chromedp.WaitVisible(chromedp.ID("upload")))
	b.checkA11y("course page with the upload form")

	file := filepath.Join(t.TempDir(), "Week 4 (slides).txt")
	content := "Week 4: recursion, with examples.\n"
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	b.do("choose a title and a file",
		chromedp.SendKeys(chromedp.ID("up-title"), "Week 4 slides"),
		chromedp.SetUploadFiles(chromedp.ID("up-file"), []string{file}))
	b.load("upload", chromedp.Click(chromedp.CSS(`#upload button[type="submit"]`)))
	b.do("see the new material", chromedp.WaitVisible(chromedp.CSS(`a[href$="/Week-4-slides-.txt"]`)))
	if got := b.text("ul.files"); !strings.Contains(got, "Week 4 slides") {
		t.Errorf("materials after the upload = %q", got)
	}
	bucket.mu.Lock()
	defer bucket.mu.Unlock()
	var found bool
	for key, o := range bucket.objects {
		if strings.HasPrefix(key, "materials/courses/1/u") && string(o.body) == content && o.cacheCtrl == materialCacheControl {
			found = true
		}
	}
	if !found {
		t.Errorf("the browser's PUT did not reach the bucket with the file and its signed headers: %d objects", len(bucket.objects))
	}
}
