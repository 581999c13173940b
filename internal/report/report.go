// Package report renders a drill's timeline as one self-contained HTML file: inline SVG charts with event markers and a summary table, no script and nothing fetched.
package report

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/atomicfile"
)

// Report is what a report shows, top to bottom.
type Report struct {
	// Title heads the page, e.g. "exam-spike drill".
	Title string
	// Subtitle is a line under the title (region, times, spec hash).
	Subtitle string
	// Pass, if set, shows a PASS or FAIL banner.
	Pass *bool
	// Summary is the key figures, as label/value rows.
	Summary []Row
	// Tables are further tables, e.g. one row per run of a drill.
	Tables []Table
	// Charts are drawn one under the other on a shared time axis.
	Charts []Chart
	// Events are marked on every chart (scaling activities, phase changes,
	// injected faults), and listed under the charts.
	Events []Event
	// Notes are paragraphs at the end (method, caveats).
	Notes []string
	// Generated is when the report was made. Default: not shown.
	Generated time.Time
}

// Row is one summary line. Status "pass" or "fail" colours it.
type Row struct {
	Label  string
	Value  string
	Status string
}

// Table is a titled table of text cells.
type Table struct {
	Title   string
	Columns []string
	Rows    [][]string
}

// Chart is one time-series chart.
type Chart struct {
	// Title names the chart, e.g. "p99 latency".
	Title string
	// Unit labels the y axis, e.g. "ms".
	Unit string
	// Series are the lines. Each gets a colour from the palette in order.
	Series []Series
	// Thresholds are horizontal reference lines (an SLO, say).
	Thresholds []Threshold
	// Step draws the series as steps (for counts such as instances).
	Step bool
}

// Series is one named line.
type Series struct {
	Name   string
	Points []Point
}

// Point is one sample: X in seconds from the start, Y in the chart's unit.
// A NaN Y leaves a gap.
type Point struct {
	X, Y float64
}

// Threshold is a horizontal reference line.
type Threshold struct {
	Value float64
	Label string
}

// Event is a marked moment, X in seconds from the start.
type Event struct {
	At    float64
	Label string
	// Kind picks the marker's colour: "out" (scale-out), "in" (scale-in),
	// "scheduled", "fault" or "" (a phase change).
	Kind string
}

// WriteFile renders r into path atomically.
func WriteFile(path string, r Report) error {
	var b bytes.Buffer
	if err := Render(&b, r); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// Render writes r as one HTML document.
func Render(w io.Writer, r Report) error {
	x0, x1 := xDomain(r)
	data := struct {
		Report
		ChartsSVG []template.HTML
		Events    []eventRow
		Generated string
		Verdict   string
	}{Report: r}
	if r.Pass != nil {
		data.Verdict = map[bool]string{true: "pass", false: "fail"}[*r.Pass]
	}
	for i, c := range r.Charts {
		data.ChartsSVG = append(data.ChartsSVG, template.HTML(chartSVG(i, c, r.Events, x0, x1)))
	}
	for i, e := range r.Events {
		data.Events = append(data.Events, eventRow{N: i + 1, At: fmtSeconds(e.At), Label: e.Label, Kind: e.Kind, Color: eventColor(e.Kind)})
	}
	if !r.Generated.IsZero() {
		data.Generated = r.Generated.UTC().Format(time.RFC3339)
	}
	if err := page.Execute(w, data); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

// ChartSVG renders one chart on its own, as an SVG element followed by its
// legend, for pages that embed charts (the web console). id must be unique
// in the page; events are marked as in a report.
func ChartSVG(id string, c Chart, events []Event) template.HTML {
	x0, x1 := xDomain(Report{Charts: []Chart{c}, Events: events})
	return template.HTML(chartSVGWithID(id, c, events, x0, x1))
}

type eventRow struct {
	N     int
	At    string
	Label string
	Kind  string
	Color string
}

// palette is colour-blind-safe (Okabe–Ito), dark enough on white.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"}

func eventColor(kind string) string {
	switch kind {
	case "out":
		return "#009E73"
	case "in":
		return "#0072B2"
	case "scheduled":
		return "#CC79A7"
	case "fault":
		return "#D55E00"
	}
	return "#666666"
}

func xDomain(r Report) (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range r.Charts {
		for _, s := range c.Series {
			for _, p := range s.Points {
				lo, hi = math.Min(lo, p.X), math.Max(hi, p.X)
			}
		}
	}
	for _, e := range r.Events {
		lo, hi = math.Min(lo, e.At), math.Max(hi, e.At)
	}
	if math.IsInf(lo, 0) {
		return 0, 1
	}
	lo = math.Min(lo, 0)
	if hi <= lo {
		hi = lo + 1
	}
	return lo, hi
}

// Chart geometry, in SVG user units.
const (
	width   = 880
	height  = 220
	marginL = 64
	marginR = 16
	marginT = 28
	marginB = 30
)

func chartSVG(idx int, c Chart, events []Event, x0, x1 float64) string {
	return chartSVGWithID(fmt.Sprintf("chart-%d", idx), c, events, x0, x1)
}

func chartSVGWithID(id string, c Chart, events []Event, x0, x1 float64) string {
	yMax := 0.0
	yMin := 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) {
				yMax = math.Max(yMax, p.Y)
				yMin = math.Min(yMin, p.Y)
			}
		}
	}
	for _, t := range c.Thresholds {
		yMax = math.Max(yMax, t.Value)
	}
	ticks := niceTicks(yMin, yMax, 5)
	y0, y1 := ticks[0], ticks[len(ticks)-1]
	pw, ph := float64(width-marginL-marginR), float64(height-marginT-marginB)
	sx := func(x float64) float64 { return marginL + (x-x0)/(x1-x0)*pw }
	sy := func(y float64) float64 { return marginT + ph - (y-y0)/(y1-y0)*ph }

	id = esc(id)
	var b strings.Builder
	desc := describe(c, events)
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s-title %s-desc" xmlns="http://www.w3.org/2000/svg">`, width, height, width, height, id, id)
	fmt.Fprintf(&b, `<title id="%s-title">%s</title><desc id="%s-desc">%s</desc>`, id, esc(c.Title), id, esc(desc))
	// Grid and y axis.
	for _, t := range ticks {
		y := sy(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, marginL, width-marginR, y, y)
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>`, marginL-6, y+4, esc(fmtNum(t)))
	}
	fmt.Fprintf(&b, `<text class="unit" x="%d" y="%d">%s</text>`, 4, marginT-12, esc(c.Unit))
	// X axis ticks.
	for _, t := range timeTicks(x0, x1, 8) {
		if t < x0 || t > x1 {
			continue
		}
		x := sx(t)
		fmt.Fprintf(&b, `<line class="xtick" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>`, x, x, height-marginB, height-marginB+4)
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x, height-marginB+17, esc(fmtSeconds(t)))
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`, marginL, width-marginR, height-marginB, height-marginB)
	// Thresholds.
	for _, t := range c.Thresholds {
		y := sy(t.Value)
		fmt.Fprintf(&b, `<line class="threshold" x1="%d" x2="%d" y1="%.1f" y2="%.1f"><title>%s</title></line>`, marginL, width-marginR, y, y, esc(t.Label))
		fmt.Fprintf(&b, `<text class="threshold-label" x="%d" y="%.1f" text-anchor="end">%s</text>`, width-marginR-4, y-4, esc(t.Label))
	}
	// Events.
	for i, e := range events {
		if e.At < x0 || e.At > x1 {
			continue
		}
		x := sx(e.At)
		fmt.Fprintf(&b, `<g class="event"><line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s"/><text x="%.1f" y="%d" fill="%s" text-anchor="middle">%d</text><title>%s</title></g>`,
			x, x, marginT-8, height-marginB, eventColor(e.Kind), x, marginT-11, eventColor(e.Kind), i+1, esc(fmtSeconds(e.At)+" "+e.Label))
	}
	// Series.
	for i, s := range c.Series {
		color := palette[i%len(palette)]
		d := pathData(s.Points, sx, sy, c.Step, x1)
		if d == "" {
			continue
		}
		fmt.Fprintf(&b, `<path class="series" d="%s" stroke="%s"><title>%s</title></path>`, d, color, esc(s.Name))
	}
	b.WriteString(`</svg>`)
	// Legend, as HTML under the chart.
	b.WriteString(`<ul class="legend">`)
	for i, s := range c.Series {
		fmt.Fprintf(&b, `<li><span class="swatch" style="background:%s"></span>%s</li>`, palette[i%len(palette)], esc(s.Name))
	}
	b.WriteString(`</ul>`)
	return b.String()
}

// pathData draws points as "M x y L x y …", starting a new subpath after
// each gap (NaN). Steps hold each value until the next point.
func pathData(pts []Point, sx, sy func(float64) float64, step bool, xEnd float64) string {
	// xEnd bounds how far a step line's last value is drawn.
	var b strings.Builder
	pen := false
	for i, p := range pts {
		if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
			pen = false
			continue
		}
		x, y := sx(p.X), sy(p.Y)
		switch {
		case !pen:
			fmt.Fprintf(&b, "M%.1f %.1f", x, y)
		case step:
			fmt.Fprintf(&b, "H%.1fV%.1f", x, y)
		default:
			fmt.Fprintf(&b, "L%.1f %.1f", x, y)
		}
		pen = true
		if step && i == len(pts)-1 && i > 0 {
			// The last value holds for one more sampling interval.
			fmt.Fprintf(&b, "H%.1f", sx(math.Min(xEnd, p.X+(p.X-pts[i-1].X))))
		}
	}
	return b.String()
}

func describe(c Chart, events []Event) string {
	var parts []string
	for _, s := range c.Series {
		lo, hi, n := math.Inf(1), math.Inf(-1), 0
		for _, p := range s.Points {
			if !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) {
				lo, hi, n = math.Min(lo, p.Y), math.Max(hi, p.Y), n+1
			}
		}
		if n == 0 {
			parts = append(parts, s.Name+": no data")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s from %s to %s %s over %d points", s.Name, fmtNum(lo), fmtNum(hi), c.Unit, n))
	}
	for _, t := range c.Thresholds {
		parts = append(parts, fmt.Sprintf("threshold %s at %s", t.Label, fmtNum(t.Value)))
	}
	if len(events) > 0 {
		parts = append(parts, fmt.Sprintf("%d events marked", len(events)))
	}
	return strings.Join(parts, "; ")
}

// timeTicks returns about n ticks on a time axis (seconds), at steps a
// reader expects: 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1 h, ….
func timeTicks(lo, hi float64, n int) []float64 {
	span := hi - lo
	step := 1.0
	for _, s := range []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400} {
		step = s
		if span/s <= float64(n) {
			break
		}
	}
	var ticks []float64
	for v := math.Ceil(lo/step) * step; v <= hi+1e-9; v += step {
		ticks = append(ticks, v)
	}
	return ticks
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	start := math.Floor(lo/step) * step
	end := math.Ceil(hi/step) * step
	var ticks []float64
	for v := start; v <= end+step/2; v += step {
		ticks = append(ticks, math.Round(v/step)*step)
	}
	if len(ticks) < 2 {
		ticks = append(ticks, start+step)
	}
	return ticks
}

func fmtNum(f float64) string {
	switch {
	case math.Abs(f) >= 1e6:
		return fmt.Sprintf("%.1fM", f/1e6)
	case math.Abs(f) >= 1e4:
		return fmt.Sprintf("%.0fk", f/1e3)
	case f == math.Trunc(f):
		return fmt.Sprintf("%.0f", f)
	case math.Abs(f) >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.2f", f)
	}
}

// fmtSeconds writes an offset as 45s, 2:05 or 1:02:05.
func fmtSeconds(s float64) string {
	d := time.Duration(math.Round(s)) * time.Second
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	h, m, sec := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%s%d:%02d:%02d", neg, h, m, sec)
	case m > 0:
		return fmt.Sprintf("%s%d:%02d", neg, m, sec)
	}
	return fmt.Sprintf("%s%ds", neg, sec)
}

func esc(s string) string { return template.HTMLEscapeString(s) }

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1a1a1a;background:#fff;margin:0;padding:24px 32px;max-width:960px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:16px;margin:28px 0 8px}
.subtitle{color:#444;margin:0 0 16px}
.verdict{display:inline-block;padding:4px 12px;border-radius:4px;font-weight:700;color:#fff;margin-bottom:12px}
.verdict.pass{background:#1b7a3d}.verdict.fail{background:#b3261e}
table{border-collapse:collapse;margin:4px 0 12px}
th,td{text-align:left;padding:4px 12px 4px 0;border-bottom:1px solid #ddd;vertical-align:top}
th{font-weight:600}
td.pass{color:#1b7a3d;font-weight:600}td.fail{color:#b3261e;font-weight:600}
svg.chart{display:block;max-width:100%;height:auto}
svg .grid{stroke:#e6e6e6;stroke-width:1}
svg .axis,svg .xtick{stroke:#666;stroke-width:1}
svg .tick,svg .unit{font-size:11px;fill:#444}
svg .series{fill:none;stroke-width:2;stroke-linejoin:round}
svg .threshold{stroke:#b3261e;stroke-width:1.5;stroke-dasharray:6 4}
svg .threshold-label{font-size:11px;fill:#b3261e}
svg .event line{stroke-width:1.2;stroke-dasharray:3 3}
svg .event text{font-size:10px;font-weight:700}
ul.legend{list-style:none;padding:0;margin:2px 0 8px 64px;display:flex;flex-wrap:wrap;gap:16px;font-size:12px}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px;border-radius:2px}
.marker{display:inline-block;min-width:18px;font-weight:700}
footer{color:#666;font-size:12px;margin-top:24px}
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
{{with .Subtitle}}<p class="subtitle">{{.}}</p>{{end}}
{{if eq .Verdict "pass"}}<p class="verdict pass">PASS</p>{{else if eq .Verdict "fail"}}<p class="verdict fail">FAIL</p>{{end}}
{{if .Summary}}<h2>Summary</h2>
<table class="summary"><tbody>
{{range .Summary}}<tr><th scope="row">{{.Label}}</th><td{{with .Status}} class="{{.}}"{{end}}>{{.Value}}</td></tr>
{{end}}</tbody></table>{{end}}
{{range .Tables}}<h2>{{.Title}}</h2>
<table><thead><tr>{{range .Columns}}<th scope="col">{{.}}</th>{{end}}</tr></thead><tbody>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody></table>
{{end}}
{{range $i, $c := .Charts}}<section class="chart-block">
<h2>{{$c.Title}}</h2>
{{index $.ChartsSVG $i}}
</section>
{{end}}
{{if .Events}}<h2>Events</h2>
<table class="events"><thead><tr><th scope="col">#</th><th scope="col">at</th><th scope="col">event</th></tr></thead><tbody>
{{range .Events}}<tr><td><span class="marker" style="color:{{.Color}}">{{.N}}</span></td><td>{{.At}}</td><td>{{.Label}}</td></tr>
{{end}}</tbody></table>{{end}}
{{range .Notes}}<p>{{.}}</p>
{{end}}
</main>
{{with .Generated}}<footer>Generated {{.}} by haven.</footer>{{end}}
</body>
</html>
`))
