package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/haven-platform/haven/internal/headless"
)

// TestReportRendersInChromium opens a rendered report in headless Chromium
// (Debian's chromium) and checks that every chart drew its lines and that a
// screenshot of the page is not blank. A missing browser fails the test: the
// report's promise is that it renders, and only a browser can say so.
// HAVEN_ARTIFACTS, if set, names a directory to keep the page and its
// screenshot in.
func TestReportRendersInChromium(t *testing.T) {
	if _, err := headless.Find(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := WriteFile(page, sample()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bctx, bcancel, err := headless.New(ctx, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer bcancel()

	if err := chromedp.Do(bctx, chromedp.Navigate("file://"+page), chromedp.WaitVisible(chromedp.CSSAll("svg.chart"))); err != nil {
		t.Fatalf("open the report: %v", err)
	}
	type chart struct {
		Paths   int     `json:"paths"`
		Longest float64 `json:"longest"`
		Width   float64 `json:"width"`
		Events  int     `json:"events"`
	}
	charts, err := chromedp.Run(bctx, chromedp.Evaluate[[]chart](`[...document.querySelectorAll("svg.chart")].map(svg => {
		const paths = [...svg.querySelectorAll("path.series")];
		return {
			paths: paths.filter(p => (p.getAttribute("d") || "").length > 0).length,
			longest: Math.max(0, ...paths.map(p => p.getTotalLength())),
			width: svg.getBoundingClientRect().width,
			events: svg.querySelectorAll("g.event").length,
		};
	})`))
	if err != nil {
		t.Fatalf("inspect the charts: %v", err)
	}
	if len(charts) != 4 {
		t.Fatalf("the browser sees %d charts, want 4", len(charts))
	}
	for i, c := range charts {
		if c.Paths == 0 || c.Longest < 100 || c.Width < 300 || c.Events != 6 {
			t.Fatalf("chart %d in the browser: %+v (want drawn paths, a laid-out width, 6 event markers)", i, c)
		}
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("decode screenshot: %v", err)
	}
	inked, colours := ink(img)
	b := img.Bounds()
	total := b.Dx() * b.Dy()
	t.Logf("screenshot %dx%d: %d non-white pixels (%.1f %%), %d distinct colours", b.Dx(), b.Dy(), inked, 100*float64(inked)/float64(total), colours)
	if float64(inked) < 0.005*float64(total) || colours < 8 {
		t.Fatalf("the screenshot looks blank: %d of %d pixels inked, %d colours", inked, total, colours)
	}
	// The series colours are on the page: the first palette colour (the
	// first series of every chart) must cover a visible number of pixels.
	if n := count(img, 0x00, 0x72, 0xB2); n < 500 {
		t.Fatalf("only %d pixels of the first series colour #0072B2", n)
	}
	if d := os.Getenv("HAVEN_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			html, _ := os.ReadFile(page)
			os.WriteFile(filepath.Join(d, "report-sample.html"), html, 0o644)
			os.WriteFile(filepath.Join(d, "report-sample.png"), shot, 0o644)
		}
	}
}

// ink counts non-white pixels and distinct colours.
func ink(img image.Image) (int, int) {
	b := img.Bounds()
	seen := map[uint32]bool{}
	inked := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			if r < 245 || g < 245 || bl < 245 {
				inked++
			}
			seen[r<<16|g<<8|bl] = true
		}
	}
	return inked, len(seen)
}

// count counts pixels within a small distance of one colour.
func count(img image.Image, r0, g0, b0 uint32) int {
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, r0) && near(g>>8, g0) && near(bl>>8, b0) {
				n++
			}
		}
	}
	return n
}

func near(a, b uint32) bool {
	if a > b {
		return a-b <= 24
	}
	return b-a <= 24
}
