// Package headless starts Debian's chromium without a display, through chromedp, for tests that check a page renders in a real browser.
package headless

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/chromedp/chromedp"
)

// EnvChromium names the environment variable that overrides the browser
// binary Find looks for.
const EnvChromium = "HAVEN_CHROMIUM"

// ErrNoChromium is returned by Find when no browser is installed.
var ErrNoChromium = errors.New("chromium not found: install Debian's chromium (apt-get update && apt-get install -y chromium, which scripts/setup does), or set " + EnvChromium + " to a Chromium or Chrome binary")

// Find returns the browser binary: $HAVEN_CHROMIUM if set, else the first of
// chromium, chromium-browser, google-chrome-stable and google-chrome on PATH.
func Find() (string, error) {
	if p := os.Getenv(EnvChromium); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("find chromium: %s=%s: %w", EnvChromium, p, err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// Options are the flags every browser this package starts runs with: no
// display, no sandbox (tests run as root in CI), no GPU, no first-run
// screens, and nothing fetched from the network on its own.
func Options(binary, userDataDir string, width, height int) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(binary),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(userDataDir),
		chromedp.WindowSize(width, height),
	}
}

// New starts a browser with a fresh profile in userDataDir (an empty
// directory the caller removes) and returns a chromedp context for one tab.
// cancel closes the browser and waits for it to exit.
func New(ctx context.Context, userDataDir string, logf func(string, ...any)) (context.Context, context.CancelFunc, error) {
	bin, err := Find()
	if err != nil {
		return nil, nil, err
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, Options(bin, userDataDir, 1280, 900)...)
	var opts []chromedp.ContextOption
	if logf != nil {
		opts = append(opts, chromedp.WithErrorf(logf))
	}
	tctx, tcancel := chromedp.NewContext(actx, opts...)
	if err := chromedp.Do(tctx); err != nil { // starts the browser
		tcancel()
		acancel()
		return nil, nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return tctx, func() { tcancel(); acancel() }, nil
}
