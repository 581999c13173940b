package drill

import (
	"fmt"
	"math"
	"strings"

	"github.com/haven-platform/haven/internal/report"
)

// HTML turns the drill's report into a self-contained HTML report: a
// summary, one row per run, and the runs' timelines overlaid on one time
// axis (requests, p99, errors, instances, CPU), with the step, the drop,
// the window and every scaling activity marked.
func (r *ExamSpikeReport) HTML() report.Report {
	p := r.Profile
	pass := r.Pass
	out := report.Report{
		Title: "exam-spike drill",
		Subtitle: fmt.Sprintf("region %s · %s → %s · haven %s · spec sha256 %s",
			r.Region, r.StartedAt.Format("2006-01-02T15:04:05Z"), r.EndedAt.Format("15:04:05Z"), r.HavenVersion, shortHash(r.SpecSHA256)),
		Pass:      &pass,
		Generated: r.EndedAt,
	}
	out.Summary = []report.Row{
		{Label: "profile", Value: fmt.Sprintf("%g rps for %gs, %s to %g rps (%.0f×) held %gs, %g rps for %gs; %d logged-in %s users",
			p.BaseRPS, p.BaselineS, stepWord(p.RampS), p.PeakRPS, p.PeakRPS/p.BaseRPS, p.HoldS, p.BaseRPS, p.AfterS, p.Users, p.Workload)},
		{Label: "objective", Value: fmt.Sprintf("p99 ≤ %.0f ms and errors ≤ %.1f %% outside a %.0f s window after the step", p.SLOP99MS, 100*p.MaxErrorRate, p.WindowS)},
		{Label: "why that window", Value: p.WindowWhy},
		{Label: "scaler", Value: fmt.Sprintf("%s; min %d, max %d; metric period %gs, warmup %gs (time_scale %g)",
			policies(r.Scaler), r.Scaler.Min, r.Scaler.Max, r.Scaler.PeriodS, r.Scaler.WarmupS, r.Scaler.TimeScale)},
		{Label: "machine", Value: fmt.Sprintf("%d CPUs shared by the load generator and the whole region; load average %.2f before, %.2f after", r.Machine.CPUs, r.Machine.LoadAvgBefore, r.Machine.LoadAvgAfter)},
	}
	for _, run := range r.Runs {
		status := "pass"
		verdict := "PASS"
		if !run.Pass {
			status, verdict = "fail", "FAIL: "+strings.Join(run.Reasons, "; ")
		}
		if run.Name == RunOff && run.Pass {
			verdict = "PASS (the SLO broke without scaling, as it must)"
		}
		out.Summary = append(out.Summary, report.Row{Label: run.Name + " run", Value: verdict, Status: status})
	}
	tbl := report.Table{
		Title: "Runs",
		Columns: []string{"run", "p99 outside window", "p99 in window", "p99 at peak", "p99 back in SLO after step",
			"errors", "instance-seconds (vs fixed at peak)", "peak instances", "back at min after drop"},
	}
	for _, run := range r.Runs {
		tbl.Rows = append(tbl.Rows, []string{
			run.Name,
			fmtMS(run.P99OutsideWindowMS), fmtMS(run.P99WindowMS), fmtMS(run.P99HoldMS),
			recovery(run.RecoveryS),
			fmt.Sprintf("%d of %d (%.3f %%)", run.Failed, run.Requests, 100*run.ErrorRate),
			fmt.Sprintf("%.0f of %.0f (%.0f %%)", run.InstanceSeconds, run.FixedAtPeakInstanceSeconds, 100*run.InstanceSecondsRatio),
			fmt.Sprint(run.PeakInstances),
			fmtOptS(run.BackAtMinS),
		})
	}
	out.Tables = append(out.Tables, tbl)

	var rps, p99, p99off, errs, inst, cpu []report.Series
	target := false
	for _, run := range r.Runs {
		var pr, pl, pe, pi, pc, pt []report.Point
		for _, s := range run.Timeline {
			x := float64(s.T)
			pt = append(pt, report.Point{X: x, Y: s.TargetRPS})
			pr = append(pr, report.Point{X: x, Y: float64(s.OK)})
			y := math.NaN()
			if s.RPS > 0 {
				y = s.P99MS
			}
			pl = append(pl, report.Point{X: x, Y: y})
			n := 0
			for _, v := range s.Errors {
				n += v
			}
			pe = append(pe, report.Point{X: x, Y: float64(n)})
			in, c := math.NaN(), math.NaN()
			if s.InService != nil && *s.InService >= 0 {
				in = float64(*s.InService)
			}
			if s.AvgCPU != nil {
				c = *s.AvgCPU
			}
			pi = append(pi, report.Point{X: x, Y: in})
			pc = append(pc, report.Point{X: x, Y: c})
		}
		if !target {
			rps = append(rps, report.Series{Name: "target", Points: pt})
			target = true
		}
		rps = append(rps, report.Series{Name: run.Name + " ok", Points: pr})
		if run.Name == RunOff {
			p99off = append(p99off, report.Series{Name: run.Name + " p99", Points: pl})
		} else {
			p99 = append(p99, report.Series{Name: run.Name + " p99", Points: pl})
		}
		errs = append(errs, report.Series{Name: run.Name, Points: pe})
		inst = append(inst, report.Series{Name: run.Name, Points: pi})
		cpu = append(cpu, report.Series{Name: run.Name, Points: pc})
	}
	slo := []report.Threshold{{Value: p.SLOP99MS, Label: fmt.Sprintf("SLO p99 %.0f ms", p.SLOP99MS)}}
	out.Charts = append(out.Charts, report.Chart{Title: "Requests answered per second", Unit: "req/s", Series: rps})
	if len(p99) > 0 {
		out.Charts = append(out.Charts, report.Chart{Title: "p99 latency with scaling", Unit: "ms", Series: p99, Thresholds: slo})
	}
	if len(p99off) > 0 {
		out.Charts = append(out.Charts, report.Chart{Title: "p99 latency with scaling off (the control)", Unit: "ms", Series: p99off, Thresholds: slo})
	}
	out.Charts = append(out.Charts,
		report.Chart{Title: "Errors per second", Unit: "errors/s", Series: errs},
		report.Chart{Title: "Instances in service", Unit: "instances", Step: true, Series: inst},
		report.Chart{Title: "Average CPU of in-service instances", Unit: "% of quota", Series: cpu,
			Thresholds: cpuTargets(r.Scaler)},
	)
	if len(r.Runs) > 0 {
		out.Events = append(out.Events,
			report.Event{At: p.BaselineS, Label: fmt.Sprintf("step to %g rps", p.PeakRPS)},
			report.Event{At: p.BaselineS + p.WindowS, Label: fmt.Sprintf("end of the %.0f s window", p.WindowS)},
			report.Event{At: p.BaselineS + p.HoldS, Label: fmt.Sprintf("drop to %g rps", p.BaseRPS)},
		)
	}
	for _, run := range r.Runs {
		for _, a := range run.Activities {
			kind := "scheduled"
			switch {
			case a.Kind == "target-tracking" && a.To > a.From:
				kind = "out"
			case a.Kind == "target-tracking":
				kind = "in"
			}
			out.Events = append(out.Events, report.Event{At: a.At.Sub(run.StartedAt).Seconds(), Kind: kind,
				Label: run.Name + ": " + a.Cause})
		}
	}
	out.Notes = []string{
		"Requests start on a fixed timeline (an open model): each request's latency counts from the moment it was due, so a queue shows in full. Each run starts with the fleet at min.",
		"Instance-seconds count instances in service or pending, second by second, against a fleet fixed at the run's own peak for the whole run.",
		"The runs share one time axis; the markers numbered on every chart are listed below with their causes.",
	}
	return out
}

func cpuTargets(s ExamSpikeScaler) []report.Threshold {
	var out []report.Threshold
	for _, p := range s.Policies {
		if p.Metric == "CPUUtilization" {
			out = append(out, report.Threshold{Value: p.Target, Label: fmt.Sprintf("target %g %%", p.Target)})
		}
	}
	return out
}

func policies(s ExamSpikeScaler) string {
	var parts []string
	for _, p := range s.Policies {
		parts = append(parts, fmt.Sprintf("target tracking %s at %g", p.Metric, p.Target))
	}
	return strings.Join(parts, ", ")
}

func stepWord(ramp float64) string {
	if ramp > 0 {
		return fmt.Sprintf("ramp over %gs", ramp)
	}
	return "step"
}

func recovery(p *float64) string {
	switch {
	case p == nil:
		return "not before the drop"
	case *p == 0:
		return "never left it"
	}
	return fmt.Sprintf("%.0f s", *p)
}

func fmtMS(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return "(none)"
	}
	return h
}
