package lb

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds of the per-target latency histogram's
// buckets (TargetStatus.Latency); the last bucket has no upper bound.
var LatencyBounds = []time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 500 * time.Millisecond,
	750 * time.Millisecond, time.Second, 1500 * time.Millisecond, 2 * time.Second,
	3 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
}

// targetCounters count the responses a target produced (its own or the
// LB's 502/504 for it) and their latency, for rollouts that compare
// versions. Lock-free: one atomic add per field per request.
type targetCounters struct {
	requests, r5xx atomic.Uint64
	latency        [17]atomic.Uint64 // len(LatencyBounds)+1
}

func (c *targetCounters) record(status int, d time.Duration) {
	c.requests.Add(1)
	if status >= 500 {
		c.r5xx.Add(1)
	}
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	c.latency[i].Add(1)
}

// fill copies the counters into s.
func (c *targetCounters) fill(s *TargetStatus) {
	s.Requests, s.Responses5xx = c.requests.Load(), c.r5xx.Load()
	s.Latency = make([]uint64, len(c.latency))
	for i := range c.latency {
		s.Latency[i] = c.latency[i].Load()
	}
}
