package fleet

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func inst(id string, z int, st State, h Health, age time.Duration) Observed {
	return Observed{ID: id, Zone: z, State: st, Health: h, LaunchedAt: t0.Add(-age)}
}

func TestPlan(t *testing.T) {
	const in, pe = StateInService, StatePending
	const ok, un, ini = HealthHealthy, HealthUnhealthy, HealthInitial
	tests := []struct {
		name  string
		insts []Observed
		d     Desired
		grace time.Duration
		// impaired zones by index (nil: none)
		impaired []bool
		want     Actions
	}{
		{name: "empty fleet launches min spread, tie to first zone",
			d:    Desired{Min: 3, Max: 5, Desired: 3},
			want: Actions{Desired: 3, Launch: []Launch{{0, ReasonCapacity}, {1, ReasonCapacity}, {0, ReasonCapacity}}}},
		{name: "desired clamped up to min",
			d:    Desired{Min: 2, Max: 4, Desired: 0},
			want: Actions{Desired: 2, Launch: []Launch{{0, ReasonCapacity}, {1, ReasonCapacity}}}},
		{name: "desired clamped down to max",
			insts: []Observed{inst("a1", 0, in, ok, 3*time.Hour), inst("b1", 1, in, ok, 2*time.Hour), inst("a2", 0, in, ok, time.Hour)},
			d:     Desired{Min: 0, Max: 2, Desired: 9},
			want:  Actions{Desired: 2, Terminate: []Termination{{"a1", ReasonScaleIn}}}},
		{name: "launch goes to emptier zone",
			insts: []Observed{inst("a1", 0, in, ok, time.Hour), inst("a2", 0, in, ok, time.Hour)},
			d:     Desired{Min: 1, Max: 5, Desired: 3},
			want:  Actions{Desired: 3, Launch: []Launch{{1, ReasonCapacity}}}},
		{name: "scale 2 to 5 gives 3/2",
			insts: []Observed{inst("a1", 0, in, ok, time.Hour), inst("b1", 1, in, ok, time.Hour)},
			d:     Desired{Min: 2, Max: 6, Desired: 5},
			want:  Actions{Desired: 5, Launch: []Launch{{0, ReasonCapacity}, {1, ReasonCapacity}, {0, ReasonCapacity}}}},
		{name: "scale in: fullest zone, oldest first, tie to last zone",
			insts: []Observed{
				inst("a1", 0, in, ok, 5*time.Hour), inst("b1", 1, in, ok, 4*time.Hour), inst("a2", 0, in, ok, 3*time.Hour),
				inst("b2", 1, in, ok, 2*time.Hour), inst("a3", 0, in, ok, time.Hour)},
			d: Desired{Min: 1, Max: 6, Desired: 2},
			want: Actions{Desired: 2, Terminate: []Termination{
				{"a1", ReasonScaleIn}, {"b1", ReasonScaleIn}, {"a2", ReasonScaleIn}}}},
		{name: "scale in waits for pending instances",
			insts: []Observed{inst("a1", 0, in, ok, time.Hour), inst("b1", 1, in, ok, time.Hour), inst("a2", 0, pe, ini, time.Second)},
			d:     Desired{Min: 1, Max: 6, Desired: 2},
			want:  Actions{Desired: 2}},
		{name: "scale in removes only in-service beyond desired",
			insts: []Observed{inst("a1", 0, in, ok, 3*time.Hour), inst("b1", 1, in, ok, 2*time.Hour), inst("a2", 0, in, ok, time.Hour), inst("b2", 1, pe, ini, 0)},
			d:     Desired{Min: 1, Max: 6, Desired: 1},
			want:  Actions{Desired: 1, Terminate: []Termination{{"b1", ReasonScaleIn}, {"a1", ReasonScaleIn}}}},
		{name: "rebalance launches first",
			insts: []Observed{inst("a1", 0, in, ok, 2*time.Hour), inst("a2", 0, in, ok, time.Hour)},
			d:     Desired{Min: 2, Max: 4, Desired: 2},
			want:  Actions{Desired: 2, Launch: []Launch{{1, ReasonRebalance}}}},
		{name: "rebalance waits while its launch is pending",
			insts: []Observed{inst("a1", 0, in, ok, 2*time.Hour), inst("a2", 0, in, ok, time.Hour), inst("b1", 1, pe, ini, 0)},
			d:     Desired{Min: 2, Max: 4, Desired: 2},
			want:  Actions{Desired: 2}},
		{name: "rebalance terminates oldest of fullest zone once launch is in service",
			insts: []Observed{inst("a1", 0, in, ok, 2*time.Hour), inst("a2", 0, in, ok, time.Hour), inst("b1", 1, in, ok, 0)},
			d:     Desired{Min: 2, Max: 4, Desired: 2},
			want:  Actions{Desired: 2, Terminate: []Termination{{"a1", ReasonScaleIn}}}},
		{name: "difference of one is balanced",
			insts: []Observed{inst("a1", 0, in, ok, 2*time.Hour), inst("a2", 0, in, ok, time.Hour), inst("b1", 1, in, ok, 0)},
			d:     Desired{Min: 2, Max: 4, Desired: 3},
			want:  Actions{Desired: 3}},
		{name: "unhealthy past grace replaced in same plan",
			insts: []Observed{inst("a1", 0, in, un, time.Minute), inst("b1", 1, in, ok, time.Minute)},
			d:     Desired{Min: 2, Max: 4, Desired: 2},
			grace: 10 * time.Second,
			want:  Actions{Desired: 2, Terminate: []Termination{{"a1", ReasonUnhealthy}}, Launch: []Launch{{0, ReasonCapacity}}}},
		{name: "unhealthy within grace kept",
			insts: []Observed{inst("a1", 0, pe, un, 5*time.Second), inst("b1", 1, in, ok, time.Minute)},
			d:     Desired{Min: 2, Max: 4, Desired: 2},
			grace: 10 * time.Second,
			want:  Actions{Desired: 2}},
		{name: "an impaired zone gets no launch: the lost instance is replaced in the healthy zone",
			insts:    []Observed{inst("b1", 1, in, ok, time.Hour)},
			d:        Desired{Min: 2, Max: 4, Desired: 2},
			impaired: []bool{true, false},
			want:     Actions{Desired: 2, Launch: []Launch{{1, ReasonCapacity}}}},
		{name: "impaired zone: scale out goes to the healthy zones only",
			insts:    []Observed{inst("b1", 1, in, ok, time.Hour)},
			d:        Desired{Min: 2, Max: 6, Desired: 4},
			impaired: []bool{true, false},
			want:     Actions{Desired: 4, Launch: []Launch{{1, ReasonCapacity}, {1, ReasonCapacity}, {1, ReasonCapacity}}}},
		{name: "every zone impaired: nothing is launched",
			d:        Desired{Min: 2, Max: 4, Desired: 2},
			impaired: []bool{true, true},
			want:     Actions{Desired: 2}},
		{name: "impaired zone: no rebalance into it",
			insts:    []Observed{inst("b1", 1, in, ok, 2*time.Hour), inst("b2", 1, in, ok, time.Hour)},
			d:        Desired{Min: 2, Max: 4, Desired: 2},
			impaired: []bool{true, false},
			want:     Actions{Desired: 2}},
		{name: "the zone returns: rebalance launches into it",
			insts:    []Observed{inst("b1", 1, in, ok, 2*time.Hour), inst("b2", 1, in, ok, time.Hour)},
			d:        Desired{Min: 2, Max: 4, Desired: 2},
			impaired: []bool{false, false},
			want:     Actions{Desired: 2, Launch: []Launch{{0, ReasonRebalance}}}},
		{name: "scale in takes the impaired zone's instances first",
			insts:    []Observed{inst("a1", 0, in, ok, time.Hour), inst("b1", 1, in, ok, 3*time.Hour), inst("b2", 1, in, ok, 2*time.Hour)},
			d:        Desired{Min: 1, Max: 4, Desired: 2},
			impaired: []bool{true, false},
			want:     Actions{Desired: 2, Terminate: []Termination{{"a1", ReasonScaleIn}}}},
		{name: "non-live instances ignored",
			insts: []Observed{inst("a1", 0, StateDraining, ok, time.Minute), inst("b1", 1, StateTerminated, un, time.Minute)},
			d:     Desired{Min: 1, Max: 4, Desired: 1},
			want:  Actions{Desired: 1, Launch: []Launch{{0, ReasonCapacity}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(Snapshot{Now: t0, Zones: 2, Instances: tt.insts, GracePeriod: tt.grace, Impaired: tt.impaired}, tt.d)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestPlanProperties checks Plan's invariants over random fleets.
func TestPlanProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	states := []State{StatePending, StateInService, StateInService, StateInService, StateDraining, StateTerminated}
	healths := []Health{HealthInitial, HealthHealthy, HealthHealthy, HealthUnhealthy}
	for iter := range 20000 {
		zones := 1 + r.IntN(3)
		minC := r.IntN(5)
		maxC := minC + r.IntN(6)
		d := Desired{Min: minC, Max: maxC, Desired: r.IntN(14) - 2}
		grace := time.Duration(r.IntN(3)) * 10 * time.Second
		var insts []Observed
		for i := range r.IntN(12) {
			insts = append(insts, Observed{
				ID: fmt.Sprintf("i%d", i), Zone: r.IntN(zones), State: states[r.IntN(len(states))],
				Health: healths[r.IntN(len(healths))], LaunchedAt: t0.Add(-time.Duration(r.IntN(40)) * time.Second),
			})
		}
		impaired := make([]bool, zones)
		for z := range impaired {
			impaired[z] = r.IntN(4) == 0
		}
		s := Snapshot{Now: t0, Zones: zones, Instances: insts, GracePeriod: grace, Impaired: impaired}
		a := Plan(s, d)
		fail := func(format string, args ...any) {
			t.Fatalf("iteration %d: %s\nsnapshot %+v\ndesired %+v\nplan %+v", iter, fmt.Sprintf(format, args...), s, d, a)
		}
		if a.Desired < d.Min || a.Desired > d.Max {
			fail("desired %d outside [%d,%d]", a.Desired, d.Min, d.Max)
		}
		byID := map[string]Observed{}
		for _, in := range insts {
			byID[in.ID] = in
		}
		counts := make([]int, zones)
		kept := 0
		inService := 0
		terminated := map[string]bool{}
		scaleIn := 0
		for _, tr := range a.Terminate {
			in, ok := byID[tr.ID]
			if !ok || terminated[tr.ID] || !in.State.Live() {
				fail("bad termination %+v", tr)
			}
			terminated[tr.ID] = true
			switch tr.Reason {
			case ReasonUnhealthy:
				if in.Health != HealthUnhealthy || t0.Sub(in.LaunchedAt) < grace {
					fail("%s terminated as unhealthy but is %s at age %s", in.ID, in.Health, t0.Sub(in.LaunchedAt))
				}
			case ReasonScaleIn:
				scaleIn++
				if in.State != StateInService {
					fail("scale-in of %s in state %s", in.ID, in.State)
				}
			default:
				fail("unknown reason %q", tr.Reason)
			}
		}
		for _, in := range insts {
			if !in.State.Live() {
				continue
			}
			if in.Health == HealthUnhealthy && t0.Sub(in.LaunchedAt) >= grace && !terminated[in.ID] {
				fail("unhealthy %s past grace not replaced", in.ID)
			}
			if in.Health != HealthUnhealthy || t0.Sub(in.LaunchedAt) < grace {
				counts[in.Zone]++
				kept++
				if in.State == StateInService && !terminated[in.ID] {
					inService++
				}
			}
		}
		// Launches go to the emptiest zone that is not impaired, lowest
		// index on ties; none while every zone is impaired.
		healthy := false
		for _, imp := range impaired {
			healthy = healthy || !imp
		}
		for _, l := range a.Launch {
			want := -1
			for z := range counts {
				if !impaired[z] && (want < 0 || counts[z] < counts[want]) {
					want = z
				}
			}
			if l.Zone != want {
				fail("launch to zone %d, want %d (counts %v, impaired %v)", l.Zone, want, counts, impaired)
			}
			counts[l.Zone]++
		}
		after := kept + len(a.Launch) - scaleIn
		if scaleIn > 0 && len(a.Launch) > 0 {
			fail("launches and scales in in the same plan")
		}
		if scaleIn > 0 && inService < a.Desired {
			fail("scale-in leaves %d in service, want ≥ %d", inService, a.Desired)
		}
		if kept < a.Desired && after != a.Desired && healthy {
			fail("below desired: %d after plan, want %d", after, a.Desired)
		}
		if kept >= a.Desired && after < a.Desired {
			fail("terminated more than needed: %d after plan, desired %d", after, a.Desired)
		}
		for _, l := range a.Launch {
			if l.Reason == ReasonRebalance && (len(a.Launch) != 1 || len(a.Terminate) != 0) {
				fail("rebalance mixed with other actions")
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	base := 100 * time.Millisecond
	for _, tt := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{1, 80 * time.Millisecond, 120 * time.Millisecond},
		{3, 320 * time.Millisecond, 480 * time.Millisecond},
		{30, 24 * time.Second, 36 * time.Second},
	} {
		for range 100 {
			if got := backoff(base, tt.n); got < tt.lo || got > tt.hi {
				t.Fatalf("backoff(%v, %d) = %v, want in [%v, %v]", base, tt.n, got, tt.lo, tt.hi)
			}
		}
	}
}
