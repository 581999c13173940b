package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/headless"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/report"
)

var start = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

// fleetShape gives the instances in service at second t of a model run.
type fleetShape func(t int) int

// modelRun builds a run's result on cfg's profile, with latency lat(t)
// for every request of second t, failures at the seconds fail returns, and
// the fleet shape.
func modelRun(cfg ExamSpikeConfig, lat func(t int) time.Duration, fail func(t int) int, fl fleetShape) *load.Result {
	n := int((cfg.Baseline + cfg.Hold + cfg.After) / time.Second)
	secs := make([]load.Second, n)
	lats := make([][]time.Duration, n)
	for t := range secs {
		rate := int(cfg.Base)
		if t >= int(cfg.Baseline/time.Second) && t < int((cfg.Baseline+cfg.Hold)/time.Second) {
			rate = int(cfg.Peak)
		}
		f := fail(t)
		in, pend, cpu := fl(t), 0, 45.0
		secs[t] = load.Second{T: t, TargetRPS: float64(rate), RPS: rate, OK: rate - f, InService: &in, Pending: &pend, AvgCPU: &cpu}
		if f > 0 {
			secs[t].Errors = map[string]int{"503": f}
		}
		for i := 0; i < rate; i++ {
			lats[t] = append(lats[t], lat(t))
		}
	}
	return load.NewResult("exam-spike", start, secs, lats)
}

// defaultCfg is the model's profile: 40 rps, a step to 400 at 60 s, the
// drop at 150 s, 360 s in all.
func defaultCfg() ExamSpikeConfig {
	c := ExamSpikeConfig{Workload: nopWorkload{}, Baseline: 60 * time.Second, Hold: 90 * time.Second, After: 210 * time.Second}
	c.defaults()
	c.Window = ReactionWindow(3 * time.Second)
	return c
}

type nopWorkload struct{ Workload }

func (nopWorkload) Name() string { return "model" }

// TestAnalyseReactiveRun: slow requests inside the window do not count
// against p99 outside it; recovery, instance-seconds against a fleet fixed at
// peak, and the time back at min come out of the timeline.
func TestAnalyseReactiveRun(t *testing.T) {
	cfg := defaultCfg()
	if cfg.Window != 40*time.Second {
		t.Fatalf("window for a 3 s period = %s, want 40s (2 × 5 periods + 10 s)", cfg.Window)
	}
	// p99 broken for 25 s after the step, then fine; the fleet 2 → 8 at
	// 75 s, back to 2 at 150 + 90 = 240 s.
	lat := func(t int) time.Duration {
		if t >= 60 && t < 85 {
			return 2 * time.Second
		}
		return 20 * time.Millisecond
	}
	fl := func(t int) int {
		switch {
		case t < 75:
			return 2
		case t < 240:
			return 8
		}
		return 2
	}
	run := &ExamSpikeRun{Name: RunReactive}
	acts := []api.ScalingActivity{
		{ID: 1, At: start.Add(72 * time.Second), Kind: "target-tracking", From: 2, To: 8, Cause: "scale out"},
		{ID: 2, At: start.Add(-time.Hour), Kind: "target-tracking", From: 8, To: 2, Cause: "an older run"},
	}
	analyse(run, modelRun(cfg, lat, func(int) int { return 0 }, fl), acts, cfg, 2)
	if !run.Pass {
		t.Fatalf("run failed: %v", run.Reasons)
	}
	if run.P99OutsideWindowMS != 20 || run.P99WindowMS != 2000 || run.RecoveryS == nil || *run.RecoveryS != 25 {
		t.Errorf("p99 outside %g, in window %g, recovery %v; want 20, 2000, 25 s", run.P99OutsideWindowMS, run.P99WindowMS, run.RecoveryS)
	}
	// 2 × 75 + 8 × 165 + 2 × 120 = 1710 of 8 × 360 = 2880.
	if run.InstanceSeconds != 1710 || run.PeakInstances != 8 || run.FixedAtPeakInstanceSeconds != 2880 {
		t.Errorf("instance-seconds %g of %g (peak %d), want 1710 of 2880 (peak 8)", run.InstanceSeconds, run.FixedAtPeakInstanceSeconds, run.PeakInstances)
	}
	if run.InstancesAtDrop != 8 {
		t.Errorf("instances at the drop = %d, want 8", run.InstancesAtDrop)
	}
	if run.BackAtMinS == nil || *run.BackAtMinS != 90 {
		t.Errorf("back at min = %v, want 90 s after the drop", run.BackAtMinS)
	}
	if len(run.Activities) != 1 || run.Activities[0].ID != 1 {
		t.Errorf("activities = %+v, want only the one during the run", run.Activities)
	}
	if run.SLOBrokenS != 25 {
		t.Errorf("seconds with the SLO broken = %d, want 25", run.SLOBrokenS)
	}
}

// TestAnalyseVerdicts: each run's acceptance fails with a reason that says
// which figure missed.
func TestAnalyseVerdicts(t *testing.T) {
	cfg := defaultCfg()
	fast := func(int) time.Duration { return 20 * time.Millisecond }
	none := func(int) int { return 0 }
	scaled := func(t int) int {
		if t >= 65 && t < 200 {
			return 7
		}
		return 2
	}
	for _, tc := range []struct {
		name, run string
		lat       func(int) time.Duration
		fail      func(int) int
		fl        fleetShape
		acts      int
		want      string
	}{
		{"reactive slow after the window", RunReactive, func(t int) time.Duration {
			if t >= 60 && t < 150 {
				return time.Second
			}
			return 20 * time.Millisecond
		}, none, scaled, 0, "p99 outside the 40s window"},
		{"reactive errors", RunReactive, fast, func(t int) int {
			if t == 100 {
				return 50
			}
			return 0
		}, scaled, 0, "errors"},
		{"reactive never scaled", RunReactive, fast, none, func(int) int { return 2 }, 0, "never scaled out"},
		{"reactive not back at min", RunReactive, fast, none, func(t int) int { return map[bool]int{true: 7, false: 2}[t >= 65] }, 0, "not back at min"},
		{"reactive fixed at peak", RunReactive, fast, none, func(t int) int { return map[bool]int{true: 7, false: 2}[t >= 30 && t < 350] }, 0, "instance-seconds"},
		{"prescaled slow at the step", RunPrescaled, func(t int) time.Duration {
			return map[bool]time.Duration{true: time.Second, false: 20 * time.Millisecond}[t >= 60 && t < 70]
		}, none, scaled, 0, "p99 through the step"},
		{"control kept the SLO", RunOff, fast, none, func(int) int { return 2 }, 0, "kept the SLO"},
		{"control scaled", RunOff, func(int) time.Duration { return 3 * time.Second }, none, func(int) int { return 2 }, 1, "changed 1 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := &ExamSpikeRun{Name: tc.run}
			var acts []api.ScalingActivity
			for i := 0; i < tc.acts; i++ {
				acts = append(acts, api.ScalingActivity{At: start.Add(70 * time.Second), Kind: "target-tracking", From: 2, To: 4})
			}
			analyse(run, modelRun(cfg, tc.lat, tc.fail, tc.fl), acts, cfg, 2)
			if run.Pass || !strings.Contains(strings.Join(run.Reasons, "; "), tc.want) {
				t.Errorf("pass %v, reasons %q; want a failure about %q", run.Pass, run.Reasons, tc.want)
			}
		})
	}
	// The control passes when the SLO broke.
	run := &ExamSpikeRun{Name: RunOff}
	analyse(run, modelRun(cfg, func(t int) time.Duration {
		return map[bool]time.Duration{true: 5 * time.Second, false: 20 * time.Millisecond}[t >= 60 && t < 150]
	}, none, func(int) int { return 2 }), nil, cfg, 2)
	if !run.Pass || run.RecoveryS != nil {
		t.Errorf("control with the SLO broken: pass %v (%v), recovery %v; want a pass and no recovery", run.Pass, run.Reasons, run.RecoveryS)
	}
}

func TestExamSpikeConfigValidate(t *testing.T) {
	c := defaultCfg()
	c.Peak, c.Ramp, c.PreScaleLead, c.Runs = 10, c.Hold, c.Baseline, []string{"reactive", "sideways", "reactive"}
	err := c.Validate()
	for _, want := range []string{"peak:", "ramp:", "prescale-lead:", `"sideways"`, "listed twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	c = defaultCfg()
	c.Ramp = 30 * time.Second
	p := c.profile()
	if p.Duration != c.Baseline+c.Hold+c.After || p.Pacer.Rate(c.Baseline+15*time.Second) != 220 || p.Pacer.Rate(c.Baseline+c.Hold-time.Second) != 400 {
		t.Errorf("ramp profile: duration %s, rate mid-ramp %g, before the drop %g", p.Duration, p.Pacer.Rate(c.Baseline+15*time.Second), p.Pacer.Rate(c.Baseline+c.Hold-time.Second))
	}
}

// modelReport is a three-run report on model timelines.
func modelReport(t *testing.T) *ExamSpikeReport {
	cfg := defaultCfg()
	rep := &ExamSpikeReport{
		Envelope: Envelope{Drill: "exam-spike", StartedAt: start, EndedAt: start.Add(20 * time.Minute), Region: "courses", SpecSHA256: strings.Repeat("ab", 32), HavenVersion: "test", Pass: true},
		Profile:  ExamSpikeProfile{Workload: "model", Users: 50, BaseRPS: 40, PeakRPS: 400, BaselineS: 60, HoldS: 90, AfterS: 210, SLOP99MS: 500, MaxErrorRate: 0.001, WindowS: 40, WindowWhy: "model"},
		Scaler:   ExamSpikeScaler{Min: 2, Max: 12, PeriodS: 3, WarmupS: 6, TimeScale: 20, Policies: []api.ScalingPolicy{{Name: "cpu-50", Metric: "CPUUtilization", Target: 50}}},
		Machine:  Machine{CPUs: 2, LoadAvgBefore: 0.5, LoadAvgAfter: 1.2},
	}
	scaled := func(t int) int {
		switch {
		case t < 72:
			return 2
		case t < 240:
			return 8
		}
		return 2
	}
	for _, tc := range []struct {
		name string
		lat  func(int) time.Duration
		fl   fleetShape
	}{
		{RunReactive, func(t int) time.Duration {
			return map[bool]time.Duration{true: 1500 * time.Millisecond, false: 30 * time.Millisecond}[t >= 60 && t < 80]
		}, scaled},
		{RunPrescaled, func(int) time.Duration { return 30 * time.Millisecond }, func(t int) int {
			return map[bool]int{true: 8, false: 2}[t >= 32 && t < 240]
		}},
		{RunOff, func(t int) time.Duration {
			return map[bool]time.Duration{true: time.Duration(t-59) * 100 * time.Millisecond, false: 30 * time.Millisecond}[t >= 60 && t < 160]
		}, func(int) int { return 2 }},
	} {
		run := &ExamSpikeRun{Name: tc.name, Description: runDescription(tc.name)}
		var acts []api.ScalingActivity
		if tc.name == RunReactive {
			acts = []api.ScalingActivity{
				{ID: 1, At: start.Add(70 * time.Second), Kind: "target-tracking", From: 2, To: 5, Cause: "out"},
				{ID: 2, At: start.Add(76 * time.Second), Kind: "target-tracking", From: 5, To: 8, Cause: "out"},
				{ID: 3, At: start.Add(238 * time.Second), Kind: "target-tracking", From: 8, To: 2, Cause: "in"},
			}
		}
		analyse(run, modelRun(defaultCfg(), tc.lat, func(int) int { return 0 }, tc.fl), acts, cfg, 2)
		rep.Runs = append(rep.Runs, run)
	}
	return rep
}

// TestExamSpikeReportJSONEnvelope: the report's JSON starts with the common
// envelope's keys (issue 14) and carries each run's timeline.
func TestExamSpikeReportJSONEnvelope(t *testing.T) {
	b, err := json.Marshal(modelReport(t))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"drill", "started_at", "ended_at", "region", "spec_sha256", "haven_version", "pass", "profile", "scaler", "machine", "runs"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON lacks %q", k)
		}
	}
	var runs []map[string]json.RawMessage
	if err := json.Unmarshal(m["runs"], &runs); err != nil || len(runs) != 3 {
		t.Fatalf("runs: %v (%d)", err, len(runs))
	}
	if tl := runs[0]["timeline"]; len(tl) < 1000 || !bytes.Contains(tl, []byte(`"in_service":2`)) {
		t.Errorf("run timeline missing or without the fleet: %.200s", tl)
	}
}

// TestExamSpikeReportRendersInChromium opens the drill's HTML report in
// headless Chromium and checks every chart drew its series and markers and
// the page is not blank. HAVEN_ARTIFACTS keeps the page and a screenshot.
func TestExamSpikeReportRendersInChromium(t *testing.T) {
	if _, err := headless.Find(); err != nil {
		t.Fatal(err)
	}
	rep := modelReport(t)
	html := rep.HTML()
	page := filepath.Join(t.TempDir(), "exam-spike.html")
	if err := report.WriteFile(page, html); err != nil {
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
		Title  string `json:"title"`
		Paths  int    `json:"paths"`
		Events int    `json:"events"`
	}
	charts, err := chromedp.Run(bctx, chromedp.Evaluate[[]chart](`[...document.querySelectorAll("svg.chart")].map(svg => ({
		title: svg.querySelector("title").textContent,
		paths: [...svg.querySelectorAll("path.series")].filter(p => p.getTotalLength() > 100).length,
		events: svg.querySelectorAll("g.event").length,
	}))`))
	if err != nil {
		t.Fatalf("inspect the charts: %v", err)
	}
	want := map[string]int{"Requests answered per second": 4, "p99 latency with scaling": 2, "p99 latency with scaling off (the control)": 1,
		"Errors per second": 3, "Instances in service": 3, "Average CPU of in-service instances": 3}
	if len(charts) != len(want) {
		t.Fatalf("the browser sees %d charts (%+v), want %d", len(charts), charts, len(want))
	}
	for _, c := range charts {
		// 3 drill marks and the reactive run's 3 activities.
		if c.Paths != want[c.Title] || c.Events != 6 {
			t.Errorf("chart %q: %d drawn series, %d markers; want %d and 6", c.Title, c.Paths, c.Events, want[c.Title])
		}
	}
	rows, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("table tbody tr").length`))
	if err != nil || rows < 3 {
		t.Errorf("table rows = %d (%v), want the three runs", rows, err)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	inked := 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			if r, g, bl, _ := img.At(x, y).RGBA(); r>>8 < 245 || g>>8 < 245 || bl>>8 < 245 {
				inked++
			}
		}
	}
	if total := b.Dx() * b.Dy() / 4; inked < total/100 {
		t.Fatalf("the screenshot looks blank: %d of %d sampled pixels inked", inked, total)
	}
	if d := os.Getenv("HAVEN_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			data, _ := os.ReadFile(page)
			os.WriteFile(filepath.Join(d, "exam-spike-model.html"), data, 0o644)
			os.WriteFile(filepath.Join(d, "exam-spike-model.png"), shot, 0o644)
		}
	}
}
