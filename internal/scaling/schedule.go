package scaling

import (
	"sort"
	"time"
)

// Run is one upcoming run of a scheduled action, as `haven fleet schedule`
// lists it.
type Run struct {
	Action string    `json:"action"`
	At     time.Time `json:"at"`
	// Min, Max and Desired are what the run will set (nil: unchanged).
	Min     *int `json:"min,omitempty"`
	Max     *int `json:"max,omitempty"`
	Desired *int `json:"desired,omitempty"`
}

// NextRuns returns the next n runs (n ≥ 1) of every scheduled action after
// now, within each action's start and end dates, merged in time order.
func (c Config) NextRuns(now time.Time, n int) []Run {
	if n < 1 {
		n = 1
	}
	var runs []Run
	for _, a := range c.Scheduled {
		if a.Schedule == nil {
			continue
		}
		t := now
		if !a.Start.IsZero() && a.Start.Add(-time.Nanosecond).After(t) {
			t = a.Start.Add(-time.Nanosecond)
		}
		for i := 0; i < n; i++ {
			next := a.Schedule.Next(t)
			if next.IsZero() || !next.After(t) || (!a.End.IsZero() && next.After(a.End)) {
				break
			}
			runs = append(runs, Run{Action: a.Name, At: next, Min: a.Min, Max: a.Max, Desired: a.Desired})
			t = next
		}
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].At.Before(runs[j].At) })
	return runs
}

// Once is a schedule with a single run at a given moment: a one-time
// scheduled action (AWS: PutScheduledUpdateGroupAction with a StartTime and
// no Recurrence).
type Once time.Time

// Next returns the moment if t is before it, and the zero time otherwise.
func (o Once) Next(t time.Time) time.Time {
	if at := time.Time(o); t.Before(at) {
		return at
	}
	return time.Time{}
}
