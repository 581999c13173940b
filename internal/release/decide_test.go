package release

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// sim is a fleet the decisions act on: launches come into service after a
// few ticks (or never, or crash, for a bad version); terminations drain at once.
type sim struct {
	t        *testing.T
	rng      *rand.Rand
	now      time.Time
	zones    int
	desired  int
	insts    []*simInst
	lost     map[string]string
	seq      int
	badHash  string // instances of this hash never get healthy
	crash    bool   // ... or exit at once
	traffic  Observation
	minIn    int // fewest in-service instances seen
	maxLive  int
	maxSkew  int // the largest zone imbalance seen after a step's actions
	checkCPs []int
}

type simInst struct {
	Instance
	readyAt time.Time
}

func newSim(t *testing.T, seed uint64, zones, desired int, hash string) *sim {
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, 1)), now: time.Unix(1_700_000_000, 0), zones: zones, desired: desired, lost: map[string]string{}, minIn: 1 << 30}
	for i := range desired {
		s.add(i%zones, hash, true)
	}
	return s
}

func (s *sim) add(z int, hash string, inService bool) string {
	s.seq++
	id := fmt.Sprintf("i-%03d", s.seq)
	in := &simInst{Instance: Instance{ID: id, Zone: z, Hash: hash, InService: inService, Health: "initial", LaunchedAt: s.now}}
	if inService {
		in.Health = "healthy"
	}
	in.readyAt = s.now.Add(time.Duration(1+s.rng.IntN(3)) * time.Second)
	s.insts = append(s.insts, in)
	return id
}

func (s *sim) obs() Observation {
	o := s.traffic
	o.Now, o.Zones, o.Desired, o.Lost = s.now, s.zones, s.desired, s.lost
	o.Instances = nil
	for _, in := range s.insts {
		o.Instances = append(o.Instances, in.Instance)
	}
	return o
}

func (s *sim) skew() int {
	c := make([]int, s.zones)
	for _, in := range s.insts {
		c[in.Zone]++
	}
	return slices.Max(c) - slices.Min(c)
}

func (s *sim) inService() int {
	n := 0
	for _, in := range s.insts {
		if in.InService {
			n++
		}
	}
	return n
}

// run drives r to a final phase (at most 500 ticks of 1s) and returns it.
func (s *sim) run(p Policy, r Rollout) Rollout {
	for range 500 {
		pl := Decide(p, r, s.obs())
		r = pl.Next
		if pl.Kind == "checkpoint" {
			n := 0
			for _, in := range s.insts {
				if in.Hash == r.TargetHash {
					n++
				}
			}
			s.checkCPs = append(s.checkCPs, 100*n/max(s.desired, 1))
		}
		for _, id := range pl.Terminate {
			i := slices.IndexFunc(s.insts, func(in *simInst) bool { return in.ID == id })
			if i < 0 {
				s.t.Fatalf("terminate unknown %s", id)
			}
			s.insts = slices.Delete(s.insts, i, i+1)
		}
		for _, z := range pl.Launch {
			id := s.add(z, r.TargetHash, false)
			r.Launched = append(r.Launched, id)
		}
		s.minIn = min(s.minIn, s.inService())
		s.maxLive = max(s.maxLive, len(s.insts))
		s.maxSkew = max(s.maxSkew, s.skew())
		if r.Phase.Final() {
			return r
		}
		s.now = s.now.Add(time.Second)
		for i := 0; i < len(s.insts); i++ {
			in := s.insts[i]
			if in.InService || s.now.Before(in.readyAt) {
				continue
			}
			switch {
			case in.Hash == s.badHash && s.crash:
				s.lost[in.ID] = "exited: exit status 1"
				s.insts = slices.Delete(s.insts, i, i+1)
				i--
			case in.Hash == s.badHash:
				in.Health = "unhealthy"
			default:
				in.InService, in.Health = true, "healthy"
			}
		}
	}
	s.t.Fatalf("rollout did not finish in 500 ticks: %+v", r)
	return r
}

func randCheckpoints(rng *rand.Rand) []int {
	var cps []int
	for c := 0; c < 100; {
		c = min(100, c+1+rng.IntN(60))
		cps = append(cps, c)
	}
	return cps
}

func newRollout(p Policy, now time.Time) Rollout {
	return Rollout{ID: "r-0001", Target: "v2", TargetHash: "h2", From: "v1", FromHash: "h1", Phase: PhaseRolling,
		Checkpoints: p.Checkpoints, Bake: p.Bake, StartedAt: now, Requested: "deploy"}
}

// TestGoodRolloutProperties: with max_healthy 200 and min_healthy 100,
// every random fleet ends fully on the new version, in-service capacity
// never drops below desired, zones stay balanced, and checkpoints are
// reached in increasing order ending at 100.
func TestGoodRolloutProperties(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		zones, desired := 2+rng.IntN(2), 1+rng.IntN(9)
		p := Policy{Checkpoints: randCheckpoints(rng), Bake: time.Duration(rng.IntN(4)) * time.Second}.WithDefaults()
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		s := newSim(t, seed, zones, desired, "h1")
		r := s.run(p, newRollout(p, s.now))
		name := fmt.Sprintf("seed %d: %d zones, desired %d, checkpoints %v", seed, zones, desired, p.Checkpoints)
		if r.Phase != PhaseSucceeded {
			t.Fatalf("%s: phase %s (%s: %s)", name, r.Phase, r.Gate, r.Reason)
		}
		if len(s.insts) != desired {
			t.Errorf("%s: ended with %d instances", name, len(s.insts))
		}
		for _, in := range s.insts {
			if in.Hash != "h2" {
				t.Errorf("%s: %s still runs %s", name, in.ID, in.Hash)
			}
		}
		if s.minIn < desired {
			t.Errorf("%s: in-service capacity fell to %d", name, s.minIn)
		}
		if s.maxLive > 2*desired {
			t.Errorf("%s: fleet grew to %d, above 200%%", name, s.maxLive)
		}
		if s.maxSkew > 1 {
			t.Errorf("%s: zones differed by %d", name, s.maxSkew)
		}
		if len(s.checkCPs) != len(p.Checkpoints) || !slices.IsSorted(s.checkCPs) || s.checkCPs[len(s.checkCPs)-1] != 100 {
			t.Errorf("%s: checkpoints reached at %v%%", name, s.checkCPs)
		}
		for i, c := range s.checkCPs {
			if c < p.Checkpoints[i] {
				t.Errorf("%s: checkpoint %d%% reached with only %d%% new", name, p.Checkpoints[i], c)
			}
		}
	}
}

// TestBadRolloutRollsBack: a version that never turns healthy, or exits,
// fails the health gate and is rolled back with capacity never below
// desired; the fleet ends on the old version.
func TestBadRolloutRollsBack(t *testing.T) {
	for _, crash := range []bool{false, true} {
		for seed := range uint64(100) {
			rng := rand.New(rand.NewPCG(seed, 9))
			zones, desired := 2+rng.IntN(2), 1+rng.IntN(8)
			p := Policy{Checkpoints: randCheckpoints(rng), HealthTimeout: 5 * time.Second}.WithDefaults()
			s := newSim(t, seed, zones, desired, "h1")
			s.badHash, s.crash = "h2", crash
			r := s.run(p, newRollout(p, s.now))
			name := fmt.Sprintf("crash=%v seed %d: %d zones, desired %d", crash, seed, zones, desired)
			if r.Phase != PhaseRolledBack || r.Gate != GateHealth {
				t.Fatalf("%s: phase %s gate %q", name, r.Phase, r.Gate)
			}
			if r.Target != "v1" || r.RolledBackFrom != "v2" {
				t.Errorf("%s: target %s rolled back from %s", name, r.Target, r.RolledBackFrom)
			}
			for _, in := range s.insts {
				if in.Hash != "h1" {
					t.Errorf("%s: %s runs %s after rollback", name, in.ID, in.Hash)
				}
			}
			if len(s.insts) != desired || s.minIn < desired || s.maxSkew > 1 {
				t.Errorf("%s: %d instances, in service at least %d, skew %d", name, len(s.insts), s.minIn, s.maxSkew)
			}
			if crash && !strings.Contains(r.Reason, "exit status 1") {
				t.Errorf("%s: reason %q does not say why", name, r.Reason)
			}
		}
	}
}

func TestGates(t *testing.T) {
	p := Policy{MinRequests: 20}.WithDefaults()
	now := time.Unix(1_700_000_000, 0)
	base := Rollout{ID: "r-1", Target: "v2", TargetHash: "h2", From: "v1", FromHash: "h1", Phase: PhaseBaking,
		Checkpoints: []int{50, 100}, Bake: 10 * time.Second, StepReachedAt: now.Add(-time.Second)}
	insts := []Instance{{ID: "a", Zone: 0, Hash: "h2", InService: true, LaunchedAt: now.Add(-5 * time.Second)}, {ID: "b", Zone: 1, Hash: "h1", InService: true}}
	tests := []struct {
		name       string
		o          Observation
		gate       string
		inReason   string
		noRollback bool
		phase      Phase
	}{
		{name: "quiet", o: Observation{New: Traffic{Requests: 100}, Old: Traffic{Requests: 100}}, phase: PhaseBaking},
		{name: "errors", o: Observation{New: Traffic{Requests: 100, Errors5xx: 20}, Old: Traffic{Requests: 100}}, gate: GateErrors, inReason: "20.00% (20 of 100)", phase: PhaseRollingBack},
		{name: "errors within the limit", o: Observation{New: Traffic{Requests: 400, Errors5xx: 4}, Old: Traffic{Requests: 400}}, phase: PhaseBaking},
		{name: "errors over too few requests", o: Observation{New: Traffic{Requests: 10, Errors5xx: 5}, Old: Traffic{Requests: 100}}, phase: PhaseBaking},
		{name: "errors against a failing old version", o: Observation{New: Traffic{Requests: 100, Errors5xx: 10}, Old: Traffic{Requests: 100, Errors5xx: 10}}, phase: PhaseBaking},
		{name: "slow", o: Observation{New: Traffic{Requests: 100, P99: 2100 * time.Millisecond}, Old: Traffic{Requests: 100, P99: 80 * time.Millisecond}}, gate: GateLatency, inReason: "p99 2.1s", phase: PhaseRollingBack},
		{name: "slow without an old reference", o: Observation{New: Traffic{Requests: 100, P99: 900 * time.Millisecond}}, gate: GateLatency, phase: PhaseRollingBack},
		{name: "alarm", o: Observation{InAlarm: []string{"high-5xx"}}, gate: GateAlarm, inReason: "high-5xx", phase: PhaseRollingBack},
		{name: "lost", o: Observation{Lost: map[string]string{"a": "exited: exit status 2"}}, gate: GateHealth, inReason: "exit status 2", phase: PhaseRollingBack},
		{name: "no auto rollback", o: Observation{InAlarm: []string{"x"}}, gate: GateAlarm, noRollback: true, phase: PhaseFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			r.Launched = []string{"a"}
			o := tc.o
			o.Now, o.Zones, o.Desired, o.Instances = now, 2, 2, insts
			pp := p
			pp.NoAutoRollback = tc.noRollback
			pl := Decide(pp, r, o)
			if pl.Next.Gate != tc.gate || !strings.Contains(pl.Next.Reason, tc.inReason) || pl.Next.Phase != tc.phase {
				t.Fatalf("got gate %q phase %s reason %q; want gate %q phase %s reason with %q", pl.Next.Gate, pl.Next.Phase, pl.Next.Reason, tc.gate, tc.phase, tc.inReason)
			}
			if tc.phase == PhaseRollingBack && (pl.Next.Target != "v1" || pl.Next.RolledBackFrom != "v2" || !slices.Equal(pl.Next.Checkpoints, []int{100})) {
				t.Errorf("rollback record: %+v", pl.Next)
			}
		})
	}
}

// TestHealthTimeout: a new instance that is not in service within the
// limit fails the health gate, naming it and the LB's view.
func TestHealthTimeout(t *testing.T) {
	p := Policy{HealthTimeout: 30 * time.Second}.WithDefaults()
	now := time.Unix(1_700_000_000, 0)
	r := Rollout{ID: "r-1", Target: "v2", TargetHash: "h2", From: "v1", FromHash: "h1", Phase: PhaseRolling, Checkpoints: []int{100}, Launched: []string{"n"}}
	insts := []Instance{{ID: "o", Hash: "h1", InService: true}, {ID: "n", Zone: 1, Hash: "h2", Health: "unhealthy", LaunchedAt: now.Add(-29 * time.Second)}}
	if pl := Decide(p, r, Observation{Now: now, Zones: 2, Desired: 1, Instances: insts}); pl.Next.Gate != "" {
		t.Fatalf("failed before the limit: %s", pl.Next.Reason)
	}
	pl := Decide(p, r, Observation{Now: now.Add(time.Second), Zones: 2, Desired: 1, Instances: insts})
	if pl.Next.Gate != GateHealth || !strings.Contains(pl.Next.Reason, "n of v2") || !strings.Contains(pl.Next.Reason, "unhealthy") {
		t.Fatalf("gate %q reason %q", pl.Next.Gate, pl.Next.Reason)
	}
	if !slices.Equal(pl.Terminate, []string{"n"}) {
		t.Errorf("the unhealthy new instance is not terminated at once: %v", pl.Terminate)
	}
}

// TestTerminateFirst: with no room above desired (max 100), one old
// instance goes before its replacement comes, as min_healthy allows.
func TestTerminateFirst(t *testing.T) {
	p := Policy{MinHealthy: 50, MaxHealthy: 100, Checkpoints: []int{100}, Bake: time.Nanosecond}.WithDefaults()
	s := newSim(t, 1, 2, 4, "h1")
	r := s.run(p, newRollout(p, s.now))
	if r.Phase != PhaseSucceeded || s.maxLive > 4 || s.minIn < 2 {
		t.Fatalf("phase %s, live at most %d, in service at least %d", r.Phase, s.maxLive, s.minIn)
	}
	// AWS's default 90/100 on two instances: one at a time, below min.
	p = Policy{MinHealthy: 90, MaxHealthy: 100, Checkpoints: []int{100}, Bake: time.Nanosecond}.WithDefaults()
	s = newSim(t, 2, 2, 2, "h1")
	if r := s.run(p, newRollout(p, s.now)); r.Phase != PhaseSucceeded || s.maxLive > 2 || s.minIn != 1 {
		t.Fatalf("phase %s, live at most %d, in service at least %d", r.Phase, s.maxLive, s.minIn)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		p    Policy
		want string
	}{
		{Policy{MinHealthy: 100, MaxHealthy: 90}, "min_healthy_percentage (100) must not exceed max_healthy_percentage (90)"},
		{Policy{MaxHealthy: 250}, "must be from 100 to 200, got 250"},
		{Policy{Checkpoints: []int{50, 40, 100}}, "not increasing"},
		{Policy{Checkpoints: []int{20, 60}}, "does not end at 100"},
		{Policy{Checkpoints: []int{0, 100}}, "each must be from 1 to 100"},
		{Policy{Bake: -time.Second}, "bake: must be ≥ 0"},
	}
	for _, tc := range tests {
		err := tc.p.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.p, err, tc.want)
		}
	}
	if err := (Policy{}).WithDefaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
