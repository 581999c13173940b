package lb

import (
	"slices"
	"time"
)

// Routing choices, documented here because they are the LB's fairness contract:
//
//   - Cross-zone load balancing is on, as on ALB by default: every eligible
//     target gets an equal share (times its slow-start weight), whatever its zone.
//   - Targets are ordered by interleaving zones (a1, b1, a2, b2, ...), so
//     round robin alternates zones on consecutive requests.
//   - Round robin is smooth weighted round robin (nginx's algorithm): with equal
//     weights it visits targets in order; with slow-start weights it spreads a
//     ramping target's requests evenly instead of in bursts.
//   - Least outstanding requests picks the lowest (in flight + 1) / weight, and
//     breaks ties by rotating the starting point so idle targets share evenly.

// minSlowStartWeight is the weight of a target at the very start of slow start,
// so that it gets a trickle of requests rather than none.
const minSlowStartWeight = 0.01

// slowStartWeight returns the routing weight of a target that became healthy
// elapsed ago with a slow-start window: it ramps linearly from
// minSlowStartWeight to 1 over window; window 0 means no slow start.
func slowStartWeight(elapsed, window time.Duration) float64 {
	if window <= 0 || elapsed >= window {
		return 1
	}
	w := float64(elapsed) / float64(window)
	if w < minSlowStartWeight {
		return minSlowStartWeight
	}
	return w
}

// choice is one routable target as seen by the pickers.
type choice struct {
	weight   float64
	inflight int64
	current  *float64 // smooth round robin state, owned by the target
	skip     bool     // already tried by this request
}

// pickRoundRobin picks by smooth weighted round robin among the choices not
// skipped, updating their current values. It returns -1 if none is eligible.
func pickRoundRobin(cs []choice) int {
	best, total := -1, 0.0
	for i := range cs {
		c := &cs[i]
		if c.skip || c.weight <= 0 {
			continue
		}
		*c.current += c.weight
		total += c.weight
		if best < 0 || *c.current > *cs[best].current {
			best = i
		}
	}
	if best >= 0 {
		*cs[best].current -= total
	}
	return best
}

// pickLeastOutstanding picks the choice with the lowest (inflight+1)/weight
// among those not skipped, scanning from start (mod len) so that ties rotate.
// It returns -1 if none is eligible.
func pickLeastOutstanding(cs []choice, start int) int {
	best, bestScore := -1, 0.0
	n := len(cs)
	for k := 0; k < n; k++ {
		i := (start + k) % n
		c := cs[i]
		if c.skip || c.weight <= 0 {
			continue
		}
		score := float64(c.inflight+1) / c.weight
		if best < 0 || score < bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// eligible returns the targets that may receive new requests, in routing order:
// the healthy ones; if there are none, every unhealthy one that has been
// healthy before (fail open, as ALB). Initial and draining targets, and targets
// that never passed their health checks, are never eligible: no target gets a
// request before it has passed HealthyThreshold checks.
func eligible(order []*target) (out []*target, failOpen bool) {
	return eligibleAppend(nil, order)
}

// eligibleAppend is eligible appending to out (a buffer of the caller's).
func eligibleAppend(out []*target, order []*target) ([]*target, bool) {
	for _, t := range order {
		if t.state == StateHealthy {
			out = append(out, t)
		}
	}
	if len(out) > 0 {
		return out, false
	}
	for _, t := range order {
		if t.state == StateUnhealthy && t.wasHealthy {
			out = append(out, t)
		}
	}
	return out, len(out) > 0
}

// interleaveZones orders targets as a1, b1, a2, b2, ...: zones sorted by name,
// targets within a zone in the order given.
func interleaveZones(ts []*target) []*target {
	byZone := map[string][]*target{}
	var zones []string
	for _, t := range ts {
		if _, ok := byZone[t.zone]; !ok {
			zones = append(zones, t.zone)
		}
		byZone[t.zone] = append(byZone[t.zone], t)
	}
	slices.Sort(zones)
	out := make([]*target, 0, len(ts))
	for i := 0; len(out) < len(ts); i++ {
		for _, z := range zones {
			if i < len(byZone[z]) {
				out = append(out, byZone[z][i])
			}
		}
	}
	return out
}
