package scaling

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// simFleet is a model fleet: instances enter service launchDelay after
// launch, and in-service instances share a CPU demand (in instance-percent)
// equally, saturating at 100 %. It samples itself every second into an
// Aggregator, as the platform's sampler will.
type simFleet struct {
	mu          sync.Mutex
	cap         Capacity
	insts       []simInst
	next        int
	launchDelay time.Duration
	warmup      time.Duration
	agg         *Aggregator
	noServing   bool // report datapoints without Serving (the plain AWS formula)
	failSets    int
	sets        int
}

type simInst struct {
	id          string
	inServiceAt time.Time
}

func newSimFleet(c Capacity, period, warmup, launchDelay time.Duration, now time.Time) *simFleet {
	f := &simFleet{cap: c, launchDelay: launchDelay, warmup: warmup, agg: NewAggregator(period, warmup, 20)}
	for i := 0; i < c.Desired; i++ {
		f.launch(now.Add(-time.Hour))
	}
	return f
}

func (f *simFleet) launch(now time.Time) {
	f.next++
	f.insts = append(f.insts, simInst{id: fmt.Sprintf("i-%d", f.next), inServiceAt: now.Add(f.launchDelay)})
}

func (f *simFleet) SetCapacity(_ context.Context, c Capacity) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSets > 0 {
		f.failSets--
		return errors.New("launch template not found")
	}
	f.sets++
	f.cap = c
	return nil
}

// tick reconciles instances with the desired capacity and samples them.
func (f *simFleet) tick(now time.Time, demand float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.insts) < f.cap.Desired {
		f.launch(now)
	}
	if len(f.insts) > f.cap.Desired {
		f.insts = f.insts[:f.cap.Desired] // terminate the newest
	}
	var in []simInst
	for _, i := range f.insts {
		if !now.Before(i.inServiceAt) {
			in = append(in, i)
		}
	}
	if len(in) == 0 {
		return
	}
	cpu := math.Min(100, demand/float64(len(in)))
	for _, i := range in {
		f.agg.Add(Sample{Instance: i.id, At: now, InService: true, InServiceSince: i.inServiceAt, CPU: cpu, Requests: cpu})
	}
}

func (f *simFleet) Observe(_ context.Context, now time.Time) (Capacity, Observed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	states := make([]InstanceState, len(f.insts))
	for i, in := range f.insts {
		states[i] = InstanceState{ID: in.id, InService: !now.Before(in.inServiceAt), InServiceSince: in.inServiceAt}
	}
	dps := f.agg.Datapoints(CPUUtilization, now)
	if f.noServing {
		for i := range dps {
			dps[i].Serving = 0
		}
	}
	return f.cap, Observed{
		Warming:    Warming(states, f.warmup, now),
		Datapoints: map[Metric][]Datapoint{CPUUtilization: dps},
	}, nil
}

// TestSimulatedExamSpike runs the aggregator, the decision and the loop
// together on a model fleet and a fake clock: baseline, a step to 8×, hold,
// drop. The fleet must reach the proportional size without overshoot, never
// scale in while warming, and come back to min exactly one scale-in run after
// the drop.
func TestSimulatedExamSpike(t *testing.T) {
	peak, minAt, acts := simulateSpike(t, false)
	if peak != 10 {
		t.Fatalf("peak desired = %d, want exactly 10 (no overshoot)", peak)
	}
	// The 15-datapoint scale-in run starts with the first period after the
	// drop: back at min when the 15th closes.
	if want := 900 + 15*10; minAt != want {
		t.Fatalf("back at min at t=%ds, want %ds", minAt, want)
	}
	for _, a := range acts {
		if a.From > a.To && a.To != 2 {
			t.Fatalf("scaled in in steps: %s", a.Cause)
		}
	}
}

// TestSimulatedExamSpikePlainFormulaOvershoots is why datapoints carry the
// capacity they were measured at: multiplying a datapoint measured before a
// scale-out by the capacity after it counts the same load twice.
func TestSimulatedExamSpikePlainFormulaOvershoots(t *testing.T) {
	peak, _, _ := simulateSpike(t, true)
	if peak != 12 {
		t.Fatalf("peak desired with the plain formula = %d; docs/scaling.md says it overshoots to the max, 12", peak)
	}
}

func simulateSpike(t *testing.T, noServing bool) (peakDesired, minAt int, acts []Activity) {
	const (
		period = 10 * time.Second
		warmup = 20 * time.Second
		base   = 60.0  // instance-percent: 2 instances at 30 %
		peak   = 480.0 // 8×: needs ceil(480/50) = 10 instances at 50 %
	)
	clk := clock.NewFake(t0)
	fleet := newSimFleet(Capacity{Min: 2, Max: 12, Desired: 2}, period, warmup, 5*time.Second, t0)
	fleet.noServing = noServing
	var decisions []Decision
	loop, err := NewLoop(LoopConfig{
		Scaling:  Config{Policies: []Policy{cpuPolicy(50)}, Period: period},
		Source:   fleet,
		Actuator: fleet,
		Clock:    clk,
		Logger:   testLogger(t),
		OnDecision: func(d Decision) {
			decisions = append(decisions, d)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	demand := func(s int) float64 {
		if s >= 300 && s < 900 {
			return peak
		}
		return base
	}
	minAt = -1
	ctx := context.Background()
	for s := 0; s <= 1200; s++ {
		now := clk.Now()
		fleet.tick(now, demand(s-1)) // the sample ending at s covers [s-1, s)
		if s%int(period/time.Second) == 0 {
			d, err := loop.Tick(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if d.Next.Desired > peakDesired {
				peakDesired = d.Next.Desired
			}
			if s > 900 && minAt < 0 && d.Next.Desired == 2 {
				minAt = s
			}
			if s < 300 && d.Next.Desired != 2 {
				t.Fatalf("t=%ds: baseline changed desired to %d (%s)", s, d.Next.Desired, d.Reason)
			}
		}
		clk.Advance(time.Second)
	}
	acts = loop.Activities()
	if len(acts) < 3 || len(acts) != fleet.sets {
		t.Fatalf("%d activities for %d capacity changes", len(acts), fleet.sets)
	}
	for i, a := range acts {
		if a.ID != uint64(i+1) || !strings.HasPrefix(a.Cause, "At 2026-11-30T") || !strings.Contains(a.Cause, fmt.Sprintf("from %d to %d", a.From, a.To)) {
			t.Fatalf("activity %d = %+v", i, a)
		}
		t.Logf("activity: %s", a.Cause)
	}
	if len(decisions) != len(acts) {
		t.Fatalf("OnDecision called %d times for %d changes", len(decisions), len(acts))
	}
	return peakDesired, minAt, acts
}

// blockingSource reports each Observe call on a channel.
type countingSource struct {
	calls chan time.Time
}

func (s countingSource) Observe(_ context.Context, now time.Time) (Capacity, Observed, error) {
	s.calls <- now
	return Capacity{Min: 1, Max: 4, Desired: 2}, Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(now, 2, 90, 90, 90)}}, nil
}

type failingActuator struct{ fail bool }

func (a *failingActuator) SetCapacity(context.Context, Capacity) error {
	if a.fail {
		return errors.New("fleet is stopping")
	}
	return nil
}

func TestLoopRunsOnTheClockAndBacksOffOnFailure(t *testing.T) {
	clk := clock.NewFake(t0)
	src := countingSource{calls: make(chan time.Time, 10)}
	act := &failingActuator{fail: true}
	loop, err := NewLoop(LoopConfig{
		Scaling:  Config{Policies: []Policy{cpuPolicy(50)}},
		Source:   src,
		Actuator: act,
		Clock:    clk,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := loop.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer loop.Stop(context.Background())
	<-src.calls // the first tick runs at once
	if !clk.BlockUntil(1, 5*time.Second) {
		t.Fatal("loop did not wait on the clock")
	}
	if st := loop.Status(); st.Failures != 1 || !strings.Contains(st.LastError, "fleet is stopping") || st.State.Desired != 0 {
		t.Fatalf("after a failed change: %+v", st)
	}
	// After one failure the next tick waits about two periods (±10 %).
	clk.Advance(75 * time.Second)
	select {
	case <-src.calls:
		t.Fatal("ticked before the backoff")
	case <-time.After(50 * time.Millisecond):
	}
	act.fail = false // read by the next tick only; the loop is parked
	clk.Advance(60 * time.Second)
	select {
	case <-src.calls:
	case <-time.After(5 * time.Second):
		t.Fatal("no tick after the backoff")
	}
	clk.BlockUntil(1, 5*time.Second)
	st := loop.Status()
	if st.Failures != 0 || st.State.Desired != 4 || len(loop.Activities()) != 1 {
		t.Fatalf("after the retry: %+v, activities %+v", st, loop.Activities())
	}
	if err := loop.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLoopStopsWithItsContext(t *testing.T) {
	clk := clock.NewFake(t0)
	src := countingSource{calls: make(chan time.Time, 10)}
	loop, err := NewLoop(LoopConfig{Scaling: Config{}, Source: src, Actuator: &failingActuator{}, Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := loop.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-src.calls
	cancel()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := loop.Stop(stopCtx); err != nil {
		t.Fatalf("the loop did not end with its context: %v", err)
	}
	if err := loop.Start(context.Background()); err == nil {
		t.Fatal("a loop started twice")
	}
}

func TestNewLoopRejectsBadConfig(t *testing.T) {
	_, err := NewLoop(LoopConfig{Scaling: Config{Policies: []Policy{{Name: "c", Metric: CPUUtilization, Target: 150}}}})
	if err == nil || !strings.Contains(err.Error(), "policies[0].target") || !strings.Contains(err.Error(), "source: must be set") {
		t.Fatalf("err = %v", err)
	}
}

// staticSource observes a fixed capacity and a CPU series ending at now.
type staticSource struct {
	mu  sync.Mutex
	cap Capacity
	cpu float64
}

func (s *staticSource) Observe(_ context.Context, now time.Time) (Capacity, Observed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cap, Observed{Datapoints: map[Metric][]Datapoint{CPUUtilization: series(now.Truncate(period), int(s.cap.Desired), repeat(s.cpu, 20)...)}}, nil
}

func (s *staticSource) SetCapacity(_ context.Context, c Capacity) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cap = c
	return nil
}

// TestLoopScheduledActionsAtRunTimeAndSuspend: a one-time action put at run
// time runs once at its moment (the drill's pre-scale), deleting an action
// stops it, and while suspended neither policies nor scheduled actions act
// and missed runs are skipped, as AWS's SuspendProcesses does. Each change
// is published in the snapshot.
func TestLoopScheduledActionsAtRunTimeAndSuspend(t *testing.T) {
	clk := clock.NewFake(t0)
	src := &staticSource{cap: Capacity{Min: 2, Max: 10, Desired: 2}, cpu: 30}
	loop, err := NewLoop(LoopConfig{Scaling: Config{Policies: []Policy{cpuPolicy(50)}}, Source: src, Actuator: src, Clock: clk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tick := func() Decision {
		t.Helper()
		d, err := loop.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tick()
	at := t0.Add(90 * time.Second)
	if err := loop.PutScheduledAction(ScheduledAction{Name: "prescale", Schedule: Once(at), Min: ip(6)}); err != nil {
		t.Fatal(err)
	}
	if err := loop.PutScheduledAction(ScheduledAction{Name: "cpu", Schedule: Once(at), Min: ip(1)}); err == nil {
		t.Error("an action named like a policy was accepted")
	}
	if err := loop.PutScheduledAction(ScheduledAction{Name: "bad", Schedule: Once(at), Min: ip(6), Max: ip(3)}); err == nil || !strings.Contains(err.Error(), "scheduled[1].max") {
		t.Errorf("min above max: err = %v", err)
	}
	snap := loop.Snapshot()
	if len(snap.NextRuns) != 1 || !snap.NextRuns[0].At.Equal(at) || snap.NextRuns[0].Action != "prescale" || len(snap.Scheduled) != 1 {
		t.Fatalf("snapshot next runs = %+v, scheduled %v", snap.NextRuns, snap.Scheduled)
	}
	clk.Advance(60 * time.Second)
	if d := tick(); d.Next.Desired != 2 {
		t.Fatalf("before its time the action ran: %+v", d)
	}
	clk.Advance(60 * time.Second)
	d := tick()
	if d.Next.Min != 6 || d.Next.Desired != 6 || len(d.Activities) != 1 || d.Activities[0].Kind != KindScheduled {
		t.Fatalf("at its time: %+v", d)
	}
	if got := loop.Snapshot(); got.State.Desired != 6 || len(got.NextRuns) != 0 || len(got.Activities) != 1 {
		t.Fatalf("snapshot after the run = %+v", got)
	}
	clk.Advance(60 * time.Second)
	if d := tick(); len(d.Runs) != 0 {
		t.Fatalf("a one-time action ran twice: %+v", d.Runs)
	}

	// Suspended: a due action and a hot metric both do nothing, and the
	// action does not run late on resume.
	if err := loop.PutScheduledAction(ScheduledAction{Name: "evening", Schedule: Once(clk.Now().Add(30 * time.Second)), Min: ip(2)}); err != nil {
		t.Fatal(err)
	}
	loop.SetSuspended(true)
	if s := loop.Snapshot(); !s.Suspended || len(s.NextRuns) != 0 {
		t.Fatalf("suspended snapshot = %+v", s)
	}
	src.mu.Lock()
	src.cpu = 95
	src.mu.Unlock()
	clk.Advance(60 * time.Second)
	if d := tick(); d.Changed(State{Capacity: src.cap}) || src.cap.Min != 6 || !strings.Contains(d.Reason, "suspended") {
		t.Fatalf("suspended loop acted: %+v, capacity %v", d, src.cap)
	}
	loop.SetSuspended(false)
	clk.Advance(time.Second)
	d = tick()
	if len(d.Runs) != 0 || d.Next.Min != 6 {
		t.Fatalf("a run missed while suspended ran on resume: %+v", d)
	}
	if d.Next.Desired <= 6 || d.Activities[0].Kind != KindTargetTracking {
		t.Fatalf("target tracking did not act after resume: %+v", d)
	}
	if !loop.DeleteScheduledAction("evening") || loop.DeleteScheduledAction("evening") {
		t.Error("DeleteScheduledAction: want true, then false")
	}
	if got := loop.Snapshot().Scheduled; len(got) != 1 || got[0] != "prescale" {
		t.Errorf("scheduled after delete = %v", got)
	}
}

func TestOnce(t *testing.T) {
	at := t0.Add(time.Hour)
	if got := Once(at).Next(t0); !got.Equal(at) {
		t.Errorf("Next before = %s", got)
	}
	if got := Once(at).Next(at); !got.IsZero() {
		t.Errorf("Next at the moment = %s, want zero", got)
	}
}

// TestLoopSetPolicies: a new target takes effect at the next tick, with the
// state, the activity history and the suspension kept; an invalid set is
// refused and the old policies stay.
func TestLoopSetPolicies(t *testing.T) {
	clk := clock.NewFake(t0)
	src := &staticSource{cap: Capacity{Min: 2, Max: 10, Desired: 2}, cpu: 60}
	loop, err := NewLoop(LoopConfig{Scaling: Config{Policies: []Policy{cpuPolicy(50)}}, Source: src, Actuator: src, Clock: clk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := loop.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Next.Desired != 3 || len(loop.Activities()) != 1 {
		t.Fatalf("60 %% on 2 at target 50: desired %d, activities %d; want 3, 1", d.Next.Desired, len(loop.Activities()))
	}

	bad := []Policy{{Name: "cpu", Metric: CPUUtilization, Target: 120}}
	if err := loop.SetPolicies(bad, nil); err == nil || !strings.Contains(err.Error(), "target") {
		t.Fatalf("a CPU target of 120: err = %v, want one naming the target", err)
	}
	if p := loop.Snapshot().Policies; len(p) != 1 || p[0].Target != 50 {
		t.Fatalf("after a refused set the policies are %+v", p)
	}

	loop.SetSuspended(true)
	at := clk.Now().Add(90 * time.Second)
	if err := loop.SetPolicies([]Policy{cpuPolicy(20)}, []ScheduledAction{{Name: "evening", Schedule: Once(at), Min: ip(1)}}); err != nil {
		t.Fatal(err)
	}
	snap := loop.Snapshot()
	if !snap.Suspended || len(snap.Policies) != 1 || snap.Policies[0].Target != 20 || len(snap.Scheduled) != 1 || len(snap.Activities) != 1 || snap.State.Desired != 3 {
		t.Fatalf("snapshot after SetPolicies = %+v", snap)
	}
	loop.SetSuspended(false)
	clk.Advance(60 * time.Second)
	src.mu.Lock()
	src.cpu = 30 // below 50, far above 20
	src.mu.Unlock()
	if d, err = loop.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if d.Next.Desired != 5 {
		t.Errorf("30 %% on 3 at the new target 20: desired %d, want ceil(3 × 30 / 20) = 5", d.Next.Desired)
	}
}
