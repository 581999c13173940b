package fleet

import (
	"cmp"
	"slices"
	"time"
)

// Health is an instance's health as the fleet judges it.
type Health string

// Health values.
const (
	// HealthInitial means not yet judged (the LB has not finished its first checks).
	HealthInitial Health = "initial"
	// HealthHealthy means the process runs (ec2) or the LB says healthy (elb).
	HealthHealthy Health = "healthy"
	// HealthUnhealthy means the LB says unhealthy (elb).
	HealthUnhealthy Health = "unhealthy"
)

// State is an instance's lifecycle state.
type State string

// Lifecycle states, in order.
const (
	// StatePending: the process is started and registered, not yet in service.
	StatePending State = "pending"
	// StateInService: running, and (elb) the LB says healthy.
	StateInService State = "in-service"
	// StateDraining: being deregistered; the LB finishes in-flight requests.
	StateDraining State = "draining"
	// StateTerminating: SIGTERM sent, waiting for the process to exit.
	StateTerminating State = "terminating"
	// StateTerminated: the process is gone.
	StateTerminated State = "terminated"
)

// Live reports whether the state counts toward capacity.
func (s State) Live() bool { return s == StatePending || s == StateInService }

// Observed is one live instance as the planner sees it.
type Observed struct {
	ID         string
	Zone       int // index into the fleet's zones
	State      State
	Health     Health
	LaunchedAt time.Time
}

// Snapshot is what the planner knows about the fleet at one instant.
type Snapshot struct {
	// Now is the time of the snapshot.
	Now time.Time
	// Zones is the number of zones; instances carry zone indexes below it.
	Zones int
	// Instances are the live (pending or in-service) instances.
	Instances []Observed
	// GracePeriod after launch during which HealthUnhealthy is ignored.
	GracePeriod time.Duration
	// Impaired marks the zones (by index) that are impaired: powered off or
	// cut off from the others. Nothing is launched there until they return;
	// a nil or short slice means none.
	Impaired []bool
}

// impaired reports whether zone z is impaired in s.
func (s Snapshot) impaired(z int) bool { return z < len(s.Impaired) && s.Impaired[z] }

// Desired is the requested capacity.
type Desired struct {
	Min, Max, Desired int
}

// Clamp returns Desired limited to [Min, Max].
func (d Desired) Clamp() int {
	return max(d.Min, min(d.Desired, d.Max))
}

// Reasons carried by Launch and Termination.
const (
	ReasonCapacity  = "capacity"  // fewer instances than desired (scale out or replacement)
	ReasonRebalance = "rebalance" // zones are uneven
	ReasonScaleIn   = "scale-in"  // more instances than desired
	ReasonUnhealthy = "unhealthy" // unhealthy past the grace period
)

// Launch asks for one instance in a zone.
type Launch struct {
	Zone   int
	Reason string
}

// Termination asks to stop one instance.
type Termination struct {
	ID     string
	Reason string
}

// Actions is the outcome of Plan.
type Actions struct {
	// Desired is the clamped desired capacity.
	Desired int
	// Launch lists the instances to start, in order.
	Launch []Launch
	// Terminate lists the instances to stop.
	Terminate []Termination
}

// Plan decides what to launch and terminate. It is pure.
//
//   - Desired is clamped to [Min, Max].
//   - Instances unhealthy past the grace period are terminated and replaced (in the same plan).
//   - Launches go to the zone with the fewest instances (tie: lowest index)
//     among the zones that are not impaired, as an Auto Scaling Group
//     launches into the healthy Availability Zones when one is impaired;
//     with every zone impaired nothing is launched.
//   - Scale-in removes only in-service instances, only as many as exceed Desired,
//     from the zone with the most instances (tie: highest index), oldest first.
//     While pending instances could still fill capacity it waits for them.
//   - Rebalancing (zones differ by more than one) launches one instance in the
//     emptiest zone that is not impaired; scale-in then removes one from the
//     fullest zone once the new one is in service (an impaired zone's first).
//     It never launches and terminates for balance in one plan. So when an
//     impaired zone returns, capacity moves back into it.
func Plan(s Snapshot, d Desired) Actions {
	var a Actions
	a.Desired = d.Clamp()
	zones := max(s.Zones, 1)
	counts := make([]int, zones)
	var keep []Observed
	for _, in := range s.Instances {
		if !in.State.Live() {
			continue
		}
		if in.Health == HealthUnhealthy && s.Now.Sub(in.LaunchedAt) >= s.GracePeriod {
			a.Terminate = append(a.Terminate, Termination{ID: in.ID, Reason: ReasonUnhealthy})
			continue
		}
		if in.Zone < 0 || in.Zone >= zones {
			continue // unknown zone: not counted; cannot happen from the fleet
		}
		keep = append(keep, in)
		counts[in.Zone]++
	}
	n := len(keep)

	switch {
	case n < a.Desired:
		for range a.Desired - n {
			z := minZone(counts, s.impaired)
			if z < 0 {
				break // every zone impaired
			}
			counts[z]++
			a.Launch = append(a.Launch, Launch{Zone: z, Reason: ReasonCapacity})
		}
	case n > a.Desired:
		inService := 0
		for _, in := range keep {
			if in.State == StateInService {
				inService++
			}
		}
		// Remove only in-service instances beyond Desired: pending ones may be a
		// rebalance launch or will become in-service and be trimmed then.
		remove := min(n-a.Desired, max(0, inService-a.Desired))
		removed := map[string]bool{}
		for range remove {
			id, z := scaleInVictim(keep, counts, removed, s.impaired)
			if id == "" {
				break
			}
			removed[id] = true
			counts[z]--
			a.Terminate = append(a.Terminate, Termination{ID: id, Reason: ReasonScaleIn})
		}
	default:
		pending := false
		for _, in := range keep {
			if in.State == StatePending {
				pending = true
			}
		}
		lo, hi := minZone(counts, s.impaired), maxZone(counts)
		if lo >= 0 && !pending && len(a.Terminate) == 0 && counts[hi]-counts[lo] > 1 {
			a.Launch = append(a.Launch, Launch{Zone: lo, Reason: ReasonRebalance})
		}
	}
	return a
}

// scaleInVictim picks the oldest in-service instance of the fullest zone
// that has one, impaired zones first.
func scaleInVictim(keep []Observed, counts []int, removed map[string]bool, impaired func(int) bool) (string, int) {
	order := make([]int, len(counts))
	for i := range order {
		order[i] = i
	}
	// Impaired zones first, then the fullest; tie: highest index.
	slices.SortStableFunc(order, func(x, y int) int {
		if ix, iy := impaired(x), impaired(y); ix != iy {
			if ix {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(counts[y], counts[x]); c != 0 {
			return c
		}
		return cmp.Compare(y, x)
	})
	for _, z := range order {
		var best *Observed
		for i := range keep {
			in := &keep[i]
			if in.Zone != z || in.State != StateInService || removed[in.ID] {
				continue
			}
			if best == nil || in.LaunchedAt.Before(best.LaunchedAt) ||
				(in.LaunchedAt.Equal(best.LaunchedAt) && in.ID < best.ID) {
				best = in
			}
		}
		if best != nil {
			return best.ID, z
		}
	}
	return "", 0
}

// minZone returns the zone with the fewest instances among those not
// impaired (tie: lowest index), -1 when every zone is impaired.
func minZone(counts []int, impaired func(int) bool) int {
	z := -1
	for i, c := range counts {
		if !impaired(i) && (z < 0 || c < counts[z]) {
			z = i
		}
	}
	return z
}

func maxZone(counts []int) int {
	z := len(counts) - 1
	for i := len(counts) - 1; i >= 0; i-- {
		if counts[i] > counts[z] {
			z = i
		}
	}
	return z
}
