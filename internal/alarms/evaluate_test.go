package alarms

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// t0 is a period boundary; tests evaluate at t0, so the evaluation range is
// the periods that end at t0.
var t0 = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

const minute = time.Minute

// pattern turns a row of AWS's tables ("0 - X - X", oldest first) into
// datapoints ending at t0: 0 is 0 (not breaching a threshold of 1 with
// GreaterThanThreshold), X is 2 (breaching), - is missing.
func pattern(t *testing.T, p string, period time.Duration) []Datapoint {
	t.Helper()
	f := strings.Fields(p)
	var out []Datapoint
	for i, c := range f {
		ts := t0.Add(-time.Duration(len(f)-i) * period)
		switch c {
		case "0":
			out = append(out, Datapoint{Timestamp: ts, Value: 0, SampleCount: 1})
		case "X":
			out = append(out, Datapoint{Timestamp: ts, Value: 2, SampleCount: 1})
		case "-":
		default:
			t.Fatalf("bad pattern %q", p)
		}
	}
	return out
}

func docDef(m, n int, tmd TreatMissingData) Definition {
	return Definition{Name: "doc", Metric: MetricHealthyHostCount, Statistic: Maximum, Period: 5 * minute,
		EvaluationPeriods: n, DatapointsToAlarm: m, Threshold: 1, Comparison: GreaterThanThreshold, TreatMissingData: tmd}
}

// retain marks "Retain current state" in AWS's tables.
const retain State = "retain"

// TestAWSMissingDataTables replays the tables of CloudWatch's "How alarm
// state is evaluated when data is missing"
// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarms-and-missing-data.html,
// AlarmThatSendsEmail.md in awsdocs/amazon-cloudwatch-user-guide, revision of
// 2023-05-17), plus the rows of its 2019 revision (commit 72266c7) and the
// two examples of "Avoiding premature transitions to alarm state".
func TestAWSMissingDataTables(t *testing.T) {
	type row struct {
		source               string
		m                    int
		data                 string
		missing, ignore, brc State
		notBreaching         State
	}
	const I = StateInsufficientData
	const A, O = StateAlarm, StateOK
	rows := []row{
		// First table: 3 out of 3, evaluation range 5.
		{"2023 table 1 row 1", 3, "0 - X - X", O, O, O, O},
		{"2023 table 1 row 2", 3, "0 - - - -", O, O, O, O},
		{"2023 table 1 row 3", 3, "- - - - -", I, retain, A, O},
		{"2023 table 1 row 4", 3, "0 X X - X", A, A, A, A},
		{"2023 table 1 row 5 (premature)", 3, "- - X - -", A, retain, A, O},
		{"2019 table 1 row 5", 3, "- - - - X", I, retain, A, O},
		{"2019 table 1 row 6", 3, "X - - - -", A, retain, A, O},
		{"premature text: not yet", 3, "- - - X -", I, retain, A, O},
		// Second table: 2 out of 3.
		{"2023 table 2 row 1", 2, "0 - X - X", A, A, A, A},
		{"2023 table 2 row 2", 2, "0 0 X 0 X", A, A, A, A},
		{"2023 table 2 row 3", 2, "0 - X - -", O, O, A, O},
		{"2023 table 2 row 4", 2, "- - - - 0", O, O, A, O},
		{"2023 table 2 row 5 (premature)", 2, "- - - X -", A, retain, A, O},
		{"2019 table 2 row 5", 2, "- - - - X", I, retain, A, O},
	}
	for _, r := range rows {
		for _, tc := range []struct {
			tmd  TreatMissingData
			want State
		}{{Missing, r.missing}, {Ignore, r.ignore}, {Breaching, r.brc}, {NotBreaching, r.notBreaching}} {
			for _, prev := range []State{StateOK, StateAlarm, StateInsufficientData} {
				d := docDef(r.m, 3, tc.tmd)
				got := Evaluate(d, pattern(t, r.data, d.Period), prev, t0)
				want := tc.want
				if want == retain {
					want = prev
				}
				if got.State != want {
					t.Errorf("%s: %d of 3, %q, %s, previous %s: got %s, want %s (%s)", r.source, r.m, r.data, tc.tmd, prev, got.State, want, got.Reason)
				}
				if got.Changed != (got.State != prev) {
					t.Errorf("%s: Changed = %v with %s → %s", r.source, got.Changed, prev, got.State)
				}
				if n := len(got.ReasonData.EvaluatedDatapoints); n != 3 {
					t.Errorf("%s %s: %d evaluated datapoints, want 3 (the evaluation periods)", r.source, tc.tmd, n)
				}
			}
		}
	}
}

// TestStillMissingGoesToAlarmNextTime is the note under AWS's first table:
// "0 - - - -" with missing data treated as breaching stays OK, and the next
// evaluation, the non-breaching datapoint out of the range, goes to ALARM.
func TestStillMissingGoesToAlarmNextTime(t *testing.T) {
	d := docDef(3, 3, Breaching)
	pts := pattern(t, "0 - - - -", d.Period)
	if got := Evaluate(d, pts, StateOK, t0); got.State != StateOK {
		t.Fatalf("first evaluation: %s, want OK", got.State)
	}
	got := Evaluate(d, pts, StateOK, t0.Add(d.Period))
	if got.State != StateAlarm || !got.Changed {
		t.Fatalf("next period: %s (changed %v), want ALARM", got.State, got.Changed)
	}
	if !strings.Contains(got.Reason, "no datapoints were received for 5 periods and 3 missing datapoints were treated as [Breaching]") {
		t.Errorf("reason %q", got.Reason)
	}
}

func TestReasonsReadLikeCloudWatch(t *testing.T) {
	d := Definition{Name: "healthy-hosts-below-min", Metric: MetricHealthyHostCount, Statistic: Minimum, Period: minute,
		EvaluationPeriods: 3, Threshold: 2, Comparison: LessThanThreshold, TreatMissingData: Breaching}
	pts := []Datapoint{
		{Timestamp: t0.Add(-3 * minute), Value: 1, SampleCount: 60},
		{Timestamp: t0.Add(-2 * minute), Value: 1, SampleCount: 60},
		{Timestamp: t0.Add(-1 * minute), Value: 0, SampleCount: 60},
	}
	got := Evaluate(d, pts, StateOK, t0.Add(10*time.Second))
	want := "Threshold Crossed: 3 out of the last 3 datapoints [0.0 (30/11/26 06:59:00), 1.0 (30/11/26 06:58:00), 1.0 (30/11/26 06:57:00)] were less than the threshold (2.0) (minimum 3 datapoints for OK -> ALARM transition)."
	if got.State != StateAlarm || got.Reason != want {
		t.Fatalf("got %s %q\nwant ALARM %q", got.State, got.Reason, want)
	}
	rd := got.ReasonData
	if rd.Version != "1.0" || rd.Statistic != "Minimum" || rd.Period != 60 || rd.Threshold != 2 || len(rd.RecentDatapoints) != 3 || rd.StartDate != t0.Add(-3*minute) {
		t.Errorf("reason data %+v", rd)
	}
	if e := rd.EvaluatedDatapoints; len(e) != 3 || !e[0].Timestamp.Equal(t0.Add(-minute)) || *e[0].Value != 0 || e[0].SampleCount != 60 {
		t.Errorf("evaluated datapoints (newest first) %+v", e)
	}
	b, err := json.Marshal(rd)
	if err != nil || !strings.Contains(string(b), `"evaluatedDatapoints":[{"timestamp":"2026-11-30T06:59:00Z","sampleCount":60,"value":0}`) {
		t.Errorf("reason data JSON %s (%v)", b, err)
	}

	pts[2].Value = 3
	got = Evaluate(d, pts, StateAlarm, t0)
	want = "Threshold Crossed: 1 out of the last 3 datapoints [3.0 (30/11/26 06:59:00)] was not less than the threshold (2.0) (minimum 1 datapoint for ALARM -> OK transition)."
	if got.State != StateOK || got.Reason != want {
		t.Fatalf("got %s %q\nwant OK %q", got.State, got.Reason, want)
	}

	p99 := Definition{Name: "lat", Metric: MetricTargetResponseTime, Statistic: "p99", Period: minute, EvaluationPeriods: 5, DatapointsToAlarm: 3,
		Threshold: 1, Comparison: GreaterThanThreshold, TreatMissingData: NotBreaching}
	got = Evaluate(p99, []Datapoint{{Timestamp: t0.Add(-minute), Value: 1.5}, {Timestamp: t0.Add(-3 * minute), Value: 2.25}, {Timestamp: t0.Add(-4 * minute), Value: 4}}, StateOK, t0)
	want = "Threshold Crossed: 3 out of the last 5 datapoints [1.5 (30/11/26 06:59:00), 2.25 (30/11/26 06:57:00), 4.0 (30/11/26 06:56:00)] were greater than the threshold (1.0), with 2 missing datapoints treated as [NonBreaching] (minimum 3 datapoints for OK -> ALARM transition)."
	if got.State != StateAlarm || got.Reason != want || got.ReasonData.ExtendedStatistic != "p99" || got.ReasonData.Statistic != "" || got.ReasonData.MissingFilled != 2 {
		t.Fatalf("got %s %q %+v\nwant ALARM %q", got.State, got.Reason, got.ReasonData, want)
	}

	none := Evaluate(docDef(3, 3, Missing), nil, StateOK, t0)
	if none.State != StateInsufficientData || none.Reason != "Insufficient Data: no datapoints were received for 5 periods and 3 missing datapoints were treated as [Missing]." {
		t.Errorf("no data: %s %q", none.State, none.Reason)
	}
}

func TestOnlyCompletePeriodsInTheRangeCount(t *testing.T) {
	d := docDef(1, 1, Missing)     // range: the 3 periods before the current one
	now := t0.Add(2 * time.Minute) // inside the period [t0, t0+5m)
	pts := []Datapoint{
		{Timestamp: t0, Value: 2},                                 // the current, incomplete period: not evaluated
		{Timestamp: t0.Add(-4 * d.Period), Value: 2},              // before the range
		{Timestamp: t0.Add(-d.Period + 30*time.Second), Value: 0}, // unaligned: counts for its period
	}
	got := Evaluate(d, pts, StateInsufficientData, now)
	if got.State != StateOK {
		t.Fatalf("got %s (%s), want OK from the one datapoint in range", got.State, got.Reason)
	}
	if got.ReasonData.StartDate != t0.Add(-d.Period) {
		t.Errorf("start date %v", got.ReasonData.StartDate)
	}
}

func TestNaNIsMissingAndLaterDuplicateWins(t *testing.T) {
	d := docDef(1, 1, NotBreaching)
	nan := Evaluate(d, []Datapoint{{Timestamp: t0.Add(-d.Period), Value: nan()}}, StateAlarm, t0)
	if nan.State != StateOK || nan.ReasonData.MissingFilled != 1 {
		t.Errorf("NaN: %s, filled %d; want OK with the datapoint treated as missing", nan.State, nan.ReasonData.MissingFilled)
	}
	dup := Evaluate(d, []Datapoint{{Timestamp: t0.Add(-d.Period), Value: 0}, {Timestamp: t0.Add(-d.Period), Value: 2}}, StateOK, t0)
	if dup.State != StateAlarm {
		t.Errorf("duplicate: %s, want ALARM from the later datapoint", dup.State)
	}
}

func nan() float64 { var z float64; return z / z }
