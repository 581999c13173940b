package release

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Phase is where a rollout is.
type Phase string

// Phases of a rollout. Succeeded, RolledBack and Failed are final.
const (
	// PhaseRolling: replacing instances toward the current checkpoint.
	PhaseRolling Phase = "rolling"
	// PhaseBaking: at a checkpoint, watching the gates for the bake time.
	PhaseBaking Phase = "baking"
	// PhaseRollingBack: a gate failed; the last good version replaces the
	// new one, under the same capacity rules and the health gate.
	PhaseRollingBack Phase = "rolling-back"
	// PhaseSucceeded: the whole fleet runs the target version.
	PhaseSucceeded Phase = "succeeded"
	// PhaseRolledBack: the whole fleet runs the last good version again.
	PhaseRolledBack Phase = "rolled-back"
	// PhaseFailed: the rollback itself failed its health gate, or a gate
	// failed with auto rollback off; the fleet is left as it is.
	PhaseFailed Phase = "failed"
)

// Final reports whether the rollout is over.
func (p Phase) Final() bool {
	return p == PhaseSucceeded || p == PhaseRolledBack || p == PhaseFailed
}

// Gates a step must pass.
const (
	GateHealth  = "health"  // new instances in service and healthy behind the LB
	GateErrors  = "errors"  // the new version's 5xx rate against the old one's
	GateLatency = "latency" // the new version's p99 against the old one's
	GateAlarm   = "alarm"   // no rollback_on alarm in ALARM
)

// Instance is one live (pending or in-service) instance as a rollout sees it.
type Instance struct {
	ID   string
	Zone int // index of its zone
	// Hash is the content hash of the version it runs.
	Hash string
	// InService: in service and healthy behind the load balancer.
	InService bool
	// Health is the load balancer's view (initial, healthy, unhealthy), for reasons.
	Health     string
	LaunchedAt time.Time
}

// Traffic is what the load balancer measured for one version.
type Traffic struct {
	Requests  uint64        `json:"requests"`
	Errors5xx uint64        `json:"errors_5xx"`
	P99       time.Duration `json:"p99"`
}

// Rate is the 5xx percentage (0 with no requests).
func (t Traffic) Rate() float64 {
	if t.Requests == 0 {
		return 0
	}
	return 100 * float64(t.Errors5xx) / float64(t.Requests)
}

// Observation is what the loop saw at one instant.
type Observation struct {
	Now time.Time
	// Zones is the number of zones; Instance.Zone is below it.
	Zones int
	// Desired is the fleet's desired capacity.
	Desired int
	// Instances are the live instances (draining ones are not).
	Instances []Instance
	// Lost maps instances this rollout launched that are gone (exited,
	// replaced) to why.
	Lost map[string]string
	// New and Old are the target version's and the other versions' traffic
	// since the rollout began.
	New, Old Traffic
	// InAlarm lists the rollback_on alarms now in ALARM.
	InAlarm []string
	// LaunchError is why a launch of the target version failed ("" if none did).
	LaunchError string
}

// Rollout is the durable record of one rollout: everything Decide needs
// besides the observation, so a restarted daemon carries on from it.
type Rollout struct {
	// ID names the rollout, e.g. "r-0003".
	ID string `json:"id"`
	// Target is the version being rolled out, TargetHash its content hash.
	Target     string `json:"target"`
	TargetHash string `json:"target_hash"`
	// From is the version it replaces (the last good one), the rollback target.
	From     string `json:"from"`
	FromHash string `json:"from_hash"`
	Phase    Phase  `json:"phase"`
	// Checkpoints and Bake in effect (a rollback runs [100] without bake).
	Checkpoints []int         `json:"checkpoints"`
	Bake        time.Duration `json:"bake"`
	// Step indexes Checkpoints.
	Step int `json:"step"`
	// StepReachedAt is when the current checkpoint was reached (zero while rolling toward it).
	StepReachedAt time.Time `json:"step_reached_at,omitzero"`
	StartedAt     time.Time `json:"started_at"`
	FinishedAt    time.Time `json:"finished_at,omitzero"`
	// Launched lists the instances this rollout (or its rollback) launched.
	Launched []string `json:"launched,omitempty"`
	// Gate is the gate that failed and Reason its figures ("" while none has).
	Gate   string `json:"gate,omitempty"`
	Reason string `json:"reason,omitempty"`
	// RolledBackFrom is the version a rollback replaces.
	RolledBackFrom string `json:"rolled_back_from,omitempty"`
	// Requested says who started it: "deploy" or "rollback".
	Requested string `json:"requested"`
	// AllowedBreaking names the breaking migrations an operator let this
	// rollout carry (--allow-breaking); "" for none.
	AllowedBreaking string `json:"allowed_breaking,omitempty"`
	// Resumed holds when a restarted daemon took the rollout up again,
	// once per restart: a rollout that outlived its daemon says so.
	Resumed []time.Time `json:"resumed,omitempty"`
	// Figures are the last traffic figures the gates judged.
	New Traffic `json:"new"`
	Old Traffic `json:"old"`
}

// Plan is what Decide asks for.
type Plan struct {
	// Next is the rollout after this decision; the loop persists it
	// before acting.
	Next Rollout
	// Launch lists zones to launch one instance of Next.Target in, each.
	Launch []int
	// Terminate lists instances to drain and stop.
	Terminate []string
	// Kind and Event describe a change worth an event ("" when none):
	// checkpoint, passed, gate-failed, succeeded, rolled-back, failed.
	Kind, Event string
}

// Decide is the rollout's one decision: from the record, the policy and
// the observation to the next record and actions. It is pure.
//
//   - Gates run first. Health: an instance the rollout launched is lost,
//     turned unhealthy after being in service, or not in service within
//     HealthTimeout. Alarm: a rollback_on alarm is in ALARM. Errors: once
//     the new version served MinRequests, its 5xx rate exceeds the old
//     one's by more than Max5xxIncrease points, with at least 3 errors.
//     Latency: likewise its p99 exceeds the old one's (0 when the old
//     version served fewer than MinRequests) by more than MaxP99Increase.
//     A failure rolls back (or, with NoAutoRollback, fails); a failure
//     while rolling back fails.
//   - Capacity: the step's target count is ceil(Desired × checkpoint %),
//     at least 1. New instances launch while the fleet is below
//     MaxHealthy % of Desired; an old instance is terminated only while
//     in-service instances stay at or above MinHealthy % (an old instance
//     not in service goes at once). When neither is possible, one old
//     instance is replaced at a time, as an Auto Scaling Group does.
//   - Zones: a launch goes to the zone with the fewest live instances
//     (tie: the one with the most old instances, then the lowest index);
//     a termination takes the oldest old instance of the fullest zone
//     that has one (tie: the zone with more old instances, then the
//     highest index), never one that would leave its zone two below
//     another.
//   - A checkpoint is reached when enough new instances are in service
//     (past Warmup) and no more old ones remain than the step allows; it
//     then bakes for Bake with the gates watching, and the rollout moves
//     on. After the last (100) it has succeeded.
func Decide(p Policy, r Rollout, o Observation) Plan {
	pl := Plan{Next: r}
	n := &pl.Next
	n.Launched = slices.Clone(r.Launched)
	if r.Phase.Final() {
		return pl
	}
	if gate, reason := checkGates(p, r, o); gate != "" {
		return fail(p, r, o, gate, reason)
	}
	n.New, n.Old = o.New, o.Old

	d := max(o.Desired, 0)
	zones := max(o.Zones, 1)
	cp := 100
	if r.Step < len(r.Checkpoints) {
		cp = r.Checkpoints[r.Step]
	}
	want := min(max((d*cp+99)/100, 1), d) // new instances this step
	keepOld := d - want

	counts := make([]int, zones)
	oldPerZone := make([]int, zones)
	var tIn, tReady, tPend, inService int
	var olds []Instance
	for _, in := range o.Instances {
		z := min(max(in.Zone, 0), zones-1)
		counts[z]++
		if in.InService {
			inService++
		}
		if in.Hash == r.TargetHash {
			switch {
			case in.InService:
				tIn++
				if o.Now.Sub(in.LaunchedAt) >= p.Warmup {
					tReady++
				}
			default:
				tPend++
			}
			continue
		}
		olds = append(olds, in)
		oldPerZone[z]++
	}
	live := len(o.Instances)

	// Launch: fill lost capacity, then grow toward this step's count,
	// within MaxHealthy.
	surge := d*p.MaxHealthy/100 - live
	launch := max(d-live, 0)
	if need := want - tIn - tPend - launch; need > 0 {
		launch += min(need, max(surge-launch, 0))
	}
	uncovered := slices.Clone(oldPerZone)
	for range launch {
		z := 0
		for i := 1; i < zones; i++ {
			if counts[i] < counts[z] || (counts[i] == counts[z] && uncovered[i] > uncovered[z]) {
				z = i
			}
		}
		counts[z]++
		if uncovered[z] > 0 {
			uncovered[z]--
		}
		pl.Launch = append(pl.Launch, z)
	}

	// Terminate: old instances beyond what this step keeps, without
	// dropping in-service capacity below MinHealthy.
	minIn := (d*p.MinHealthy + 99) / 100
	excess := len(olds) - keepOld
	picked := map[string]bool{}
	pick := func(inServiceOnly bool) bool {
		best := -1
		lo := slices.Min(counts)
		for i, in := range olds {
			zi := min(max(in.Zone, 0), zones-1)
			if picked[in.ID] || in.InService != inServiceOnly || (inServiceOnly && counts[zi]-1 < lo && zones > 1 && slices.Max(counts) > lo) {
				continue // taken, or would leave its zone two below another
			}
			if best < 0 {
				best = i
				continue
			}
			b := olds[best]
			zb := min(max(b.Zone, 0), zones-1)
			if c := cmp.Or(cmp.Compare(counts[zi], counts[zb]), cmp.Compare(oldPerZone[zi], oldPerZone[zb]), cmp.Compare(zi, zb)); c > 0 ||
				(c == 0 && (in.LaunchedAt.Before(b.LaunchedAt) || (in.LaunchedAt.Equal(b.LaunchedAt) && in.ID < b.ID))) {
				best = i
			}
		}
		if best < 0 {
			return false
		}
		v := olds[best]
		picked[v.ID] = true
		counts[min(max(v.Zone, 0), zones-1)]--
		oldPerZone[min(max(v.Zone, 0), zones-1)]--
		pl.Terminate = append(pl.Terminate, v.ID)
		return true
	}
	for excess > 0 && pick(false) { // old and not serving: costs nothing
		excess--
	}
	for excess > 0 && inService-1 >= minIn && pick(true) {
		excess--
		inService--
	}
	// An Auto Scaling Group replaces at least one instance at a time, even
	// when MinHealthy and MaxHealthy leave no room.
	if excess > 0 && len(pl.Launch) == 0 && len(pl.Terminate) == 0 && tPend == 0 && surge <= 0 {
		pick(true)
	}

	if len(pl.Launch) > 0 || len(pl.Terminate) > 0 {
		n.Phase = phaseMoving(r.Phase)
		return pl
	}
	reached := tReady >= want && len(olds) <= keepOld && tPend == 0
	if !reached {
		return pl
	}
	if r.Phase == PhaseRollingBack {
		n.Phase, n.FinishedAt = PhaseRolledBack, o.Now
		pl.Kind = "rolled-back"
		pl.Event = fmt.Sprintf("rollout %s rolled back: the fleet (%d) runs %s again; %s gate failed: %s", r.ID, d, r.Target, r.Gate, r.Reason)
		return pl
	}
	if r.StepReachedAt.IsZero() {
		n.StepReachedAt, n.Phase = o.Now, PhaseBaking
		pl.Kind = "checkpoint"
		pl.Event = fmt.Sprintf("rollout %s: checkpoint %d%% reached (%d of %d on %s); baking %s", r.ID, cp, tReady, d, r.Target, r.Bake)
		if r.Bake > 0 {
			return pl
		}
	}
	if o.Now.Sub(n.StepReachedAt) < r.Bake {
		return pl
	}
	n.Step++
	n.StepReachedAt = time.Time{}
	if n.Step >= len(r.Checkpoints) {
		n.Phase, n.FinishedAt = PhaseSucceeded, o.Now
		pl.Kind = "succeeded"
		pl.Event = fmt.Sprintf("rollout %s succeeded: the fleet (%d) runs %s; %s", r.ID, d, r.Target, figures(o))
		return pl
	}
	n.Phase = PhaseRolling
	pl.Kind = "passed"
	pl.Event = fmt.Sprintf("rollout %s: checkpoint %d%% passed its bake; %s", r.ID, cp, figures(o))
	return pl
}

func phaseMoving(p Phase) Phase {
	if p == PhaseRollingBack {
		return p
	}
	return PhaseRolling
}

func figures(o Observation) string {
	return fmt.Sprintf("new: %d requests, 5xx %.2f%%, p99 %s; old: %d requests, 5xx %.2f%%, p99 %s",
		o.New.Requests, o.New.Rate(), o.New.P99.Round(time.Millisecond), o.Old.Requests, o.Old.Rate(), o.Old.P99.Round(time.Millisecond))
}

// checkGates returns the first failed gate and its figures.
func checkGates(p Policy, r Rollout, o Observation) (string, string) {
	launched := map[string]bool{}
	for _, id := range r.Launched {
		launched[id] = true
	}
	var lost []string
	for _, id := range r.Launched {
		if why, ok := o.Lost[id]; ok {
			lost = append(lost, id+" ("+why+")")
		}
	}
	if o.LaunchError != "" {
		return GateHealth, o.LaunchError
	}
	if len(lost) > 0 {
		return GateHealth, fmt.Sprintf("%d new instance(s) of %s lost before the rollout finished: %s", len(lost), r.Target, strings.Join(lost, ", "))
	}
	for _, in := range o.Instances {
		if !launched[in.ID] || in.Hash != r.TargetHash {
			continue
		}
		if !in.InService && o.Now.Sub(in.LaunchedAt) >= p.HealthTimeout {
			return GateHealth, fmt.Sprintf("new instance %s of %s not healthy behind the load balancer %s after launch (limit %s; LB says %s)",
				in.ID, r.Target, o.Now.Sub(in.LaunchedAt).Round(time.Millisecond), p.HealthTimeout, cmp.Or(in.Health, "initial"))
		}
	}
	if len(o.InAlarm) > 0 {
		return GateAlarm, fmt.Sprintf("alarm %s in ALARM (rollback_on)", strings.Join(o.InAlarm, ", "))
	}
	if r.Phase == PhaseRollingBack {
		return "", "" // the old version was good: only health and alarms judge a rollback
	}
	if o.New.Requests >= uint64(p.MinRequests) && o.New.Errors5xx >= 3 {
		oldRate := 0.0
		if o.Old.Requests >= uint64(p.MinRequests) {
			oldRate = o.Old.Rate()
		}
		if o.New.Rate() > oldRate+p.Max5xxIncrease {
			return GateErrors, fmt.Sprintf("%s 5xx rate %.2f%% (%d of %d) against %.2f%% (%d of %d) on the old version; limit +%g points",
				r.Target, o.New.Rate(), o.New.Errors5xx, o.New.Requests, o.Old.Rate(), o.Old.Errors5xx, o.Old.Requests, p.Max5xxIncrease)
		}
	}
	if o.New.Requests >= uint64(p.MinRequests) {
		var oldP99 time.Duration
		if o.Old.Requests >= uint64(p.MinRequests) {
			oldP99 = o.Old.P99
		}
		if o.New.P99 > oldP99+p.MaxP99Increase {
			return GateLatency, fmt.Sprintf("%s p99 %s over %d requests against %s over %d on the old version; limit +%s",
				r.Target, o.New.P99.Round(time.Millisecond), o.New.Requests, oldP99.Round(time.Millisecond), o.Old.Requests, p.MaxP99Increase)
		}
	}
	return "", ""
}

// fail records the failed gate and turns the rollout around (or stops it).
func fail(p Policy, r Rollout, o Observation, gate, reason string) Plan {
	pl := Plan{Next: r}
	n := &pl.Next
	n.Gate, n.Reason, n.New, n.Old = gate, reason, o.New, o.Old
	if r.Phase == PhaseRollingBack || p.NoAutoRollback || r.FromHash == "" {
		n.Phase, n.FinishedAt = PhaseFailed, o.Now
		n.Launched = slices.Clone(r.Launched)
		pl.Kind = "failed"
		what := "rollout"
		if r.Phase == PhaseRollingBack {
			what = "rollback"
		}
		pl.Event = fmt.Sprintf("%s %s failed: %s gate: %s; the fleet is left as it is", what, r.ID, gate, reason)
		return pl
	}
	n.Phase = PhaseRollingBack
	n.RolledBackFrom = r.Target
	n.Target, n.TargetHash, n.From, n.FromHash = r.From, r.FromHash, r.Target, r.TargetHash
	n.Checkpoints, n.Bake, n.Step, n.StepReachedAt = []int{100}, 0, 0, time.Time{}
	n.Launched = nil
	// The bad version's instances that serve nothing go at once.
	for _, in := range o.Instances {
		if in.Hash == r.TargetHash && !in.InService {
			pl.Terminate = append(pl.Terminate, in.ID)
		}
	}
	pl.Kind = "gate-failed"
	pl.Event = fmt.Sprintf("rollout %s of %s: %s gate failed: %s; rolling back to %s", r.ID, r.Target, gate, reason, r.From)
	return pl
}
