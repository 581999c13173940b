// Package scaling decides the fleet's capacity as an EC2 Auto Scaling group does: target tracking, scheduled actions and min/max bounds, as a pure decision function with a separate loop.
package scaling

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Metric names a fleet metric a target tracking policy can track.
type Metric string

// The metrics the scaler reads, named as CloudWatch names them.
const (
	// CPUUtilization is the average CPU utilisation of the group's
	// in-service instances past warmup, in percent of each instance's CPU
	// quota (AWS: ASGAverageCPUUtilization).
	CPUUtilization Metric = "CPUUtilization"
	// RequestCountPerTarget is the number of requests the load balancer
	// completed per in-service instance past warmup, per minute
	// (AWS: ALBRequestCountPerTarget, statistic Sum over one minute).
	RequestCountPerTarget Metric = "RequestCountPerTarget"
)

// Defaults applied by Config.withDefaults; each Config field documents its own.
const (
	DefaultPeriod             = 60 * time.Second
	DefaultScaleOutDatapoints = 3
	DefaultScaleInDatapoints  = 15
	DefaultTolerance          = 0.10
	// maxScheduleSteps caps how many occurrences of one scheduled action a
	// single decision walks through (one per minute for about 69 days).
	maxScheduleSteps = 100_000
)

// Policy is one target tracking policy.
type Policy struct {
	// Name identifies the policy in reasons and activities, e.g. "cpu-50".
	// Required, unique.
	Name string
	// Metric is the metric to track. Required.
	Metric Metric
	// Target is the value to hold the metric at: a percentage in (0, 100]
	// for CPUUtilization, requests per target per minute (> 0) for
	// RequestCountPerTarget. Required.
	Target float64
	// DisableScaleIn keeps the policy from ever removing capacity (AWS:
	// DisableScaleIn). Default false.
	DisableScaleIn bool
}

// ScheduledAction sets the group's min, max or desired capacity at the times
// its schedule names (AWS: PutScheduledUpdateGroupAction).
type ScheduledAction struct {
	// Name identifies the action. Required, unique.
	Name string
	// Schedule gives the action's run times, in its own time zone (a parsed
	// cron expression such as the spec's Cron, or robfig/cron's
	// SpecSchedule). Required.
	Schedule Schedule
	// Start, if set, is the first moment the action may run (AWS: StartTime).
	// Default: no start bound.
	Start time.Time
	// End, if set, is the last moment the action may run (AWS: EndTime).
	// Default: no end bound.
	End time.Time
	// Min, Max and Desired are the new values; at least one is set.
	Min, Max, Desired *int
}

// Schedule is a recurring schedule. Next returns the first run strictly after
// t, or the zero time when there is none.
type Schedule interface {
	Next(t time.Time) time.Time
}

// Config holds the group's scaling policies and scheduled actions. The zero
// value of each numeric field selects its default.
type Config struct {
	// Policies are the target tracking policies. Default none: capacity
	// changes only by scheduled actions and by hand.
	Policies []Policy
	// Scheduled are the scheduled actions. Default none.
	Scheduled []ScheduledAction
	// Period is the length of one metric datapoint. Default 60s (AWS: 60 s;
	// 10 s or 30 s with high-resolution metrics). The local region divides
	// it by its time scale.
	Period time.Duration
	// ScaleOutDatapoints is how many consecutive datapoints above the target
	// (beyond the tolerance) make a policy scale out. Default 3 (AWS's
	// AlarmHigh: 3 of 3).
	ScaleOutDatapoints int
	// ScaleInDatapoints is how many consecutive datapoints below the target
	// (beyond the tolerance), all taken since the last capacity change, make
	// a policy scale in. Default 15 (AWS's AlarmLow: 15 of 15).
	ScaleInDatapoints int
	// Tolerance is the fraction around the target within which a policy
	// holds: it scales out above Target×(1+Tolerance) and in below
	// Target×(1−Tolerance). Default 0.10. A negative value means 0.
	Tolerance float64
}

func (c Config) withDefaults() Config {
	if c.Period <= 0 {
		c.Period = DefaultPeriod
	}
	if c.ScaleOutDatapoints <= 0 {
		c.ScaleOutDatapoints = DefaultScaleOutDatapoints
	}
	if c.ScaleInDatapoints <= 0 {
		c.ScaleInDatapoints = DefaultScaleInDatapoints
	}
	switch {
	case c.Tolerance == 0:
		c.Tolerance = DefaultTolerance
	case c.Tolerance < 0:
		c.Tolerance = 0
	}
	return c
}

// Validate checks the configuration and returns every problem found, each
// naming the field.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Period < 0 {
		add("period", "must be ≥ 0 (0 selects %s), got %s", DefaultPeriod, c.Period)
	}
	if c.ScaleOutDatapoints < 0 || c.ScaleInDatapoints < 0 {
		add("datapoints", "must be ≥ 0 (0 selects the default), got out %d, in %d", c.ScaleOutDatapoints, c.ScaleInDatapoints)
	}
	if math.IsNaN(c.Tolerance) || c.Tolerance >= 1 {
		add("tolerance", "must be a fraction below 1, got %g", c.Tolerance)
	}
	names := map[string]bool{}
	for i, p := range c.Policies {
		f := fmt.Sprintf("policies[%d]", i)
		if p.Name == "" {
			add(f+".name", "must be set")
		} else if names[p.Name] {
			add(f+".name", "%q is used twice", p.Name)
		}
		names[p.Name] = true
		switch p.Metric {
		case CPUUtilization:
			if !(p.Target > 0 && p.Target <= 100) {
				add(f+".target", "must be a CPU percentage above 0 and at most 100, got %g", p.Target)
			}
		case RequestCountPerTarget:
			if !(p.Target > 0) || math.IsInf(p.Target, 0) {
				add(f+".target", "must be > 0 requests per target per minute, got %g", p.Target)
			}
		default:
			add(f+".metric", "must be %s or %s, got %q", CPUUtilization, RequestCountPerTarget, p.Metric)
		}
	}
	for i, a := range c.Scheduled {
		f := fmt.Sprintf("scheduled[%d]", i)
		if a.Name == "" {
			add(f+".name", "must be set")
		} else if names[a.Name] {
			add(f+".name", "%q is used twice", a.Name)
		}
		names[a.Name] = true
		if a.Schedule == nil {
			add(f+".schedule", "must be set")
		}
		if a.Min == nil && a.Max == nil && a.Desired == nil {
			add(f, "must set at least one of min, max, desired")
		}
		for _, v := range []struct {
			n string
			p *int
		}{{"min", a.Min}, {"max", a.Max}, {"desired", a.Desired}} {
			if v.p != nil && *v.p < 0 {
				add(f+"."+v.n, "must be ≥ 0, got %d", *v.p)
			}
		}
		if a.Min != nil && a.Max != nil && *a.Max < *a.Min {
			add(f+".max", "must be ≥ min (%d), got %d", *a.Min, *a.Max)
		}
		if a.Desired != nil && a.Min != nil && *a.Desired < *a.Min {
			add(f+".desired", "must be ≥ min (%d), got %d", *a.Min, *a.Desired)
		}
		if a.Desired != nil && a.Max != nil && *a.Desired > *a.Max {
			add(f+".desired", "must be ≤ max (%d), got %d", *a.Max, *a.Desired)
		}
		if !a.Start.IsZero() && !a.End.IsZero() && !a.End.After(a.Start) {
			add(f+".end", "must be after start (%s), got %s", a.Start.UTC().Format(time.RFC3339), a.End.UTC().Format(time.RFC3339))
		}
	}
	return errors.Join(errs...)
}

// Without returns the configuration without the target tracking policies
// on metric m, and the names of those it left out. The region uses it when
// there is no CPU accounting: a CPU policy would never have data, and a
// policy without data never agrees to scale in, so no other policy could.
func (c Config) Without(m Metric) (Config, []string) {
	var keep []Policy
	var dropped []string
	for _, p := range c.Policies {
		if p.Metric == m {
			dropped = append(dropped, p.Name)
			continue
		}
		keep = append(keep, p)
	}
	c.Policies = keep
	return c, dropped
}
