package drill

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/report"
)

// MaxReportSize bounds one saved report.
const MaxReportSize = 16 << 20

// ReportStore keeps drill reports as JSON files in Dir (the state dir's
// drills/), one per run, named after when the drill started and which it
// was: 20261130T071104Z-db-failover.json.
type ReportStore struct {
	Dir string
}

// ReportInfo is a saved report's envelope, for listings.
type ReportInfo struct {
	// ID names the report in the store (the file name without .json).
	ID string `json:"id"`
	Envelope
	// Timeline is true when the report has a per-second timeline.
	Timeline bool `json:"timeline"`
	// Bytes is the report's size.
	Bytes int64 `json:"bytes"`
}

var (
	drillNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	reportIDRE  = regexp.MustCompile(`^\d{8}T\d{6}Z-[a-z][a-z0-9-]{0,62}(-\d{1,4})?$`)
)

// parseEnvelope checks that raw is one JSON object with the envelope's
// fields: a drill name, a start, an end not before it.
func parseEnvelope(raw []byte) (Envelope, map[string]json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return Envelope{}, nil, fmt.Errorf("a drill report is one JSON object: %w", err)
	}
	var e Envelope
	if err := json.Unmarshal(raw, &e); err != nil {
		return Envelope{}, nil, fmt.Errorf("read the report's envelope: %w", err)
	}
	var problems []string
	for _, k := range []string{"drill", "started_at", "ended_at", "region", "spec_sha256", "haven_version", "pass"} {
		if _, ok := top[k]; !ok {
			problems = append(problems, k+": missing")
		}
	}
	if !drillNameRE.MatchString(e.Drill) {
		problems = append(problems, fmt.Sprintf("drill: must be a drill's name such as db-failover, got %q", e.Drill))
	}
	if e.StartedAt.IsZero() {
		problems = append(problems, "started_at: must be set")
	}
	if e.EndedAt.Before(e.StartedAt) {
		problems = append(problems, "ended_at: must not be before started_at")
	}
	if len(problems) > 0 {
		return Envelope{}, nil, fmt.Errorf("the report's envelope: %s", strings.Join(problems, "; "))
	}
	return e, top, nil
}

// Save checks raw's envelope and writes it atomically (0600), returning
// its listing entry.
func (s ReportStore) Save(raw []byte) (ReportInfo, error) {
	if len(raw) > MaxReportSize {
		return ReportInfo{}, fmt.Errorf("save report: %d bytes, at most %d", len(raw), MaxReportSize)
	}
	e, top, err := parseEnvelope(raw)
	if err != nil {
		return ReportInfo{}, fmt.Errorf("save report: %w", err)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return ReportInfo{}, fmt.Errorf("save report: %w", err)
	}
	base := e.StartedAt.UTC().Format("20060102T150405Z") + "-" + e.Drill
	id := base
	for i := 2; ; i++ {
		if _, err := os.Stat(filepath.Join(s.Dir, id+".json")); errors.Is(err, os.ErrNotExist) {
			break
		}
		if i > 9999 {
			return ReportInfo{}, errors.New("save report: too many reports of the same second")
		}
		id = fmt.Sprintf("%s-%d", base, i)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return ReportInfo{}, fmt.Errorf("save report: %w", err)
	}
	out.WriteByte('\n')
	if err := atomicfile.WriteFile(filepath.Join(s.Dir, id+".json"), out.Bytes(), 0o600); err != nil {
		return ReportInfo{}, fmt.Errorf("save report: %w", err)
	}
	_, tl := top["timeline"]
	return ReportInfo{ID: id, Envelope: e, Timeline: tl, Bytes: int64(out.Len())}, nil
}

// List returns every saved report, newest first. A file that is not a
// report is skipped.
func (s ReportStore) List() ([]ReportInfo, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return []ReportInfo{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list reports: %w", err)
	}
	out := []ReportInfo{}
	for _, ent := range ents {
		id, ok := strings.CutSuffix(ent.Name(), ".json")
		if !ok || !reportIDRE.MatchString(id) {
			continue
		}
		raw, err := s.Read(id)
		if err != nil {
			continue
		}
		e, top, err := parseEnvelope(raw)
		if err != nil {
			continue
		}
		_, tl := top["timeline"]
		out = append(out, ReportInfo{ID: id, Envelope: e, Timeline: tl, Bytes: int64(len(raw))})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.After(out[j].StartedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Read returns a saved report's JSON.
func (s ReportStore) Read(id string) ([]byte, error) {
	if !reportIDRE.MatchString(id) {
		return nil, fmt.Errorf("report %q: not a report id such as 20261130T071104Z-db-failover (`haven drill reports` lists them)", id)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, id+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("report %s: no such report (`haven drill reports` lists them)", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read report %s: %w", id, err)
	}
	return b, nil
}

// Render turns any drill report's JSON into an HTML report: its envelope
// as the title and verdict, its other numbers, words and flags as summary
// rows, its lists of records as tables, and its per-second timeline (when
// it has one) as charts of requests, errors and latency.
func Render(raw []byte) (report.Report, error) {
	e, top, err := parseEnvelope(raw)
	if err != nil {
		return report.Report{}, err
	}
	pass := e.Pass
	r := report.Report{
		Title: e.Drill + " drill",
		Subtitle: fmt.Sprintf("region %s · %s → %s · haven %s · spec sha256 %s", e.Region, e.StartedAt.UTC().Format(time.RFC3339),
			e.EndedAt.UTC().Format(time.RFC3339), e.HavenVersion, short(e.SpecSHA256)),
		Pass: &pass,
		Summary: []report.Row{
			{Label: "duration", Value: e.EndedAt.Sub(e.StartedAt).Round(time.Second).String()},
		},
	}
	for _, reason := range e.Reasons {
		r.Summary = append(r.Summary, report.Row{Label: "reason", Value: reason, Status: "fail"})
	}
	envelopeKeys := map[string]bool{"drill": true, "started_at": true, "ended_at": true, "region": true, "spec_sha256": true,
		"haven_version": true, "pass": true, "reasons": true, "timeline": true}
	keys := make([]string, 0, len(top))
	for k := range top {
		if !envelopeKeys[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		addField(&r, k, top[k])
	}
	if tl, ok := top["timeline"]; ok {
		var secs []load.Second
		if err := json.Unmarshal(tl, &secs); err != nil {
			return report.Report{}, fmt.Errorf("read the report's timeline: %w", err)
		}
		r.Charts = timelineCharts(secs)
	}
	return r, nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	if s == "" {
		return "unknown"
	}
	return s
}

// addField adds one top-level field: a scalar as a summary row, an object
// of scalars as rows "key.sub", a list of objects as a table.
func addField(r *report.Report, k string, raw json.RawMessage) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		subs := make([]string, 0, len(x))
		for sk := range x {
			subs = append(subs, sk)
		}
		sort.Strings(subs)
		for _, sk := range subs {
			if s, ok := scalar(x[sk]); ok {
				r.Summary = append(r.Summary, report.Row{Label: k + "." + sk, Value: s})
			}
		}
	case []any:
		addTable(r, k, x)
	default:
		if s, ok := scalar(x); ok {
			r.Summary = append(r.Summary, report.Row{Label: k, Value: s})
		}
	}
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return fmt.Sprint(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return fmt.Sprintf("%.0f", x), true
		}
		return fmt.Sprintf("%.3g", x), true
	case nil:
		return "", false
	}
	return "", false
}

// addTable renders a list of records (at most 200 rows, 10 columns: the
// scalar fields most rows have).
func addTable(r *report.Report, k string, items []any) {
	counts := map[string]int{}
	var rows []map[string]any
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		rows = append(rows, m)
		for ck, cv := range m {
			if _, ok := scalar(cv); ok {
				counts[ck]++
			}
		}
	}
	if len(rows) == 0 {
		var vals []string
		for _, it := range items {
			if s, ok := scalar(it); ok {
				vals = append(vals, s)
			}
		}
		if len(vals) > 0 {
			r.Summary = append(r.Summary, report.Row{Label: k, Value: strings.Join(vals, ", ")})
		}
		return
	}
	cols := make([]string, 0, len(counts))
	for c := range counts {
		cols = append(cols, c)
	}
	sort.Slice(cols, func(i, j int) bool {
		if counts[cols[i]] != counts[cols[j]] {
			return counts[cols[i]] > counts[cols[j]]
		}
		return cols[i] < cols[j]
	})
	cols = cols[:min(len(cols), 10)]
	slices.Sort(cols)
	t := report.Table{Title: k, Columns: cols}
	for _, m := range rows[:min(len(rows), 200)] {
		var row []string
		for _, c := range cols {
			s, _ := scalar(m[c])
			row = append(row, s)
		}
		t.Rows = append(t.Rows, row)
	}
	r.Tables = append(r.Tables, t)
}

// timelineCharts draws a per-second timeline.
func timelineCharts(secs []load.Second) []report.Chart {
	var sent, ok, errs, p50, p99 []report.Point
	for _, s := range secs {
		x := float64(s.T)
		sent = append(sent, report.Point{X: x, Y: float64(s.RPS)})
		ok = append(ok, report.Point{X: x, Y: float64(s.OK)})
		n := 0
		for _, v := range s.Errors {
			n += v
		}
		errs = append(errs, report.Point{X: x, Y: float64(n)})
		lat := func(v float64) float64 {
			if s.RPS == 0 {
				return math.NaN()
			}
			return v
		}
		p50 = append(p50, report.Point{X: x, Y: lat(s.P50MS)})
		p99 = append(p99, report.Point{X: x, Y: lat(s.P99MS)})
	}
	return []report.Chart{
		{Title: "Requests per second", Unit: "req/s", Series: []report.Series{{Name: "sent", Points: sent}, {Name: "ok", Points: ok}}},
		{Title: "Failed requests per second", Unit: "req/s", Series: []report.Series{{Name: "failed", Points: errs}}},
		{Title: "Latency", Unit: "ms", Series: []report.Series{{Name: "p99", Points: p99}, {Name: "p50", Points: p50}}},
	}
}
