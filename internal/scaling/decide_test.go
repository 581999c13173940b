package scaling

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

var t0 = time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC) // a Monday

const period = 60 * time.Second

// series returns consecutive one-period datapoints ending at end, each from
// n instances.
func series(end time.Time, n int, values ...float64) []Datapoint {
	start := end.Add(-time.Duration(len(values)) * period)
	dps := make([]Datapoint, len(values))
	for i, v := range values {
		dps[i] = Datapoint{Start: start.Add(time.Duration(i) * period), Value: v, Instances: n}
	}
	return dps
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func cpuPolicy(target float64) Policy {
	return Policy{Name: "cpu", Metric: CPUUtilization, Target: target}
}

func capacity(min, max, desired int) State {
	return State{Capacity: Capacity{Min: min, Max: max, Desired: desired}, LastChange: t0.Add(-24 * time.Hour), ScheduledThrough: t0.Add(-time.Minute)}
}

func ip(i int) *int { return &i }

// TestAWSDocumentedExamples builds each case from an example or statement in
// AWS's documentation (docs/scaling.md cites each page).
func TestAWSDocumentedExamples(t *testing.T) {
	cfg := Config{Policies: []Policy{cpuPolicy(50)}}
	cases := []struct {
		name    string
		state   State
		obs     Observed
		want    int
		wantOut VerdictKind
	}{
		{
			// EC2 Auto Scaling target tracking: "two instances … keep CPU
			// utilization at around 50 percent"; at 100 % the load needs
			// twice the capacity, proportionally.
			name: "two instances at 100 % CPU against 50 % double to four", state: capacity(1, 10, 2),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 2, 100, 100, 100)}}, want: 4, wantOut: VerdictOut,
		},
		{
			name: "two instances at 75 % add one (ceil(2×75/50) = 3)", state: capacity(1, 10, 2),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 2, 75, 75, 75)}}, want: 3, wantOut: VerdictOut,
		},
		{
			// "more aggressive in adding capacity": the latest datapoint sets
			// the size, not an average of the run.
			name: "scale-out uses the latest datapoint", state: capacity(1, 10, 2),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 2, 60, 70, 150)}}, want: 6, wantOut: VerdictOut,
		},
		{
			name: "two of three datapoints high is not enough", state: capacity(1, 10, 2),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 2, 40, 90, 90)}}, want: 2, wantOut: VerdictHold,
		},
		{
			// Warmup: "instances that are warming up count as part of the
			// current capacity of the group" when deciding how many to add.
			name: "warming instances count toward capacity", state: capacity(1, 10, 4),
			obs: Observed{Warming: 2, Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 2, 60, 60, 60)}}, want: 5, wantOut: VerdictOut,
		},
		{
			// Warmup: scale out only if the non-warming instances' metric is
			// above the target; within the tolerance it holds.
			name: "warming: within tolerance of the target, hold", state: capacity(1, 10, 4),
			obs: Observed{Warming: 2, Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 2, 54, 54, 54)}}, want: 4, wantOut: VerdictHold,
		},
		{
			// Warmup: "This blocks … scale-in activities … until the new
			// instances finish warming up."
			name: "no scale-in while instances warm", state: capacity(1, 10, 6),
			obs: Observed{Warming: 1, Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 5, repeat(10, 15)...)}}, want: 6, wantOut: VerdictHold,
		},
		{
			// Application Auto Scaling: scale in only when the metric is
			// below a threshold "usually more than 10% lower" than the target.
			name: "46 % is within 10 % of 50: hold", state: capacity(1, 10, 6),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 6, repeat(46, 15)...)}}, want: 6, wantOut: VerdictHold,
		},
		{
			name: "44 % for 15 datapoints scales in to ceil(6×44/50) = 6: hold", state: capacity(1, 10, 6),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 6, repeat(44, 15)...)}}, want: 6, wantOut: VerdictHold,
		},
		{
			name: "20 % for 15 datapoints scales 10 in to ceil(10×20/50) = 4", state: capacity(1, 10, 10),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 10, repeat(20, 15)...)}}, want: 4, wantOut: VerdictIn,
		},
		{
			// Conservative scale-in: the highest value of the run decides.
			name: "scale-in sizes for the highest datapoint of the run", state: capacity(1, 10, 10),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 10, append(repeat(10, 14), 30)...)}}, want: 6, wantOut: VerdictIn,
		},
		{
			name: "14 low datapoints are not enough to scale in", state: capacity(1, 10, 10),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 10, repeat(10, 14)...)}}, want: 10, wantOut: VerdictHold,
		},
		{
			// ECS/Application Auto Scaling: "does not perform scaling when the
			// specified metric has insufficient data … does not interpret
			// insufficient data as low utilization."
			name: "no datapoints: no action", state: capacity(1, 10, 6),
			obs: Observed{}, want: 6, wantOut: VerdictNoData,
		},
		{
			name: "a stale series is no data", state: capacity(1, 10, 2),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0.Add(-10*time.Minute), 2, 100, 100, 100)}}, want: 2, wantOut: VerdictNoData,
		},
		{
			name: "a gap breaks the run: no data", state: capacity(1, 10, 2),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: append(series(t0.Add(-3*period), 2, 100), series(t0, 2, 100, 100)...)}}, want: 2, wantOut: VerdictNoData,
		},
		{
			name: "bounded by max", state: capacity(1, 5, 2),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 2, 400, 400, 400)}}, want: 5, wantOut: VerdictOut,
		},
		{
			name: "bounded by min", state: capacity(3, 10, 10),
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 10, repeat(1, 15)...)}}, want: 3, wantOut: VerdictIn,
		},
		{
			name: "scale-in counts only datapoints since the last change", state: State{Capacity: Capacity{Min: 1, Max: 10, Desired: 10}, LastChange: t0.Add(-5 * period)},
			obs: Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(t0, 10, repeat(10, 20)...)}}, want: 10, wantOut: VerdictHold,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := cfg.Decide(tc.state, tc.obs, t0)
			if d.Next.Desired != tc.want {
				t.Fatalf("desired = %d, want %d (reason: %s)", d.Next.Desired, tc.want, d.Reason)
			}
			if got := d.Verdicts[0].Kind; got != tc.wantOut {
				t.Fatalf("verdict = %s, want %s (%s)", got, tc.wantOut, d.Verdicts[0].Reason)
			}
			if changed := d.Next.Desired != tc.state.Desired; changed != (len(d.Activities) == 1) {
				t.Fatalf("changed=%v but %d activities", changed, len(d.Activities))
			}
		})
	}
}

// TestMultiplePolicies: "If any of the target tracking policies are ready for
// scale out, it will scale out … It scales in only if all of the target
// tracking policies (with the scale-in portion enabled) are ready to scale in."
func TestMultiplePolicies(t *testing.T) {
	cfg := Config{Policies: []Policy{
		cpuPolicy(50),
		{Name: "requests", Metric: RequestCountPerTarget, Target: 1000},
	}}
	low := series(t0, 10, repeat(10, 15)...)
	cases := []struct {
		name string
		cpu  []Datapoint
		req  []Datapoint
		want int
	}{
		{"one out, one in: out", series(t0, 10, repeat(80, 15)...), series(t0, 10, repeat(100, 15)...), 16},
		{"both out: the larger", series(t0, 10, repeat(80, 15)...), series(t0, 10, repeat(3000, 15)...), 30},
		{"one in, one hold: hold", low, series(t0, 10, repeat(1000, 15)...), 10},
		{"one in, one no data: hold", low, nil, 10},
		{"both in: the smaller reduction", low, series(t0, 10, repeat(500, 15)...), 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := capacity(1, 40, 10)
			d := cfg.Decide(st, Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: tc.cpu, RequestCountPerTarget: tc.req}}, t0)
			if d.Next.Desired != tc.want {
				t.Fatalf("desired = %d, want %d: %s", d.Next.Desired, tc.want, d.Reason)
			}
		})
	}
	t.Run("scale-in disabled on one policy blocks scale-in", func(t *testing.T) {
		c := cfg
		c.Policies = []Policy{cpuPolicy(50), {Name: "requests", Metric: RequestCountPerTarget, Target: 1000, DisableScaleIn: true}}
		d := c.Decide(capacity(1, 40, 10), Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: low, RequestCountPerTarget: series(t0, 10, repeat(100, 15)...)}}, t0)
		if d.Next.Desired != 10 {
			t.Fatalf("desired = %d, want 10", d.Next.Desired)
		}
	})
}

func TestActivityCauseText(t *testing.T) {
	cfg := Config{Policies: []Policy{cpuPolicy(50)}}
	now := time.Date(2026, 11, 30, 7, 3, 0, 0, time.UTC)
	d := cfg.Decide(capacity(1, 12, 2), Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(now, 2, 70, 75, 78.3)}}, now)
	if len(d.Activities) != 1 {
		t.Fatalf("activities = %+v", d.Activities)
	}
	want := "At 2026-11-30T07:03:00Z a target-tracking alarm on CPUUtilization 78.3 > 50 changed the desired capacity from 2 to 4."
	if got := d.Activities[0].Cause; got != want {
		t.Fatalf("cause:\n got %q\nwant %q", got, want)
	}
	a := d.Activities[0]
	if a.Kind != KindTargetTracking || a.Source != "cpu" || a.From != 2 || a.To != 4 {
		t.Fatalf("activity = %+v", a)
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"value":78.3`) || !strings.Contains(string(b), `"metric":"CPUUtilization"`) {
		t.Fatalf("json = %s", b)
	}

	d = cfg.Decide(capacity(1, 12, 10), Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(now, 10, repeat(20, 15)...)}}, now)
	want = "At 2026-11-30T07:03:00Z a target-tracking alarm on CPUUtilization 20 < 45 for 15 datapoints changed the desired capacity from 10 to 4."
	if got := d.Activities[0].Cause; got != want {
		t.Fatalf("cause:\n got %q\nwant %q", got, want)
	}

	d = cfg.Decide(capacity(1, 3, 2), Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(now, 2, 100, 100, 100)}}, now)
	if got := d.Activities[0].Cause; !strings.Contains(got, "from 2 to 3 (policy cpu asked for 4; the group's limits are min: 1, max: 3)") {
		t.Fatalf("capped cause = %q", got)
	}
}

func mustCron(t *testing.T, spec string) Schedule {
	t.Helper()
	s, err := cron.ParseStandard(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestScheduledActions(t *testing.T) {
	// 07:00 on weekdays in Dublin: 07:00 UTC in winter, 06:00 UTC in summer.
	prescale := ScheduledAction{Name: "exam-prescale", Schedule: mustCron(t, "CRON_TZ=Europe/Dublin 0 7 * * 1-5"), Min: ip(6)}
	evening := ScheduledAction{Name: "evening", Schedule: mustCron(t, "CRON_TZ=Europe/Dublin 0 19 * * *"), Min: ip(2)}
	cfg := Config{Policies: []Policy{cpuPolicy(50)}, Scheduled: []ScheduledAction{prescale, evening}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	winter := time.Date(2026, 11, 30, 6, 59, 0, 0, time.UTC)

	st := State{Capacity: Capacity{Min: 2, Max: 12, Desired: 2}, ScheduledThrough: winter}
	d := cfg.Decide(st, Observed{}, winter.Add(30*time.Second))
	if d.Next.Capacity != st.Capacity || len(d.Runs) != 0 {
		t.Fatalf("ran early: %+v", d)
	}
	st = d.Next
	now := time.Date(2026, 11, 30, 7, 0, 5, 0, time.UTC)
	d = cfg.Decide(st, Observed{}, now)
	if want := (Capacity{Min: 6, Max: 12, Desired: 6}); d.Next.Capacity != want {
		t.Fatalf("after the pre-scale: %+v, want %+v (%s)", d.Next.Capacity, want, d.Reason)
	}
	if len(d.Runs) != 1 || d.Runs[0].Action != "exam-prescale" || !d.Runs[0].At.Equal(time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)) {
		t.Fatalf("runs = %+v", d.Runs)
	}
	wantCause := "At 2026-11-30T07:00:00Z a scheduled action exam-prescale update of the group's constraints to min: 6 changing the desired capacity from 2 to 6."
	if len(d.Activities) != 1 || d.Activities[0].Cause != wantCause {
		t.Fatalf("activities = %+v", d.Activities)
	}
	if !d.Next.ScheduledThrough.Equal(now) {
		t.Fatalf("scheduled through %v", d.Next.ScheduledThrough)
	}

	// Target tracking never goes below the scheduled min, however idle.
	st = d.Next
	st.LastChange = now.Add(-time.Hour)
	idle := series(now.Add(20*time.Minute), 6, repeat(1, 20)...)
	d = cfg.Decide(st, Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: idle}}, now.Add(20*time.Minute))
	if d.Next.Desired != 6 || d.Verdicts[0].Kind != VerdictIn {
		t.Fatalf("idle at a scheduled min of 6: desired %d, verdict %s", d.Next.Desired, d.Verdicts[0].Kind)
	}

	// The evening action lowers min; the next idle decision scales in.
	st = d.Next
	evening19 := time.Date(2026, 11, 30, 19, 0, 1, 0, time.UTC)
	d = cfg.Decide(st, Observed{}, evening19)
	if d.Next.Min != 2 || d.Next.Desired != 6 {
		t.Fatalf("evening: %+v", d.Next.Capacity)
	}
	d = cfg.Decide(d.Next, Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(evening19, 6, repeat(1, 15)...)}}, evening19)
	if d.Next.Desired != 2 {
		t.Fatalf("idle evening: desired %d (%s)", d.Next.Desired, d.Reason)
	}

	// Summer time: the same cron runs at 06:00 UTC.
	summer := time.Date(2026, 6, 1, 5, 59, 0, 0, time.UTC) // a Monday
	runs := cfg.NextRuns(summer, 1)
	if len(runs) != 2 || runs[0].Action != "exam-prescale" || !runs[0].At.Equal(time.Date(2026, 6, 1, 6, 0, 0, 0, time.UTC)) {
		t.Fatalf("next runs in summer = %+v", runs)
	}
}

func TestScheduledStartEndAndMissedRuns(t *testing.T) {
	examWeekStart := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	examWeekEnd := time.Date(2026, 12, 12, 0, 0, 0, 0, time.UTC)
	a := ScheduledAction{Name: "exam-week", Schedule: mustCron(t, "0 7 * * *"), Start: examWeekStart, End: examWeekEnd, Desired: ip(8)}
	cfg := Config{Scheduled: []ScheduledAction{a}}

	// Before the start date nothing runs, though the cron matched.
	st := State{Capacity: Capacity{Min: 2, Max: 12, Desired: 2}, ScheduledThrough: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)}
	d := cfg.Decide(st, Observed{}, time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC))
	if len(d.Runs) != 0 || d.Next.Desired != 2 {
		t.Fatalf("ran before start: %+v", d.Runs)
	}
	// Within the dates it runs; days missed collapse into the latest run.
	d = cfg.Decide(d.Next, Observed{}, time.Date(2026, 12, 11, 8, 0, 0, 0, time.UTC))
	if len(d.Runs) != 1 || !d.Runs[0].At.Equal(time.Date(2026, 12, 11, 7, 0, 0, 0, time.UTC)) || d.Next.Desired != 8 {
		t.Fatalf("runs = %+v, desired %d", d.Runs, d.Next.Desired)
	}
	// After the end date it no longer runs.
	st = d.Next
	st.Desired = 3
	d = cfg.Decide(st, Observed{}, time.Date(2026, 12, 14, 8, 0, 0, 0, time.UTC))
	if len(d.Runs) != 0 || d.Next.Desired != 3 {
		t.Fatalf("ran after end: %+v", d.Runs)
	}
	runs := cfg.NextRuns(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), 10)
	if len(runs) != 5 || !runs[0].At.Equal(time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)) || !runs[4].At.Equal(time.Date(2026, 12, 11, 7, 0, 0, 0, time.UTC)) {
		t.Fatalf("next runs = %+v", runs)
	}

	// A zero ScheduledThrough never runs actions retroactively.
	d = cfg.Decide(State{Capacity: Capacity{Min: 2, Max: 12, Desired: 2}}, Observed{}, time.Date(2026, 12, 9, 8, 0, 0, 0, time.UTC))
	if len(d.Runs) != 0 {
		t.Fatalf("ran retroactively: %+v", d.Runs)
	}
}

func TestScheduledSetsLimitsAsAWSDoes(t *testing.T) {
	// Application Auto Scaling: below the new minimum it scales out to it;
	// above the new maximum it scales in to it.
	every := mustCron(t, "* * * * *")
	st := State{Capacity: Capacity{Min: 2, Max: 12, Desired: 5}, ScheduledThrough: t0.Add(-30 * time.Second)}
	for _, tc := range []struct {
		a    ScheduledAction
		want Capacity
		fail bool
	}{
		{ScheduledAction{Name: "max3", Schedule: every, Max: ip(3)}, Capacity{2, 3, 3}, false},
		{ScheduledAction{Name: "min8", Schedule: every, Min: ip(8)}, Capacity{8, 12, 8}, false},
		{ScheduledAction{Name: "desired20", Schedule: every, Desired: ip(20)}, Capacity{2, 12, 12}, false},
		{ScheduledAction{Name: "min20", Schedule: every, Min: ip(20)}, Capacity{2, 12, 5}, true},
	} {
		d := Config{Scheduled: []ScheduledAction{tc.a}}.Decide(st, Observed{}, t0)
		if d.Next.Capacity != tc.want || (d.Runs[0].Failed != "") != tc.fail {
			t.Errorf("%s: %+v failed=%q, want %+v fail=%v", tc.a.Name, d.Next.Capacity, d.Runs[0].Failed, tc.want, tc.fail)
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Policies: []Policy{{Name: "c", Metric: CPUUtilization, Target: 0}}}, "policies[0].target"},
		{Config{Policies: []Policy{{Name: "c", Metric: CPUUtilization, Target: 101}}}, "policies[0].target"},
		{Config{Policies: []Policy{{Name: "c", Metric: CPUUtilization, Target: math.NaN()}}}, "policies[0].target"},
		{Config{Policies: []Policy{{Name: "c", Metric: "Memory", Target: 5}}}, "policies[0].metric"},
		{Config{Policies: []Policy{cpuPolicy(50), cpuPolicy(60)}}, "policies[1].name"},
		{Config{Scheduled: []ScheduledAction{{Name: "x", Schedule: mustCron(t, "0 7 * * *"), Min: ip(5), Max: ip(3)}}}, "scheduled[0].max"},
		{Config{Scheduled: []ScheduledAction{{Name: "x", Schedule: mustCron(t, "0 7 * * *")}}}, "scheduled[0]: must set"},
		{Config{Scheduled: []ScheduledAction{{Name: "x", Min: ip(1)}}}, "scheduled[0].schedule"},
		{Config{Scheduled: []ScheduledAction{{Name: "x", Schedule: mustCron(t, "0 7 * * *"), Min: ip(1), Start: t0, End: t0}}}, "scheduled[0].end"},
		{Config{Tolerance: math.NaN()}, "tolerance"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error naming %q", err, tc.want)
		}
	}
	if err := (Config{Policies: []Policy{cpuPolicy(50), {Name: "r", Metric: RequestCountPerTarget, Target: 1000}}}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDecisionJSONWithNoData(t *testing.T) {
	d := Config{Policies: []Policy{cpuPolicy(50)}}.Decide(capacity(1, 4, 2), Observed{}, t0)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatalf("marshal a no-data decision: %v", err)
	}
	if !strings.Contains(string(b), `"value":null`) || !strings.Contains(string(b), `"kind":"no-data"`) {
		t.Fatalf("json = %s", b)
	}
}
