package scaling

import (
	"encoding/json"
	"sync"
	"time"
)

// ActivityKind says what changed the desired capacity.
type ActivityKind string

// The causes of a capacity change.
const (
	// KindTargetTracking: a target tracking policy scaled out or in.
	KindTargetTracking ActivityKind = "target-tracking"
	// KindScheduled: a scheduled action ran.
	KindScheduled ActivityKind = "scheduled"
	// KindBounds: the desired capacity was outside [min, max] and was moved
	// inside.
	KindBounds ActivityKind = "bounds"
)

// Activity is one change of the group's desired capacity with its cause, the
// record `haven fleet activity` lists (AWS: DescribeScalingActivities).
type Activity struct {
	// ID is a sequence number, assigned by the ActivityLog (1, 2, …).
	ID uint64 `json:"id"`
	// At is when the change was decided.
	At   time.Time    `json:"at"`
	Kind ActivityKind `json:"kind"`
	// Source is the policy or scheduled action that caused the change.
	Source string `json:"source,omitempty"`
	// Metric and Value are the alarm's metric and value, for target tracking.
	Metric Metric  `json:"metric,omitempty"`
	Value  float64 `json:"-"`
	From   int     `json:"from"`
	To     int     `json:"to"`
	// Cause is the sentence AWS would print, e.g. "At 2026-11-30T07:03:00Z a
	// target-tracking alarm on CPUUtilization 78.3 > 50 changed the desired
	// capacity from 2 to 4."
	Cause string `json:"cause"`
}

// MarshalJSON writes Value as a number, or omits it when it is NaN.
func (a Activity) MarshalJSON() ([]byte, error) {
	type plain Activity
	var v *float64
	if a.Kind == KindTargetTracking {
		v = finite(a.Value)
	}
	return json.Marshal(struct {
		plain
		Value *float64 `json:"value,omitempty"`
	}{plain(a), v})
}

// DefaultActivityHistory is how many activities an ActivityLog keeps by default.
const DefaultActivityHistory = 1000

// ActivityLog keeps the most recent activities, safe for concurrent use.
type ActivityLog struct {
	mu    sync.Mutex
	limit int
	next  uint64
	items []Activity
}

// NewActivityLog returns a log that keeps the last limit activities
// (DefaultActivityHistory when limit ≤ 0).
func NewActivityLog(limit int) *ActivityLog {
	if limit <= 0 {
		limit = DefaultActivityHistory
	}
	return &ActivityLog{limit: limit}
}

// Add numbers the activities and appends them; it returns them numbered.
func (l *ActivityLog) Add(as ...Activity) []Activity {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Activity, len(as))
	for i, a := range as {
		l.next++
		a.ID = l.next
		out[i] = a
		l.items = append(l.items, a)
	}
	if over := len(l.items) - l.limit; over > 0 {
		l.items = append([]Activity(nil), l.items[over:]...)
	}
	return out
}

// List returns a copy of the kept activities, oldest first.
func (l *ActivityLog) List() []Activity {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Activity(nil), l.items...)
}
