package alarms

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The property tests draw random alarms and datapoint histories from a
// seeded generator, so a failure names its seed and reproduces.

const propertyRuns = 5000

type world struct {
	d    Definition
	pts  []Datapoint
	prev State
	now  time.Time
}

func (w world) String() string {
	s := fmt.Sprintf("%d of %d, %s, threshold %g %s, prev %s, now %s:", w.d.DatapointsToAlarm, w.d.EvaluationPeriods, w.d.TreatMissingData, w.d.Threshold, w.d.Comparison, w.prev, w.now.Format(time.TimeOnly))
	for _, p := range w.pts {
		s += fmt.Sprintf(" %s=%g", p.Timestamp.Format(time.TimeOnly), p.Value)
	}
	return s
}

var (
	allTreatments  = []TreatMissingData{Missing, Ignore, Breaching, NotBreaching}
	allComparisons = []Comparison{GreaterThanOrEqualToThreshold, GreaterThanThreshold, LessThanThreshold, LessThanOrEqualToThreshold}
	allStates      = []State{StateOK, StateAlarm, StateInsufficientData}
)

func randomWorld(r *rand.Rand) world {
	n := 1 + r.IntN(6)
	period := []time.Duration{time.Second, 10 * time.Second, time.Minute, 5 * time.Minute}[r.IntN(4)]
	d := Definition{Name: "p", Metric: MetricReplicaLag, Statistic: Maximum, Period: period,
		EvaluationPeriods: n, DatapointsToAlarm: 1 + r.IntN(n), Threshold: float64(r.IntN(5)),
		Comparison: allComparisons[r.IntN(4)], TreatMissingData: allTreatments[r.IntN(4)]}
	now := t0.Add(time.Duration(r.IntN(1000)) * time.Second)
	w := world{d: d, prev: allStates[r.IntN(3)], now: now}
	start, end := Window(d, now)
	density := r.Float64()
	// Periods from two before the range to one after it: the ones outside
	// must not matter.
	for ts := start.Add(-2 * period); !ts.After(end); ts = ts.Add(period) {
		if r.Float64() < density {
			w.pts = append(w.pts, Datapoint{Timestamp: ts.Add(time.Duration(r.Int64N(int64(period)))), Value: float64(r.IntN(5))})
		}
	}
	return w
}

// forAll runs prop on propertyRuns random worlds. prop returns whether the
// world was one it applies to; at least minApplied of them must be, so a
// property cannot pass by never being checked.
func forAll(t *testing.T, minApplied int, prop func(t *testing.T, w world, r *rand.Rand) bool) {
	t.Helper()
	applied := 0
	for seed := uint64(0); seed < propertyRuns; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		w := randomWorld(r)
		if prop(t, w, r) {
			applied++
		}
		if t.Failed() {
			t.Fatalf("seed %d: %s", seed, w)
		}
	}
	t.Logf("applied to %d worlds", applied)
	if applied < minApplied {
		t.Fatalf("the property applied to %d of %d worlds, want at least %d", applied, propertyRuns, minApplied)
	}
}

func realInRange(w world) int {
	start, end := Window(w.d, w.now)
	seen := map[time.Time]bool{}
	for _, p := range w.pts {
		ts := alignDown(p.Timestamp, w.d.Period)
		if !ts.Before(start) && ts.Before(end) {
			seen[ts] = true
		}
	}
	return len(seen)
}

func TestPropertyChangedMeansANewStateAndEveryReasonIsSet(t *testing.T) {
	forAll(t, propertyRuns, func(t *testing.T, w world, _ *rand.Rand) bool {
		got := Evaluate(w.d, w.pts, w.prev, w.now)
		if got.Changed != (got.State != w.prev) {
			t.Errorf("Changed %v, %s → %s", got.Changed, w.prev, got.State)
		}
		if got.Reason == "" || len(got.ReasonData.EvaluatedDatapoints) != w.d.EvaluationPeriods {
			t.Errorf("reason %q, %d evaluated datapoints", got.Reason, len(got.ReasonData.EvaluatedDatapoints))
		}
		if again := Evaluate(w.d, w.pts, w.prev, w.now); again.State != got.State || again.Reason != got.Reason {
			t.Errorf("not deterministic")
		}
		return true
	})
}

// With N real datapoints in range, "the value you set for how to treat
// missing data is not needed and is ignored".
func TestPropertyEnoughDataMakesTheTreatmentIrrelevant(t *testing.T) {
	forAll(t, 1000, func(t *testing.T, w world, _ *rand.Rand) bool {
		if realInRange(w) < w.d.EvaluationPeriods {
			return false
		}
		var first State
		for i, tmd := range allTreatments {
			d := w.d
			d.TreatMissingData = tmd
			got := Evaluate(d, w.pts, w.prev, w.now).State
			if i == 0 {
				first = got
			} else if got != first {
				t.Errorf("%s gives %s, %s gives %s", allTreatments[0], first, tmd, got)
			}
			if got == StateInsufficientData {
				t.Errorf("INSUFFICIENT_DATA with a full window")
			}
		}
		return true
	})
}

// INSUFFICIENT_DATA comes only from treating missing data as missing, or
// from ignore keeping it.
func TestPropertyInsufficientDataOnlyFromMissingOrKept(t *testing.T) {
	forAll(t, 100, func(t *testing.T, w world, _ *rand.Rand) bool {
		got := Evaluate(w.d, w.pts, w.prev, w.now)
		if got.State != StateInsufficientData {
			return false
		}
		if !(w.d.TreatMissingData == Missing || (w.d.TreatMissingData == Ignore && w.prev == StateInsufficientData)) {
			t.Errorf("INSUFFICIENT_DATA with %s, previous %s", w.d.TreatMissingData, w.prev)
		}
		return true
	})
}

// The treatments order the outcomes: breaching is the most eager to alarm,
// notBreaching the least.
func TestPropertyTreatmentsAreOrdered(t *testing.T) {
	forAll(t, propertyRuns, func(t *testing.T, w world, _ *rand.Rand) bool {
		st := map[TreatMissingData]State{}
		for _, tmd := range allTreatments {
			d := w.d
			d.TreatMissingData = tmd
			st[tmd] = Evaluate(d, w.pts, w.prev, w.now).State
		}
		if st[NotBreaching] == StateAlarm {
			for _, tmd := range allTreatments {
				if st[tmd] != StateAlarm {
					t.Errorf("notBreaching alarms but %s gives %s", tmd, st[tmd])
				}
			}
		}
		if st[Missing] == StateAlarm && st[Breaching] != StateAlarm {
			t.Errorf("missing alarms but breaching gives %s", st[Breaching])
		}
		if st[Breaching] == StateOK {
			for _, tmd := range allTreatments {
				if st[tmd] != StateOK {
					t.Errorf("breaching gives OK but %s gives %s", tmd, st[tmd])
				}
			}
		}
		return true
	})
}

// One more breaching datapoint never takes an alarm out of ALARM.
func TestPropertyMonotoneInBreaches(t *testing.T) {
	forAll(t, 200, func(t *testing.T, w world, r *rand.Rand) bool {
		before := Evaluate(w.d, w.pts, w.prev, w.now)
		if before.State != StateAlarm || len(w.pts) == 0 {
			return false
		}
		pts := append([]Datapoint(nil), w.pts...)
		i := r.IntN(len(pts))
		if w.d.Comparison.Breaches(pts[i].Value, w.d.Threshold) {
			return false
		}
		switch w.d.Comparison {
		case GreaterThanThreshold, GreaterThanOrEqualToThreshold:
			pts[i].Value = w.d.Threshold + 1
		default:
			pts[i].Value = w.d.Threshold - 1
		}
		if after := Evaluate(w.d, pts, w.prev, w.now); after.State != StateAlarm {
			t.Errorf("datapoint %d made breaching: ALARM → %s (%s)", i, after.State, after.Reason)
		}
		return true
	})
}

// Only the evaluation range matters, and the same history a whole number of
// periods later gives the same state.
func TestPropertyOnlyTheRangeMattersAndTimeShifts(t *testing.T) {
	forAll(t, propertyRuns, func(t *testing.T, w world, r *rand.Rand) bool {
		want := Evaluate(w.d, w.pts, w.prev, w.now)
		start, end := Window(w.d, w.now)
		var inside []Datapoint
		for _, p := range w.pts {
			if ts := alignDown(p.Timestamp, w.d.Period); !ts.Before(start) && ts.Before(end) {
				inside = append(inside, p)
			}
		}
		if got := Evaluate(w.d, inside, w.prev, w.now); got.State != want.State || got.Reason != want.Reason {
			t.Errorf("without the datapoints outside the range: %s, want %s", got.State, want.State)
		}
		k := time.Duration(1+r.IntN(50)) * w.d.Period
		shifted := make([]Datapoint, len(w.pts))
		for i, p := range w.pts {
			shifted[i] = p
			shifted[i].Timestamp = p.Timestamp.Add(k)
		}
		if got := Evaluate(w.d, shifted, w.prev, w.now.Add(k)); got.State != want.State {
			t.Errorf("shifted by %s: %s, want %s", k, got.State, want.State)
		}
		return true
	})
}

// With M = N = 1 and a full range, the state is just the newest datapoint.
func TestPropertyOneOfOneIsTheNewestDatapoint(t *testing.T) {
	forAll(t, 1500, func(t *testing.T, w world, _ *rand.Rand) bool {
		d := w.d
		d.EvaluationPeriods, d.DatapointsToAlarm = 1, 1
		start, end := Window(d, w.now)
		var newest *Datapoint
		for i := range w.pts {
			p := w.pts[i]
			if ts := alignDown(p.Timestamp, d.Period); !ts.Before(start) && ts.Before(end) && (newest == nil || !ts.Before(alignDown(newest.Timestamp, d.Period))) {
				newest = &p
			}
		}
		if newest == nil {
			return false
		}
		want := StateOK
		if d.Comparison.Breaches(newest.Value, d.Threshold) {
			want = StateAlarm
		}
		if got := Evaluate(d, w.pts, w.prev, w.now); got.State != want {
			t.Errorf("newest %g: %s, want %s", newest.Value, got.State, want)
		}
		return true
	})
}
