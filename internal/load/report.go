package load

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/haven-platform/haven/internal/report"
)

// Report turns the run into an HTML report: requests, latency, errors and,
// when the run observed the fleet, instances and CPU, with the profile's
// phase changes marked. A drill adds its own events, rows and runs.
func (r *Result) Report(title string, sloP99MS float64) report.Report {
	var target, sent, ok, p50, p95, p99, errs, inSvc, pending, cpu []report.Point
	fleet := false
	for _, s := range r.Timeline {
		x := float64(s.T)
		target = append(target, report.Point{X: x, Y: s.TargetRPS})
		sent = append(sent, report.Point{X: x, Y: float64(s.RPS)})
		ok = append(ok, report.Point{X: x, Y: float64(s.OK)})
		lat := func(v float64) float64 {
			if s.RPS == 0 {
				return math.NaN()
			}
			return v
		}
		p50 = append(p50, report.Point{X: x, Y: lat(s.P50MS)})
		p95 = append(p95, report.Point{X: x, Y: lat(s.P95MS)})
		p99 = append(p99, report.Point{X: x, Y: lat(s.P99MS)})
		n := 0
		for _, v := range s.Errors {
			n += v
		}
		errs = append(errs, report.Point{X: x, Y: float64(n)})
		in, pe, c := math.NaN(), math.NaN(), math.NaN()
		if s.InService != nil {
			fleet = true
			in, pe = float64(*s.InService), float64(*s.Pending)
		}
		if s.AvgCPU != nil {
			c = *s.AvgCPU
		}
		inSvc = append(inSvc, report.Point{X: x, Y: in})
		pending = append(pending, report.Point{X: x, Y: pe})
		cpu = append(cpu, report.Point{X: x, Y: c})
	}
	latency := report.Chart{Title: "Latency", Unit: "ms", Series: []report.Series{{Name: "p99", Points: p99}, {Name: "p95", Points: p95}, {Name: "p50", Points: p50}}}
	if sloP99MS > 0 {
		latency.Thresholds = []report.Threshold{{Value: sloP99MS, Label: fmt.Sprintf("SLO p99 %s ms", fmtRate(sloP99MS))}}
	}
	rep := report.Report{
		Title:    title,
		Subtitle: fmt.Sprintf("profile %s · %s → %s", r.Profile, r.StartedAt.Format("2006-01-02T15:04:05Z"), r.EndedAt.Format("15:04:05Z")),
		Summary: []report.Row{
			{Label: "requests", Value: fmt.Sprintf("%d (%d ok)", r.Summary.Requests, r.Summary.OK)},
			{Label: "errors", Value: fmt.Sprintf("%d (%.3f %%)%s", r.Summary.Failed, 100*r.Summary.ErrorRate, errorBreakdown(r.Summary.Errors))},
			{Label: "latency p50 / p95 / p99 / max", Value: fmt.Sprintf("%s / %s / %s / %s", fmtMS(r.Summary.P50MS), fmtMS(r.Summary.P95MS), fmtMS(r.Summary.P99MS), fmtMS(r.Summary.MaxMS))},
		},
		Charts: []report.Chart{
			{Title: "Requests per second", Unit: "req/s", Series: []report.Series{{Name: "target", Points: target}, {Name: "sent", Points: sent}, {Name: "ok", Points: ok}}},
			latency,
			{Title: "Errors per second", Unit: "errors/s", Series: []report.Series{{Name: "errors", Points: errs}}},
		},
		Notes: []string{"Requests start on a fixed timeline (an open model); each request's latency counts from the moment it was due, and it is counted in the second it was due."},
	}
	if fleet {
		rep.Charts = append(rep.Charts,
			report.Chart{Title: "Instances", Unit: "instances", Step: true, Series: []report.Series{{Name: "in service", Points: inSvc}, {Name: "pending", Points: pending}}},
			report.Chart{Title: "Average CPU", Unit: "% of quota", Series: []report.Series{{Name: "avg CPU", Points: cpu}}},
		)
	}
	for _, m := range r.Marks {
		rep.Events = append(rep.Events, report.Event{At: m.At.Seconds(), Label: m.Label})
	}
	return rep
}

func errorBreakdown(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return ": " + strings.Join(parts, ", ")
}
