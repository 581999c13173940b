package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/testkit"
)

// TestScalingOutAndIn brings up a small region whose fleet tracks CPU at 50
// % with time_scale 60 (a 1 s metric period, 15 s to scale in), drives
// logged-in load with `haven load`, and sees the fleet scale out under it and
// back in after it, each change recorded with its cause in `haven fleet
// activity` and `haven events`; then a one-time scheduled action put through
// the API raises min and shows in `haven fleet schedule` before it runs; a
// target applied with `haven apply` reaches the running scaler. It
// asserts counts and states, never how long anything took.
func TestScalingOutAndIn(t *testing.T) {
	ctx := testCtx(t, 8*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{
		Min: 1, Desired: 1, Max: 3, CPU: 0.05, HealthCheckType: "ec2",
		Scaling:   "[{target_tracking: cpu, target: 50, warmup: 60s}]",
		TimeScale: 60,
		// A login is a bcrypt check, over a second of wall time on a
		// 0.05-CPU instance: checks that wait that long keep the instance
		// routable while its users log in.
		HealthCheck: "{path: /healthz, interval: 1s, timeout: 900ms, healthy: 2, unhealthy: 5}",
	})
	r.Up(ctx)

	// Scaling is acted on: no "not acted on" warning, and the scaler runs
	// with the scaled period and warmup.
	st := r.StatusJSON(ctx)
	for _, w := range st.Warnings {
		if strings.Contains(w, "not acted on") {
			t.Errorf("warning %q: scaling must be acted on", w)
		}
	}
	var sc api.ScalingStatus
	haveJSON(ctx, t, r, &sc, "fleet", "scaling", "--json")
	if sc.PeriodMS != 1000 || sc.WarmupMS != 1000 || sc.TimeScale != 60 || len(sc.Policies) != 1 || !sc.CPUAccounting {
		t.Fatalf("scaler = %+v, want a 1 s period and warmup (60 s / 60), one CPU policy, CPU accounting", sc)
	}

	// Load well above one 0.05-CPU instance: the fleet scales out.
	var res load.Result
	haveJSON(ctx, t, r, &res, "load", "--rate", "60", "--duration", "25s", "--users", "5", "--json")
	if res.Summary.Requests != 60*25 {
		t.Errorf("haven load made %d requests, want %d", res.Summary.Requests, 60*25)
	}
	peak := 0
	for _, s := range res.Timeline {
		if s.InService != nil {
			peak = max(peak, *s.InService)
		}
	}
	if peak < 2 {
		t.Fatalf("the timeline never shows more than %d instance(s) in service under load", peak)
	}
	if n := countCPU(res.Timeline); n == 0 {
		t.Error("the timeline has no average CPU")
	}

	// After the load the fleet scales back in to min.
	acts := waitActivities(ctx, t, r, func(as []api.ScalingActivity) bool {
		return len(as) > 0 && as[len(as)-1].To == 1 && as[len(as)-1].To < as[len(as)-1].From
	})
	outs, ins := 0, 0
	for _, a := range acts {
		if a.Kind != "target-tracking" || !strings.Contains(a.Cause, "target-tracking alarm on CPUUtilization") ||
			!strings.Contains(a.Cause, "changed the desired capacity from") || a.Source != "cpu-50" {
			t.Errorf("activity without its cause: %+v", a)
		}
		if a.To > a.From {
			outs++
		} else {
			ins++
		}
	}
	if outs == 0 || ins == 0 {
		t.Fatalf("activities = %+v, want scale-outs and scale-ins", acts)
	}
	evs, err := r.Client.Events(ctx, api.EventQuery{Component: "scaling"})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range evs {
		kinds[e.Kind]++
	}
	if kinds["scale-out"] != outs || kinds["scale-in"] != ins {
		t.Errorf("scaling events %v, want %d scale-out and %d scale-in (one per activity)", kinds, outs, ins)
	}

	// A one-time scheduled action raises min; the schedule lists it until
	// it runs, then the activity log has it.
	two := 2
	at := time.Now().Add(4 * time.Second)
	if err := r.Client.PutScheduledAction(ctx, "test-prescale", api.ScheduledActionRequest{StartTime: at, Min: &two}); err != nil {
		t.Fatal(err)
	}
	var sched api.FleetSchedule
	haveJSON(ctx, t, r, &sched, "fleet", "schedule", "--json")
	if len(sched.Runs) != 1 || sched.Runs[0].Action != "test-prescale" || sched.Runs[0].Min == nil || *sched.Runs[0].Min != 2 {
		t.Fatalf("schedule = %+v, want test-prescale setting min 2", sched)
	}
	acts = waitActivities(ctx, t, r, func(as []api.ScalingActivity) bool {
		return len(as) > 0 && as[len(as)-1].Kind == "scheduled"
	})
	if last := acts[len(acts)-1]; last.Source != "test-prescale" || last.From != 1 || last.To != 2 || !strings.Contains(last.Cause, "scheduled action test-prescale") {
		t.Errorf("scheduled activity = %+v", last)
	}
	if err := r.Client.DeleteScheduledAction(ctx, "test-prescale"); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.PutScheduledAction(ctx, "bad name!", api.ScheduledActionRequest{StartTime: at, Min: &two}); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("a bad action name: err = %v, want one naming the name", err)
	}
	out, _, err := r.Haven(ctx, "fleet", "activity")
	if err != nil || !strings.Contains(out, "scheduled action test-prescale") {
		t.Errorf("haven fleet activity: %v\n%s", err, out)
	}

	// A new target applied to the running region reaches the scaler, and
	// the activity history stays.
	edit(t, r.SpecFile, "target: 50,", "target: 70,")
	if _, errOut, err := r.Haven(ctx, "apply", "--auto-approve"); err != nil {
		t.Fatalf("haven apply: %v\n%s", err, errOut)
	}
	haveJSON(ctx, t, r, &sc, "fleet", "scaling", "--json")
	if len(sc.Policies) != 1 || sc.Policies[0].Target != 70 {
		t.Errorf("after apply the scaler's policies are %+v, want one at target 70", sc.Policies)
	}
	var after []api.ScalingActivity
	haveJSON(ctx, t, r, &after, "fleet", "activity", "--json")
	if len(after) < len(acts) {
		t.Errorf("after apply %d activities, want the %d before kept", len(after), len(acts))
	}
}

// haveJSON runs a haven command and decodes its JSON output into v.
func haveJSON(ctx context.Context, t *testing.T, r *testkit.Region, v any, args ...string) {
	t.Helper()
	out, errOut, err := r.Haven(ctx, args...)
	if err != nil {
		t.Fatalf("haven %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("haven %s: decode: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// waitActivities polls `haven fleet activity --json` until done says so.
func waitActivities(ctx context.Context, t *testing.T, r *testkit.Region, done func([]api.ScalingActivity) bool) []api.ScalingActivity {
	t.Helper()
	for {
		var acts []api.ScalingActivity
		haveJSON(ctx, t, r, &acts, "fleet", "activity", "--json")
		if done(acts) {
			return acts
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for scaling activities: %v; have %+v\ndaemon log:\n%s", ctx.Err(), acts, r.Tail("daemon.log"))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func countCPU(tl []load.Second) int {
	n := 0
	for _, s := range tl {
		if s.AvgCPU != nil {
			n++
		}
	}
	return n
}
