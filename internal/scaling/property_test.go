package scaling

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The property tests draw random groups, policies, metric histories and
// scheduled actions from a seeded generator, so a failure names its seed and
// reproduces.

const propertyRuns = 4000

type world struct {
	cfg   Config
	state State
	obs   Observed
	now   time.Time
}

func (w world) String() string {
	return fmt.Sprintf("state %+v warming %d policies %+v datapoints %v", w.state, w.obs.Warming, w.cfg.Policies, w.obs.Datapoints)
}

func randomWorld(r *rand.Rand, withSchedule bool) world {
	now := t0.Add(time.Duration(r.IntN(1000)) * time.Second)
	min := r.IntN(5)
	max := min + r.IntN(15)
	if max == 0 {
		max = 1
	}
	w := world{now: now}
	w.state = State{
		Capacity:         Capacity{Min: min, Max: max, Desired: min + r.IntN(max-min+1)},
		LastChange:       now.Add(-time.Duration(r.IntN(30)) * period),
		ScheduledThrough: now.Add(-time.Duration(r.IntN(300)) * time.Second),
	}
	w.cfg.Tolerance = []float64{-1, 0.05, 0.1, 0.2}[r.IntN(4)] // -1: no tolerance band
	w.cfg.ScaleOutDatapoints = 1 + r.IntN(4)
	w.cfg.ScaleInDatapoints = w.cfg.ScaleOutDatapoints + r.IntN(15)
	w.obs = Observed{Warming: r.IntN(3) * r.IntN(2), Datapoints: map[Metric][]Datapoint{}}
	metrics := []Metric{CPUUtilization, RequestCountPerTarget}
	for i, m := range metrics[:1+r.IntN(2)] {
		target := 10 + r.Float64()*90
		if m == RequestCountPerTarget {
			target = 100 + r.Float64()*5000
		}
		w.cfg.Policies = append(w.cfg.Policies, Policy{Name: fmt.Sprintf("p%d", i), Metric: m, Target: target, DisableScaleIn: r.IntN(8) == 0})
		n := r.IntN(25)
		vals := make([]float64, n)
		for j := range vals {
			vals[j] = r.Float64() * target * 2.5
		}
		dps := series(now.Add(-time.Duration(r.IntN(2))*period/2), 1+r.IntN(10), vals...)
		if n > 0 && r.IntN(6) == 0 {
			dps[r.IntN(n)].Instances = 0 // a period without data
		}
		w.obs.Datapoints[m] = dps
	}
	if withSchedule {
		for i := 0; i < r.IntN(3); i++ {
			a := ScheduledAction{Name: fmt.Sprintf("s%d", i), Schedule: everyMinute{}}
			lo := r.IntN(8)
			switch r.IntN(3) {
			case 0:
				a.Min = ip(lo)
			case 1:
				a.Max = ip(lo + r.IntN(8))
			default:
				a.Desired = ip(lo)
			}
			w.cfg.Scheduled = append(w.cfg.Scheduled, a)
		}
	}
	return w
}

// everyMinute is a Schedule that runs at the start of every minute.
type everyMinute struct{}

func (everyMinute) Next(t time.Time) time.Time { return t.Truncate(time.Minute).Add(time.Minute) }

func TestPropertyNeverOutsideBounds(t *testing.T) {
	for seed := uint64(0); seed < propertyRuns; seed++ {
		r := rand.New(rand.NewPCG(seed, 1))
		w := randomWorld(r, true)
		if r.IntN(4) == 0 {
			w.state.Desired = r.IntN(30) // set by hand outside the limits
		}
		d := w.cfg.Decide(w.state, w.obs, w.now)
		c := d.Next.Capacity
		if c.Desired < c.Min || c.Desired > c.Max {
			t.Fatalf("seed %d: next %+v outside its bounds (%s)\n%s", seed, c, d.Reason, w)
		}
	}
}

func TestPropertyNoScaleInWhileWarming(t *testing.T) {
	for seed := uint64(0); seed < propertyRuns; seed++ {
		r := rand.New(rand.NewPCG(seed, 2))
		w := randomWorld(r, false)
		w.obs.Warming = 1 + r.IntN(4)
		d := w.cfg.Decide(w.state, w.obs, w.now)
		if d.Next.Desired < w.state.Desired {
			t.Fatalf("seed %d: scaled in from %d to %d with %d warming (%s)\n%s", seed, w.state.Desired, d.Next.Desired, w.obs.Warming, d.Reason, w)
		}
		for _, v := range d.Verdicts {
			if v.Kind == VerdictIn {
				t.Fatalf("seed %d: policy %s said in while warming", seed, v.Policy)
			}
		}
	}
}

func TestPropertyMonotoneInTheMetric(t *testing.T) {
	checked := 0
	for seed := uint64(0); seed < propertyRuns; seed++ {
		r := rand.New(rand.NewPCG(seed, 3))
		w := randomWorld(r, r.IntN(2) == 0)
		m := w.cfg.Policies[r.IntN(len(w.cfg.Policies))].Metric
		dps := w.obs.Datapoints[m]
		if len(dps) == 0 {
			continue
		}
		higher := Observed{Warming: w.obs.Warming, Datapoints: map[Metric][]Datapoint{}}
		for k, v := range w.obs.Datapoints {
			higher.Datapoints[k] = append([]Datapoint(nil), v...)
		}
		// Raise one datapoint, or all of them.
		if r.IntN(2) == 0 {
			i := r.IntN(len(dps))
			higher.Datapoints[m][i].Value += r.Float64() * 100
		} else {
			for i := range higher.Datapoints[m] {
				higher.Datapoints[m][i].Value *= 1 + r.Float64()
			}
		}
		lo := w.cfg.Decide(w.state, w.obs, w.now)
		hi := w.cfg.Decide(w.state, higher, w.now)
		checked++
		if hi.Next.Desired < lo.Next.Desired {
			t.Fatalf("seed %d: raising %s lowered desired from %d to %d\nlow: %s\nhigh: %s\n%s", seed, m, lo.Next.Desired, hi.Next.Desired, lo.Reason, hi.Reason, w)
		}
	}
	if checked < propertyRuns/2 {
		t.Fatalf("only %d worlds had datapoints to raise", checked)
	}
}

func TestPropertyNoDataNoChange(t *testing.T) {
	for seed := uint64(0); seed < propertyRuns; seed++ {
		r := rand.New(rand.NewPCG(seed, 4))
		w := randomWorld(r, false)
		// Three kinds of "no data": nothing, only empty periods, or only
		// stale datapoints.
		for m, dps := range w.obs.Datapoints {
			switch r.IntN(3) {
			case 0:
				w.obs.Datapoints[m] = nil
			case 1:
				for i := range dps {
					dps[i].Instances = 0
				}
			default:
				for i := range dps {
					dps[i].Start = dps[i].Start.Add(-time.Hour)
				}
			}
		}
		d := w.cfg.Decide(w.state, w.obs, w.now)
		if d.Next.Capacity != w.state.Capacity || len(d.Activities) != 0 {
			t.Fatalf("seed %d: no data changed %+v to %+v (%s)", seed, w.state.Capacity, d.Next.Capacity, d.Reason)
		}
		for _, v := range d.Verdicts {
			if v.Kind != VerdictNoData {
				t.Fatalf("seed %d: verdict %s on no data", seed, v.Kind)
			}
		}
	}
}
