package alarms

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Datapoint is one period's statistic, as a Source returns it.
type Datapoint struct {
	// Timestamp is the start of the period.
	Timestamp time.Time `json:"timestamp"`
	// Value is the statistic over the period.
	Value float64 `json:"value"`
	// SampleCount is how many samples the period held (informational).
	SampleCount float64 `json:"sample_count,omitempty"`
}

// Evaluation is the outcome of Evaluate.
type Evaluation struct {
	// State is the alarm's state after the evaluation.
	State State
	// Changed reports whether State differs from the previous state.
	Changed bool
	// Reason explains the state in CloudWatch's words; it is recorded only
	// when the state changes.
	Reason string
	// ReasonData is the machine-readable part of the reason.
	ReasonData ReasonData
}

// ReasonData is CloudWatch's StateReasonData (version 1.0), plus haven's
// treatment of missing data.
type ReasonData struct {
	Version             string               `json:"version"`
	QueryDate           time.Time            `json:"queryDate"`
	StartDate           time.Time            `json:"startDate"`
	Statistic           string               `json:"statistic,omitempty"`
	ExtendedStatistic   string               `json:"extendedStatistic,omitempty"`
	Period              int                  `json:"period"`
	RecentDatapoints    []float64            `json:"recentDatapoints"`
	EvaluatedDatapoints []EvaluatedDatapoint `json:"evaluatedDatapoints"`
	Threshold           float64              `json:"threshold"`
	// TreatMissingData and MissingFilled say how many of the evaluated
	// datapoints were missing and filled in by the treatment (haven's
	// addition).
	TreatMissingData TreatMissingData `json:"treatMissingData"`
	MissingFilled    int              `json:"missingFilled"`
}

// EvaluatedDatapoint is one datapoint the decision used, newest first. A
// missing period filled in by the treatment has no Value.
type EvaluatedDatapoint struct {
	Timestamp   time.Time `json:"timestamp"`
	SampleCount float64   `json:"sampleCount,omitempty"`
	Value       *float64  `json:"value,omitempty"`
}

// EvaluationRange is how many periods an evaluation looks back over for an
// alarm of n evaluation periods: n + 2. CloudWatch retrieves "a higher
// number of data points than specified by Evaluation Periods" and does not
// publish the number; its documented examples retrieve 5 for 3.
func EvaluationRange(n int) int { return n + 2 }

// Window returns the evaluation range of d at now: the periods from start
// (inclusive) to end (exclusive). end is now rounded down to a multiple of
// the period since the Unix epoch: only complete periods are evaluated.
func Window(d Definition, now time.Time) (start, end time.Time) {
	end = alignDown(now, d.Period)
	start = end.Add(-time.Duration(EvaluationRange(d.EvaluationPeriods)) * d.Period)
	return start, end
}

func alignDown(t time.Time, p time.Duration) time.Time {
	if p <= 0 {
		return t
	}
	ns := t.UnixNano()
	r := ns % int64(p)
	if r < 0 {
		r += int64(p)
	}
	return time.Unix(0, ns-r).In(t.Location())
}

// slot is one period of the evaluation range.
type slot struct {
	start time.Time
	dp    *Datapoint // nil: missing
}

// Evaluate decides an alarm's state from the datapoints of its metric, its
// previous state and the time, as CloudWatch does. It is pure. d must be
// valid; its defaults are applied here.
//
// It looks at the evaluation range (EvaluationRange periods ending at the
// last complete period) and, as CloudWatch's "How alarm state is evaluated
// when data is missing" documents:
//
//  1. With at least N real datapoints in the range, the most recent N are
//     evaluated; treat-missing-data is not needed. ALARM if at least M
//     breach, else OK.
//  2. With none, the treatment decides: missing → INSUFFICIENT_DATA,
//     ignore → the state is kept, breaching → ALARM, notBreaching → OK.
//  3. With fewer than N, every real datapoint is evaluated, and the most
//     recent missing periods fill up to N ("uses missing data points only
//     as few times as possible"):
//     - breaching and notBreaching count the fills as breaching or not;
//     - missing and ignore do not count them: ALARM if at least M real
//     datapoints breach; else OK if any real datapoint does not breach;
//     else (every real datapoint breaches, fewer than M) the state cannot be
//     decided yet: INSUFFICIENT_DATA for missing, kept for ignore — except
//     that, for missing, ALARM when the oldest breaching datapoint is at
//     least M datapoints old among the N evaluated and every newer one is
//     missing ("Avoiding premature transitions to alarm state").
//
// Datapoints outside the range are ignored, a NaN value counts as missing,
// and of two datapoints for one period the later in the slice wins.
func Evaluate(d Definition, points []Datapoint, prev State, now time.Time) Evaluation {
	d = d.WithDefaults()
	n, m := d.EvaluationPeriods, d.DatapointsToAlarm
	r := EvaluationRange(n)
	start, end := Window(d, now)
	slots := make([]slot, r)
	for i := range slots {
		slots[i].start = start.Add(time.Duration(i) * d.Period)
	}
	for _, p := range points {
		ts := alignDown(p.Timestamp, d.Period)
		if ts.Before(start) || !ts.Before(end) || math.IsNaN(p.Value) {
			continue
		}
		p.Timestamp = ts
		slots[int(ts.Sub(start)/d.Period)].dp = &p
	}
	var real []int // indices of slots with data, oldest first
	for i, s := range slots {
		if s.dp != nil {
			real = append(real, i)
		}
	}

	ev := evaluation{d: d, slots: slots, prev: prev, now: now, m: m, n: n}
	switch {
	case len(real) >= n:
		ev.evaluated = real[len(real)-n:]
		return ev.count(0)
	case len(real) == 0:
		return ev.noData()
	}
	// Fewer real datapoints than N: all of them, plus the most recent
	// missing periods.
	fill := n - len(real)
	sel := slices.Clone(real)
	for i := r - 1; i >= 0 && fill > 0; i-- {
		if slots[i].dp == nil {
			sel = append(sel, i)
			ev.filled = append(ev.filled, i)
			fill--
		}
	}
	slices.Sort(sel)
	ev.evaluated = sel
	switch d.TreatMissingData {
	case Breaching:
		return ev.count(len(ev.filled))
	case NotBreaching:
		return ev.count(0)
	}
	breach, clean := ev.realCounts()
	switch {
	case breach >= m || clean > 0:
		return ev.count(0)
	case d.TreatMissingData == Missing && ev.prematureAge() >= m:
		return ev.premature()
	case d.TreatMissingData == Ignore:
		return ev.keep()
	}
	return ev.insufficient()
}

// evaluation carries one Evaluate call's working set.
type evaluation struct {
	d         Definition
	slots     []slot
	prev      State
	now       time.Time
	n, m      int
	evaluated []int // slot indices evaluated, oldest first
	filled    []int // of those, the missing ones filled by the treatment
}

func (e evaluation) breaches(i int) bool {
	return e.slots[i].dp != nil && e.d.Comparison.Breaches(e.slots[i].dp.Value, e.d.Threshold)
}

// realCounts counts the evaluated real datapoints that breach and that do not.
func (e evaluation) realCounts() (breach, clean int) {
	for _, i := range e.evaluated {
		switch {
		case e.slots[i].dp == nil:
		case e.breaches(i):
			breach++
		default:
			clean++
		}
	}
	return breach, clean
}

// prematureAge is how many datapoints old, among the evaluated ones, the
// oldest breaching real datapoint is (1 = the newest), or 0 when none
// breaches.
func (e evaluation) prematureAge() int {
	for k, i := range e.evaluated {
		if e.breaches(i) {
			return len(e.evaluated) - k
		}
	}
	return 0
}

// count decides by counting breaching datapoints, with filledBreaching of
// the filled periods counted as breaching.
func (e evaluation) count(filledBreaching int) Evaluation {
	breach, clean := e.realCounts()
	breach += filledBreaching
	clean += len(e.filled) - filledBreaching
	if breach >= e.m {
		return e.result(StateAlarm, fmt.Sprintf("Threshold Crossed: %d out of the last %d datapoints %s %s %s the threshold (%s)%s (minimum %d %s for %s -> ALARM transition).",
			breach, e.n, e.list(true), wasWere(breach), e.d.Comparison.words(), num(e.d.Threshold), e.fillNote(), e.m, plural(e.m, "datapoint"), e.prev))
	}
	need := e.n - e.m + 1
	return e.result(StateOK, fmt.Sprintf("Threshold Crossed: %d out of the last %d datapoints %s %s not %s the threshold (%s)%s (minimum %d %s for %s -> OK transition).",
		clean, e.n, e.list(false), wasWere(clean), e.d.Comparison.words(), num(e.d.Threshold), e.fillNote(), need, plural(need, "datapoint"), e.prev))
}

func (e evaluation) noData() Evaluation {
	r := len(e.slots)
	what := fmt.Sprintf("no datapoints were received for %d periods and %d missing datapoints were treated as [%s].", r, e.n, e.d.TreatMissingData.label())
	for i := r - e.n; i < r; i++ {
		e.evaluated = append(e.evaluated, i)
		e.filled = append(e.filled, i)
	}
	switch e.d.TreatMissingData {
	case Breaching:
		return e.result(StateAlarm, "Threshold Crossed: "+what)
	case NotBreaching:
		return e.result(StateOK, "Threshold Crossed: "+what)
	case Ignore:
		return e.keep()
	}
	return e.result(StateInsufficientData, "Insufficient Data: "+what)
}

func (e evaluation) premature() Evaluation {
	breach, _ := e.realCounts()
	age := e.prematureAge()
	return e.result(StateAlarm, fmt.Sprintf("Threshold Crossed: %d out of the last %d datapoints %s %s %s the threshold (%s) and the %d newer %s missing: the oldest breaching datapoint is %d datapoints old, at least the %d to alarm, so the alarm does not wait for more data (missing data treated as [Missing]).",
		breach, e.n, e.list(true), wasWere(breach), e.d.Comparison.words(), num(e.d.Threshold), age-1, plural(age-1, "datapoint")+" "+wasWere(age-1), age, e.m))
}

func (e evaluation) insufficient() Evaluation {
	breach, _ := e.realCounts()
	return e.result(StateInsufficientData, fmt.Sprintf("Insufficient Data: %d out of the last %d datapoints %s missing and the %d received %s %s %s the threshold (%s), fewer than the %d to alarm (missing data treated as [Missing]).",
		len(e.filled), e.n, wasWere(len(e.filled)), breach, e.list(true), wasWere(breach), e.d.Comparison.words(), num(e.d.Threshold), e.m))
}

// keep is the ignore treatment: the state does not change.
func (e evaluation) keep() Evaluation {
	ev := e.result(e.prev, fmt.Sprintf("Missing data ignored: %d out of the last %d datapoints were missing and the state %s was kept (missing data treated as [Ignore]).", len(e.filled), e.n, e.prev))
	ev.Changed = false
	return ev
}

func (e evaluation) fillNote() string {
	if len(e.filled) == 0 {
		return ""
	}
	return fmt.Sprintf(", with %d missing %s treated as [%s]", len(e.filled), plural(len(e.filled), "datapoint"), e.d.TreatMissingData.label())
}

// list formats the evaluated real datapoints that breach (or do not),
// newest first, as CloudWatch does: [5.0 (30/11/26 07:04:00), 4.0 (...)].
func (e evaluation) list(breaching bool) string {
	var parts []string
	for k := len(e.evaluated) - 1; k >= 0; k-- {
		i := e.evaluated[k]
		if e.slots[i].dp == nil || e.breaches(i) != breaching {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", num(e.slots[i].dp.Value), e.slots[i].start.UTC().Format("02/01/06 15:04:05")))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (e evaluation) result(s State, reason string) Evaluation {
	rd := ReasonData{
		Version:          "1.0",
		QueryDate:        e.now.UTC(),
		Period:           int(e.d.Period / time.Second),
		Threshold:        e.d.Threshold,
		TreatMissingData: e.d.TreatMissingData,
		MissingFilled:    len(e.filled),
		RecentDatapoints: []float64{},
	}
	if _, ok := e.d.Statistic.Percentile(); ok {
		rd.ExtendedStatistic = string(e.d.Statistic)
	} else {
		rd.Statistic = string(e.d.Statistic)
	}
	if len(e.evaluated) > 0 {
		rd.StartDate = e.slots[e.evaluated[0]].start.UTC()
	} else {
		rd.StartDate = e.slots[0].start.UTC()
	}
	for _, s := range e.slots {
		if s.dp != nil {
			rd.RecentDatapoints = append(rd.RecentDatapoints, s.dp.Value)
		}
	}
	rd.EvaluatedDatapoints = []EvaluatedDatapoint{}
	for k := len(e.evaluated) - 1; k >= 0; k-- {
		s := e.slots[e.evaluated[k]]
		ed := EvaluatedDatapoint{Timestamp: s.start.UTC()}
		if s.dp != nil {
			v := s.dp.Value
			ed.Value, ed.SampleCount = &v, s.dp.SampleCount
		}
		rd.EvaluatedDatapoints = append(rd.EvaluatedDatapoints, ed)
	}
	return Evaluation{State: s, Changed: s != e.prev, Reason: reason, ReasonData: rd}
}

// num formats a value as CloudWatch does: 1.0, 0.25, 1500.0.
func num(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eE") && !math.IsInf(v, 0) && !math.IsNaN(v) {
		s += ".0"
	}
	return s
}

func wasWere(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
