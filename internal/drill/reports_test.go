package drill

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/report"
)

// TestEveryDrillReportHasTheEnvelope: each drill's report type marshals
// the envelope's keys at its top level, and those with load a timeline.
func TestEveryDrillReportHasTheEnvelope(t *testing.T) {
	for name, rep := range map[string]any{
		"instance-loss":   &InstanceLossReport{},
		"db-failover":     &DBFailoverReport{},
		"pitr":            &PITRReport{},
		"secret-rotation": &RotationReport{},
		"zone-loss":       &ZoneLossReport{},
	} {
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"drill", "started_at", "ended_at", "region", "spec_sha256", "haven_version", "pass"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s report lacks the envelope's %q: %s", name, k, b)
			}
		}
	}
	b, _ := json.Marshal(&InstanceLossReport{})
	if !bytes.Contains(b, []byte(`"timeline":`)) {
		t.Errorf("the instance-loss report has no timeline key: %s", b)
	}
}

func sampleReport(t *testing.T, started time.Time, pass bool) []byte {
	t.Helper()
	rep := InstanceLossReport{
		Envelope: Envelope{Drill: "instance-loss", StartedAt: started, EndedAt: started.Add(61 * time.Second), Region: "courses",
			SpecSHA256: strings.Repeat("ab", 32), HavenVersion: "test", Pass: pass},
		Summary:  Summary{Requests: 3000, Failed: 0, P50MS: 4.2, P99MS: 31},
		Rate:     50,
		Faults:   []FaultResult{{Kind: "kill", Instance: "i-0a", Zone: "a", DetectMS: 650}, {Kind: "freeze", Instance: "i-0b", Zone: "b", DetectMS: 700}},
		Desired:  2,
		Timeline: nil,
	}
	for i := range 61 {
		rep.Timeline = append(rep.Timeline, mkSecond(i))
	}
	if !pass {
		rep.Reasons = []string{"1 of 3000 requests failed"}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReportStoreSavesListsReadsAndRenders: a saved report is listed with
// its envelope, newest first, read back as it was, and rendered with its
// figures, tables and timeline charts; a report without the envelope is
// refused, naming what is missing.
func TestReportStoreSavesListsReadsAndRenders(t *testing.T) {
	s := ReportStore{Dir: filepath.Join(t.TempDir(), "drills")}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("empty store lists %v, %v", l, err)
	}
	t0 := time.Date(2026, 11, 30, 7, 11, 4, 0, time.UTC)
	a, err := s.Save(sampleReport(t, t0, true))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Save(sampleReport(t, t0.Add(time.Hour), false))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Save(sampleReport(t, t0, true)) // the same second: a suffix
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "20261130T071104Z-instance-loss" || c.ID != a.ID+"-2" || !a.Timeline || a.Region != "courses" {
		t.Errorf("saved %+v and %+v", a, c)
	}
	if fi, err := os.Stat(filepath.Join(s.Dir, a.ID+".json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("saved file: %v %v, want mode 0600", fi, err)
	}
	l, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 3 || l[0].ID != b.ID || l[0].Pass || len(l[0].Reasons) != 1 {
		t.Fatalf("list = %+v, want 3 with the newest (failed) first", l)
	}
	raw, err := s.Read(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var back InstanceLossReport
	if err := json.Unmarshal(raw, &back); err != nil || back.Requests != 3000 || len(back.Timeline) != 61 || !back.StartedAt.Equal(t0) {
		t.Errorf("read back %+v, %v", back.Envelope, err)
	}
	if _, err := s.Read("../../etc/passwd"); err == nil {
		t.Error("Read accepted a path")
	}
	if _, err := s.Read("20261130T071104Z-nothing"); err == nil || !strings.Contains(err.Error(), "no such report") {
		t.Errorf("Read of a missing report: %v", err)
	}

	r, err := Render(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.Title != "instance-loss drill" || r.Pass == nil || !*r.Pass || len(r.Charts) != 3 {
		t.Errorf("rendered %q pass %v with %d charts", r.Title, r.Pass, len(r.Charts))
	}
	rows := map[string]string{}
	for _, row := range r.Summary {
		rows[row.Label] = row.Value
	}
	if rows["requests"] != "3000" || rows["p99_ms"] != "31" || rows["duration"] != "1m1s" {
		t.Errorf("summary rows = %v", rows)
	}
	if len(r.Tables) != 1 || r.Tables[0].Title != "faults" || len(r.Tables[0].Rows) != 2 {
		t.Errorf("tables = %+v, want the faults", r.Tables)
	}
	var html bytes.Buffer
	if err := report.Render(&html, r); err != nil || !strings.Contains(html.String(), "<svg") {
		t.Errorf("HTML render: %v", err)
	}

	for _, bad := range []struct{ raw, want string }{
		{`[1, 2]`, "one JSON object"},
		{`{"drill": "x"}`, "started_at: missing"},
		{`{"drill": "Bad Name", "started_at": "2026-11-30T07:00:00Z", "ended_at": "2026-11-30T07:01:00Z", "region": "r", "spec_sha256": "", "haven_version": "", "pass": true}`, "drill: must be a drill's name"},
		{`{"drill": "x", "started_at": "2026-11-30T07:00:00Z", "ended_at": "2026-11-30T06:00:00Z", "region": "r", "spec_sha256": "", "haven_version": "", "pass": true}`, "ended_at: must not be before"},
	} {
		if _, err := s.Save([]byte(bad.raw)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Save(%s) = %v, want %q", bad.raw, err, bad.want)
		}
	}
	// A stray file is skipped, not an error.
	os.WriteFile(filepath.Join(s.Dir, "notes.json"), []byte("{}"), 0o600)
	if l, err := s.List(); err != nil || len(l) != 3 {
		t.Errorf("list with a stray file: %d, %v", len(l), err)
	}
}

// TestRecorderTimeline: requests are counted in the second they started,
// failures by their HTTP status or kind.
func TestRecorderTimeline(t *testing.T) {
	r := NewRecorder()
	r.start = time.Now().Add(-3 * time.Second)
	r.Record("/a", 10*time.Millisecond, nil)
	r.Record("/b", 20*time.Millisecond, errors.New("GET /b: status 503"))
	r.Record("/c", 2100*time.Millisecond, errors.New("context deadline exceeded"))
	tl := r.Timeline()
	if len(tl) != 3 {
		t.Fatalf("timeline has %d seconds, want 3 (the last request started in second 0)", len(tl))
	}
	if tl[2].RPS != 2 || tl[2].OK != 1 || tl[2].Errors["503"] != 1 || tl[0].RPS != 1 || tl[0].Errors["timeout"] != 1 || tl[1].RPS != 0 {
		t.Errorf("timeline = %+v", tl)
	}
}

func mkSecond(i int) load.Second {
	return load.Second{T: i, RPS: 50, OK: 50, P50MS: 4, P95MS: 10, P99MS: 20, MaxMS: 30}
}
