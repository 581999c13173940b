package scaling

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Capacity is the group's size limits and the size it tries to keep.
type Capacity struct {
	Min     int `json:"min"`
	Max     int `json:"max"`
	Desired int `json:"desired"`
}

func (c Capacity) String() string {
	return fmt.Sprintf("min: %d, max: %d, desired: %d", c.Min, c.Max, c.Desired)
}

// State is what the scaler remembers between decisions.
type State struct {
	Capacity
	// LastChange is when the desired capacity last changed (zero: never).
	// Scale-in counts only datapoints that started at or after it.
	LastChange time.Time `json:"last_change"`
	// ScheduledThrough is the time up to which scheduled actions have run:
	// runs at or before it are done. Zero means "now": a new scaler never
	// runs actions retroactively, as AWS does not.
	ScheduledThrough time.Time `json:"scheduled_through"`
}

// Datapoint is one period's aggregated value of a metric.
type Datapoint struct {
	// Start is the beginning of the period.
	Start time.Time `json:"start"`
	// Value is the aggregate (average CPU %, or requests per target per
	// minute); NaN when there is no data (JSON: null).
	Value float64 `json:"-"`
	// Instances is how many instances contributed; 0 means no data.
	Instances int `json:"instances"`
	// Serving is the time-weighted mean number of instances in service
	// (warming ones included) while the period was measured: the capacity
	// the value was measured at. 0 means unknown; the current desired
	// capacity is used instead.
	Serving float64 `json:"serving,omitempty"`
}

// Observed is what the scaler sees at decision time.
type Observed struct {
	// Datapoints holds each metric's recent datapoints, oldest first, one
	// per Config.Period, from in-service instances past warmup only.
	Datapoints map[Metric][]Datapoint
	// Warming is the number of instances that count toward capacity but not
	// yet toward the metrics: pending, or in service for less than the
	// warmup. While any is warming, no policy scales in.
	Warming int
}

// VerdictKind is what one policy asks for.
type VerdictKind string

// The verdicts a policy can reach.
const (
	// VerdictOut: the metric is above the target; add capacity.
	VerdictOut VerdictKind = "out"
	// VerdictIn: the metric has stayed below the target; remove capacity.
	VerdictIn VerdictKind = "in"
	// VerdictHold: near the target, or not sure enough to scale in.
	VerdictHold VerdictKind = "hold"
	// VerdictNoData: too few recent datapoints; no action.
	VerdictNoData VerdictKind = "no-data"
)

// Verdict is one policy's answer in a decision.
type Verdict struct {
	Policy string      `json:"policy"`
	Metric Metric      `json:"metric"`
	Kind   VerdictKind `json:"kind"`
	// Desired is the capacity the policy asks for (the current capacity
	// for hold and no-data).
	Desired int `json:"desired"`
	// Value is the metric value the verdict rests on (the latest datapoint
	// for out, the highest of the run for in), NaN when there is none
	// (JSON: null).
	Value float64 `json:"-"`
	// Reason says why, in a sentence fragment.
	Reason string `json:"reason"`
}

// ScheduledRun is one run of a scheduled action within a decision.
type ScheduledRun struct {
	Action string    `json:"action"`
	At     time.Time `json:"at"`
	// Before and After are the group's capacity around the run.
	Before Capacity `json:"before"`
	After  Capacity `json:"after"`
	// Failed says why the run was refused (the group is left unchanged).
	Failed string `json:"failed,omitempty"`
}

// Decision is the result of Decide.
type Decision struct {
	// Next is the state to carry out and remember.
	Next State `json:"next"`
	// Reason summarises the decision in one line.
	Reason string `json:"reason"`
	// Activities lists each change of desired capacity with its cause, in
	// order (scheduled actions first, then target tracking).
	Activities []Activity `json:"activities,omitempty"`
	// Runs lists the scheduled actions that ran.
	Runs []ScheduledRun `json:"runs,omitempty"`
	// Verdicts holds each target tracking policy's answer.
	Verdicts []Verdict `json:"verdicts,omitempty"`
}

// MarshalJSON writes Value as a number, or null when it is NaN.
func (dp Datapoint) MarshalJSON() ([]byte, error) {
	type plain Datapoint
	return json.Marshal(struct {
		plain
		Value *float64 `json:"value"`
	}{plain(dp), finite(dp.Value)})
}

// MarshalJSON writes Value as a number, or null when it is NaN.
func (v Verdict) MarshalJSON() ([]byte, error) {
	type plain Verdict
	return json.Marshal(struct {
		plain
		Value *float64 `json:"value"`
	}{plain(v), finite(v.Value)})
}

// finite returns &f, or nil when f is NaN or infinite.
func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

// Changed reports whether the decision changes the group's capacity.
func (d Decision) Changed(prev State) bool { return d.Next.Capacity != prev.Capacity }

// Decide is the scaling policy: a pure function from the remembered state,
// what is observed and the time to the next state. In order:
//
//  1. Scheduled actions due in (ScheduledThrough, now] run in time order and
//     set min, max or desired; the desired capacity is then moved into the
//     new [min, max], as AWS does when a scheduled action changes the limits.
//  2. Each target tracking policy reaches a verdict from its metric:
//     - no data (fewer than ScaleOutDatapoints consecutive recent
//     datapoints): no action;
//     - out, when the last ScaleOutDatapoints datapoints are all above
//     Target×(1+Tolerance): desired = ceil(capacity × latest / Target),
//     if that exceeds the desired capacity, which counts warming and pending
//     instances (they count toward capacity, their metrics do not). The
//     capacity is the one the latest datapoint was measured at
//     (Datapoint.Serving), or the desired capacity when unknown;
//     - in, when no instance is warming and the last ScaleInDatapoints
//     datapoints, all taken since the last capacity change, are all below
//     Target×(1−Tolerance): desired = ceil(capacity × value / Target) for
//     the datapoint of the run that shows the most load, so scale-in is
//     gentler than scale-out;
//     - hold otherwise.
//  3. The group scales out if any policy says out (to the largest such
//     request) and scales in only if every policy says in (to the largest,
//     i.e. the smallest reduction). Both are the maximum of the requests,
//     with hold and no-data counting as the current capacity, so the result
//     is monotone in every metric value.
//  4. The result is bounded by [min, max]: capacity rounds up when added and
//     never drops below a scheduled min.
func (c Config) Decide(s State, o Observed, now time.Time) Decision {
	c = c.withDefaults()
	d := Decision{Next: s}
	if d.Next.ScheduledThrough.IsZero() || d.Next.ScheduledThrough.After(now) {
		d.Next.ScheduledThrough = now
	} else {
		c.runScheduled(&d, now)
	}

	// Bounds first: a state outside its limits (set by hand, or a new spec)
	// is brought inside them before any policy looks at it.
	if b := clamp(d.Next.Desired, d.Next.Min, d.Next.Max); b != d.Next.Desired {
		d.Activities = append(d.Activities, Activity{
			At: now, Kind: KindBounds, From: d.Next.Desired, To: b,
			Cause: fmt.Sprintf("At %s the desired capacity %d was outside the group's limits (min: %d, max: %d), changing the desired capacity from %d to %d.",
				stamp(now), d.Next.Desired, d.Next.Min, d.Next.Max, d.Next.Desired, b),
		})
		d.Next.Desired = b
		d.Next.LastChange = now
	}

	current := d.Next.Desired
	want := current
	var lead *Verdict
	for _, p := range c.Policies {
		v := c.verdict(p, d.Next, o, now)
		d.Verdicts = append(d.Verdicts, v)
	}
	for i := range d.Verdicts {
		if v := &d.Verdicts[i]; v.Kind == VerdictOut && v.Desired > want {
			want, lead = v.Desired, v // any policy may scale out: the largest request wins
		}
	}
	if lead == nil && allIn(d.Verdicts) {
		// Scale in only when every policy agrees, to the largest request.
		lead = &d.Verdicts[0]
		for i := range d.Verdicts {
			if d.Verdicts[i].Desired > lead.Desired {
				lead = &d.Verdicts[i]
			}
		}
		want = lead.Desired
	}
	bounded := clamp(want, d.Next.Min, d.Next.Max)
	if bounded != current && lead != nil {
		cause := fmt.Sprintf("At %s a target-tracking alarm on %s %s %s changed the desired capacity from %d to %d.",
			stamp(now), lead.Metric, num(lead.Value), c.comparison(*lead), current, bounded)
		if bounded != want {
			cause = strings.TrimSuffix(cause, ".") + fmt.Sprintf(" (policy %s asked for %d; the group's limits are min: %d, max: %d).", lead.Policy, want, d.Next.Min, d.Next.Max)
		}
		d.Activities = append(d.Activities, Activity{
			At: now, Kind: KindTargetTracking, Source: lead.Policy, Metric: lead.Metric, Value: lead.Value,
			From: current, To: bounded, Cause: cause,
		})
		d.Next.Desired = bounded
		d.Next.LastChange = now
	}
	d.Reason = c.reason(d, s)
	return d
}

// verdict is one policy's answer on state s (after scheduled actions).
func (c Config) verdict(p Policy, s State, o Observed, now time.Time) Verdict {
	v := Verdict{Policy: p.Name, Metric: p.Metric, Kind: VerdictHold, Desired: s.Desired, Value: math.NaN()}
	run := c.recent(o.Datapoints[p.Metric], now)
	if len(run) < c.ScaleOutDatapoints {
		v.Kind = VerdictNoData
		v.Reason = fmt.Sprintf("%d of %d recent datapoints", len(run), c.ScaleOutDatapoints)
		return v
	}
	hi, lo := p.Target*(1+c.Tolerance), p.Target*(1-c.Tolerance)
	latest := run[len(run)-1].Value
	v.Value = latest

	out := run[len(run)-c.ScaleOutDatapoints:]
	if every(out, func(x float64) bool { return x > hi }) {
		w := need(demand(run[len(run)-1], s), p.Target)
		if w > s.Desired {
			v.Kind, v.Desired = VerdictOut, w
			v.Reason = fmt.Sprintf("%d datapoints above %s, latest %s", len(out), num(hi), num(latest))
			return v
		}
		v.Reason = fmt.Sprintf("above %s, but the %d instances already placed (%d warming) cover it", num(hi), s.Desired, o.Warming)
		return v
	}
	if p.DisableScaleIn {
		v.Reason = "scale-in disabled"
		return v
	}
	if o.Warming > 0 {
		v.Reason = fmt.Sprintf("scale-in waits for %d warming instance(s)", o.Warming)
		return v
	}
	var since []Datapoint
	for _, dp := range run {
		if !dp.Start.Before(s.LastChange) {
			since = append(since, dp)
		}
	}
	if len(since) < c.ScaleInDatapoints {
		v.Reason = fmt.Sprintf("%d of %d datapoints since the last change", len(since), c.ScaleInDatapoints)
		return v
	}
	in := since[len(since)-c.ScaleInDatapoints:]
	if !every(in, func(x float64) bool { return x < lo }) {
		v.Reason = fmt.Sprintf("within %s of the target %s", pct(c.Tolerance), num(p.Target))
		return v
	}
	highest, peak := in[0].Value, 0.0
	for _, dp := range in {
		highest = math.Max(highest, dp.Value)
		peak = math.Max(peak, demand(dp, s))
	}
	v.Value = highest
	if w := need(peak, p.Target); w < s.Desired {
		v.Kind, v.Desired = VerdictIn, w
		v.Reason = fmt.Sprintf("%d datapoints below %s, highest %s", len(in), num(lo), num(highest))
		return v
	}
	v.Reason = fmt.Sprintf("removing an instance would push %s above the target", p.Metric)
	return v
}

// recent returns the trailing run of consecutive datapoints that have data,
// ending with a period that closed within the last two periods (one period
// of lag is allowed for the last samples to arrive). Anything else is "no
// data": a gap, a stale series or an empty period breaks the run.
func (c Config) recent(dps []Datapoint, now time.Time) []Datapoint {
	end := len(dps)
	for end > 0 && dps[end-1].Start.Add(c.Period).After(now) {
		end-- // the period is still open
	}
	if end == 0 {
		return nil
	}
	last := dps[end-1]
	if last.Instances == 0 || now.Sub(last.Start.Add(c.Period)) >= 2*c.Period {
		return nil
	}
	start := end - 1
	for start > 0 {
		prev := dps[start-1]
		if prev.Instances == 0 || !prev.Start.Add(c.Period).Equal(dps[start].Start) || math.IsNaN(prev.Value) {
			break
		}
		start--
	}
	if math.IsNaN(last.Value) {
		return nil
	}
	return dps[start:end]
}

// runScheduled runs the scheduled actions due in (ScheduledThrough, now].
// Each action is idempotent (it sets values), so when several of its runs
// were missed only the latest one runs.
func (c Config) runScheduled(d *Decision, now time.Time) {
	type due struct {
		at time.Time
		i  int
	}
	var dues []due
	from := d.Next.ScheduledThrough
	for i, a := range c.Scheduled {
		if a.Schedule == nil {
			continue
		}
		t := from
		if !a.Start.IsZero() && a.Start.Add(-time.Nanosecond).After(t) {
			t = a.Start.Add(-time.Nanosecond)
		}
		var last time.Time
		for n := 0; n < maxScheduleSteps; n++ {
			next := a.Schedule.Next(t)
			if next.IsZero() || next.After(now) || (!a.End.IsZero() && next.After(a.End)) || !next.After(t) {
				break
			}
			last, t = next, next
		}
		if !last.IsZero() {
			dues = append(dues, due{last, i})
		}
	}
	sort.SliceStable(dues, func(x, y int) bool { return dues[x].at.Before(dues[y].at) })
	for _, du := range dues {
		a := c.Scheduled[du.i]
		before := d.Next.Capacity
		after := before
		if a.Min != nil {
			after.Min = *a.Min
		}
		if a.Max != nil {
			after.Max = *a.Max
		}
		if a.Desired != nil {
			after.Desired = *a.Desired
		}
		run := ScheduledRun{Action: a.Name, At: du.at, Before: before}
		if after.Min > after.Max {
			run.After = before
			run.Failed = fmt.Sprintf("it would set min %d above max %d", after.Min, after.Max)
			d.Runs = append(d.Runs, run)
			continue
		}
		after.Desired = clamp(after.Desired, after.Min, after.Max)
		run.After = after
		d.Runs = append(d.Runs, run)
		d.Next.Capacity = after
		if after.Desired != before.Desired {
			d.Next.LastChange = now
			d.Activities = append(d.Activities, Activity{
				At: now, Kind: KindScheduled, Source: a.Name, From: before.Desired, To: after.Desired, Value: math.NaN(),
				Cause: fmt.Sprintf("At %s a scheduled action %s update of the group's constraints to %s changing the desired capacity from %d to %d.",
					stamp(du.at), a.Name, constraints(a), before.Desired, after.Desired),
			})
		}
	}
	d.Next.ScheduledThrough = now
}

func constraints(a ScheduledAction) string {
	var parts []string
	if a.Min != nil {
		parts = append(parts, fmt.Sprintf("min: %d", *a.Min))
	}
	if a.Max != nil {
		parts = append(parts, fmt.Sprintf("max: %d", *a.Max))
	}
	if a.Desired != nil {
		parts = append(parts, fmt.Sprintf("desired: %d", *a.Desired))
	}
	return strings.Join(parts, ", ")
}

func (c Config) comparison(v Verdict) string {
	for _, p := range c.Policies {
		if p.Name != v.Policy {
			continue
		}
		if v.Kind == VerdictIn {
			return fmt.Sprintf("< %s for %d datapoints", num(p.Target*(1-c.Tolerance)), c.ScaleInDatapoints)
		}
		return "> " + num(p.Target)
	}
	return ""
}

func (c Config) reason(d Decision, prev State) string {
	var parts []string
	for _, r := range d.Runs {
		if r.Failed != "" {
			parts = append(parts, fmt.Sprintf("scheduled action %s refused: %s", r.Action, r.Failed))
		} else {
			parts = append(parts, fmt.Sprintf("scheduled action %s set %s", r.Action, r.After))
		}
	}
	for _, a := range d.Activities {
		if a.Kind == KindTargetTracking {
			parts = append(parts, fmt.Sprintf("policy %s: %d → %d", a.Source, a.From, a.To))
		}
	}
	if len(parts) == 0 {
		var vs []string
		for _, v := range d.Verdicts {
			vs = append(vs, fmt.Sprintf("%s %s (%s)", v.Policy, v.Kind, v.Reason))
		}
		if len(vs) == 0 {
			return fmt.Sprintf("no change: desired %d, no target tracking policy", d.Next.Desired)
		}
		return fmt.Sprintf("no change: desired %d; %s", d.Next.Desired, strings.Join(vs, "; "))
	}
	if d.Next.Desired == prev.Desired {
		parts = append(parts, fmt.Sprintf("desired stays %d", d.Next.Desired))
	}
	return strings.Join(parts, "; ")
}

func allIn(vs []Verdict) bool {
	for _, v := range vs {
		if v.Kind != VerdictIn {
			return false
		}
	}
	return len(vs) > 0
}

func every(dps []Datapoint, f func(float64) bool) bool {
	for _, dp := range dps {
		if !f(dp.Value) {
			return false
		}
	}
	return true
}

// demand is the load a datapoint shows, in metric units × instances: its
// value times the capacity it was measured at (the instances serving during
// the period, or the current desired capacity when unknown).
func demand(dp Datapoint, s State) float64 {
	basis := dp.Serving
	if !(basis > 0) {
		basis = float64(s.Desired)
	}
	return dp.Value * basis
}

// need is ceil(demand / target): the capacity that brings the metric back to
// the target if load spreads evenly. A tiny epsilon keeps float noise
// (2×75/50 = 3.0000000000000004) from adding an instance.
func need(demand, target float64) int {
	x := demand / target
	if math.IsNaN(x) || x < 0 {
		return 0
	}
	if x > 1e6 {
		return 1_000_000
	}
	return int(math.Ceil(x - 1e-9))
}

func clamp(v, lo, hi int) int {
	if v < lo {
		v = lo
	}
	if v > hi {
		v = hi
	}
	return v
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func num(f float64) string {
	if math.IsNaN(f) {
		return "n/a"
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", f), "0"), ".")
}

func pct(f float64) string { return num(f*100) + " %" }
