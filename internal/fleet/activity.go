package fleet

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// ActivityCount is how many times the fleet did one kind of activity in one
// zone for one cause, since it started.
type ActivityCount struct {
	// Kind is launch, launch-failed or terminate.
	Kind string `json:"kind"`
	Zone string `json:"zone"`
	// Cause is a short, bounded word for why: capacity, rebalance (launch);
	// scale-in, unhealthy, rebalance, exited, terminated-by-request,
	// fleet-stopped (terminate); error (launch-failed).
	Cause string `json:"cause"`
	Count uint64 `json:"count"`
}

// activity counts launches and terminations; Activity reads its published
// snapshot.
type activity struct {
	mu     sync.Mutex
	counts map[ActivityCount]uint64 // keyed with Count 0
	snap   atomic.Pointer[[]ActivityCount]
}

// cause turns a free-form reason ("exited: signal: killed", "fleet
// stopped") into a bounded label: the text before the first colon, dashed.
func cause(reason string) string {
	c, _, _ := strings.Cut(reason, ":")
	c = strings.ReplaceAll(strings.TrimSpace(strings.ToLower(c)), " ", "-")
	if c == "" {
		return "unknown"
	}
	return c
}

// count records e if it is a launch, a failed launch or a termination.
func (a *activity) count(e Event) {
	var k ActivityCount
	switch e.Type {
	case EventLaunch, EventTerminate:
		k = ActivityCount{Kind: e.Type, Zone: e.Zone, Cause: cause(e.Reason)}
	case EventLaunchFailed:
		k = ActivityCount{Kind: e.Type, Zone: e.Zone, Cause: "error"}
	default:
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.counts == nil {
		a.counts = map[ActivityCount]uint64{}
	}
	a.counts[k]++
	out := make([]ActivityCount, 0, len(a.counts))
	for k, n := range a.counts {
		k.Count = n
		out = append(out, k)
	}
	slices.SortFunc(out, func(x, y ActivityCount) int {
		return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Zone, y.Zone), cmp.Compare(x.Cause, y.Cause))
	})
	a.snap.Store(&out)
}

// Activity returns how many launches, failed launches and terminations the
// fleet made since it started, by zone and cause, sorted. It reads a
// published snapshot: it never waits on the fleet.
func (f *Fleet) Activity() []ActivityCount {
	if p := f.activity.snap.Load(); p != nil {
		return slices.Clone(*p)
	}
	return []ActivityCount{}
}
