package report

import (
	"bytes"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sample is a five-minute exam-spike-like timeline: a step at 60 s, the
// fleet catching up, a drop at 240 s.
func sample() Report {
	var rps, target, p99, errs, inst []Point
	for s := 0; s < 300; s++ {
		x := float64(s)
		load := 100.0
		if s >= 60 && s < 240 {
			load = 800
		}
		n := 2.0
		switch {
		case s >= 240+150:
			n = 2
		case s >= 95:
			n = 10
		case s >= 80:
			n = 8
		case s >= 70:
			n = 4
		}
		lat := 40.0
		if s >= 60 && s < 100 {
			lat = 40 + 1500*math.Exp(-float64(s-60)/12)
		}
		e := 0.0
		if s >= 62 && s < 75 {
			e = float64(s%5) * 3
		}
		target = append(target, Point{x, load})
		rps = append(rps, Point{x, load - e})
		p := lat
		if s == 150 {
			p = math.NaN() // a second without answers
		}
		p99 = append(p99, Point{x, p})
		errs = append(errs, Point{x, e})
		inst = append(inst, Point{x, n})
	}
	pass := false
	return Report{
		Title:    "exam-spike drill <reactive>",
		Subtitle: "region eu-west-1 · 2026-11-30T07:00:00Z",
		Pass:     &pass,
		Summary: []Row{
			{Label: "p99 back inside the SLO after the step", Value: "38 s", Status: "pass"},
			{Label: "errors", Value: "0.08 %", Status: "pass"},
			{Label: "instance-seconds vs fleet fixed at peak", Value: "54 %", Status: "fail"},
		},
		Tables: []Table{{Title: "Runs", Columns: []string{"run", "p99 recovery", "errors"}, Rows: [][]string{{"reactive", "38 s", "0.08 %"}, {"pre-scaled", "0 s", "0 %"}}}},
		Charts: []Chart{
			{Title: "Requests per second", Unit: "req/s", Series: []Series{{"target", target}, {"sent", rps}}},
			{Title: "p99 latency", Unit: "ms", Series: []Series{{"p99", p99}}, Thresholds: []Threshold{{500, "SLO p99 500 ms"}}},
			{Title: "Errors per second", Unit: "errors/s", Series: []Series{{"5xx", errs}}},
			{Title: "Instances in service", Unit: "instances", Series: []Series{{"in service", inst}}, Step: true},
		},
		Events: []Event{
			{At: 60, Label: "step to 800 rps"},
			{At: 66, Label: "At 2026-11-30T07:01:06Z a target-tracking alarm on CPUUtilization 100 > 50 changed the desired capacity from 2 to 4.", Kind: "out"},
			{At: 76, Label: "scale out 4 → 8", Kind: "out"},
			{At: 90, Label: "scale out 8 → 10", Kind: "out"},
			{At: 240, Label: "drop to 100 rps"},
			{At: 390, Label: "scale in 10 → 2", Kind: "in"},
		},
		Notes:     []string{"Latency counts from when each request was due (open model)."},
		Generated: time.Date(2026, 11, 30, 7, 10, 0, 0, time.UTC),
	}
}

func TestRenderIsSelfContainedAndEscaped(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, sample()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if n := strings.Count(out, `<path class="series"`); n != 5 {
		t.Fatalf("%d series paths, want 5", n)
	}
	if n := strings.Count(out, `<svg class="chart"`); n != 4 {
		t.Fatalf("%d charts, want 4", n)
	}
	// The NaN second splits the p99 line into two subpaths.
	p99 := regexp.MustCompile(`<path class="series" d="([^"]*)" stroke="[^"]*"><title>p99</title>`).FindStringSubmatch(out)
	if p99 == nil || strings.Count(p99[1], "M") != 2 {
		t.Fatalf("p99 path: %v", p99)
	}
	// Instances are drawn as steps.
	inst := regexp.MustCompile(`<path class="series" d="([^"]*)" stroke="[^"]*"><title>in service</title>`).FindStringSubmatch(out)
	if inst == nil || !strings.Contains(inst[1], "V") {
		t.Fatalf("instance path is not a step line: %v", inst)
	}
	if n := strings.Count(out, `<g class="event">`); n != 6*4 {
		t.Fatalf("%d event markers, want 6 on each of 4 charts", n)
	}
	if !strings.Contains(out, `class="threshold"`) || !strings.Contains(out, "SLO p99 500 ms") {
		t.Fatal("no SLO threshold line")
	}
	// Nothing is fetched or run: no script, no external reference.
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url(", "ZgotmplZ"} {
		if strings.Contains(out, bad) {
			t.Fatalf("report contains %q", bad)
		}
	}
	if strings.Count(out, "http") != strings.Count(out, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Fatal("report references a URL other than the SVG namespace")
	}
	// Text is escaped.
	if strings.Contains(out, "<reactive>") || !strings.Contains(out, "&lt;reactive&gt;") {
		t.Fatal("title not escaped")
	}
	for _, want := range []string{"FAIL", `class="pass"`, "Runs", "pre-scaled", "Events", "Generated 2026-11-30T07:10:00Z", "6:30"} {
		if !strings.Contains(out, want) {
			t.Fatalf("report lacks %q", want)
		}
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range [][2]float64{{0, 1540}, {0, 10}, {0, 0}, {0, 0.3}, {0, 299}, {-3, 7}} {
		ticks := niceTicks(tc[0], tc[1], 5)
		if len(ticks) < 2 || len(ticks) > 12 || ticks[0] > tc[0] || ticks[len(ticks)-1] < tc[1] {
			t.Errorf("niceTicks(%g, %g) = %v does not cover the range", tc[0], tc[1], ticks)
			continue
		}
		step := ticks[1] - ticks[0]
		for i := 2; i < len(ticks); i++ {
			if math.Abs(ticks[i]-ticks[i-1]-step) > 1e-9 {
				t.Errorf("niceTicks(%g, %g) = %v is not evenly spaced", tc[0], tc[1], ticks)
			}
		}
	}
}

func TestTimeTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		step   float64
	}{{0, 300, 60}, {0, 390, 60}, {0, 45, 10}, {0, 3600, 600}, {0, 7, 1}} {
		ticks := timeTicks(tc.lo, tc.hi, 8)
		if len(ticks) < 2 || ticks[1]-ticks[0] != tc.step || ticks[0] != 0 {
			t.Errorf("timeTicks(%g, %g) = %v, want a step of %gs", tc.lo, tc.hi, ticks, tc.step)
		}
	}
}

func TestFmtSeconds(t *testing.T) {
	for in, want := range map[float64]string{0: "0s", 45: "45s", 125: "2:05", 3725: "1:02:05", -5: "-5s"} {
		if got := fmtSeconds(in); got != want {
			t.Errorf("fmtSeconds(%g) = %q, want %q", in, got, want)
		}
	}
}

func TestEmptyReportRenders(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, Report{Title: "nothing yet", Charts: []Chart{{Title: "empty"}}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "empty: no data") && !strings.Contains(b.String(), "<svg") {
		t.Fatal("empty chart not rendered")
	}
}

func TestChartSVGStandsAlone(t *testing.T) {
	r := sample()
	svg := string(ChartSVG("live-rps", r.Charts[0], r.Events[:2]))
	if !strings.HasPrefix(svg, `<svg class="chart"`) || !strings.Contains(svg, `id="live-rps-title"`) || strings.Count(svg, `<g class="event">`) != 2 || strings.Count(svg, `class="series"`) != 2 {
		t.Fatalf("chart fragment: %.300s", svg)
	}
}
