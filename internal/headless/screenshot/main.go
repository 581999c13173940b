// Command screenshot renders an HTML page (a drill report) to a PNG with headless Chromium: go run ./internal/headless/screenshot REPORT.html REPORT.png.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/haven-platform/haven/internal/headless"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "screenshot: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: screenshot PAGE.html OUT.png")
	}
	page, err := filepath.Abs(args[0])
	if err != nil {
		return err
	}
	if _, err := os.Stat(page); err != nil {
		return fmt.Errorf("read page: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "haven-screenshot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bctx, bcancel, err := headless.New(ctx, dir, func(string, ...any) {})
	if err != nil {
		return err
	}
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate("file://"+page), chromedp.WaitVisible(chromedp.CSSAll("body"))); err != nil {
		return fmt.Errorf("open %s: %w", page, err)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Errorf("screenshot %s: %w", page, err)
	}
	if err := os.WriteFile(args[1], shot, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", args[1], err)
	}
	return nil
}
