// Package axe runs axe-core, the accessibility checker, in a page opened with chromedp: the script is vendored here (axe.min.js, MPL-2.0, with its licences), never fetched from a CDN.
package axe

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/chromedp/chromedp"
)

// Script is axe-core 4.14.1, taken unmodified from the npm registry
// (npm pack axe-core@4.14.1; tarball sha1
// 14d8a6f3f085afd126b8b5ca1e42e50e17fb1d99), the same copy as
// cmd/courses/testdata/axe (the sample app imports nothing of haven's).
//
//go:embed axe.min.js
var Script string

// Version is the vendored axe-core's version.
const Version = "4.14.1"

// Violation is one rule the page breaks.
type Violation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s [%s] %s: %s", v.ID, v.Impact, v.Help, strings.Join(v.Nodes, " | "))
}

// Run injects axe-core into the page the chromedp context shows and
// returns every violation of its default rules (WCAG 2 A and AA and best
// practices).
func Run(ctx context.Context) ([]Violation, error) {
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](Script+"\n;void 0")); err != nil {
		return nil, fmt.Errorf("inject axe-core: %w", err)
	}
	vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]Violation](`axe.run(document, {resultTypes: ['violations']}).then(r =>
		r.violations.map(v => ({id: v.id, impact: v.impact || '', help: v.help,
			nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').replace(/\s+/g, ' '))})))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, fmt.Errorf("run axe-core: %w", err)
	}
	return vs, nil
}
