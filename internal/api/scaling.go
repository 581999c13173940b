package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// ScalingActivity is one change of the fleet's desired capacity with its
// cause (`haven fleet activity`; AWS: DescribeScalingActivities).
type ScalingActivity struct {
	ID uint64    `json:"id"`
	At time.Time `json:"at"`
	// Kind is target-tracking, scheduled or bounds.
	Kind string `json:"kind"`
	// Source is the policy or scheduled action that caused it.
	Source string `json:"source,omitempty"`
	// Metric and Value are the alarm's metric and value (target tracking).
	Metric string   `json:"metric,omitempty"`
	Value  *float64 `json:"value,omitempty"`
	From   int      `json:"from"`
	To     int      `json:"to"`
	// Cause is the sentence AWS would print.
	Cause string `json:"cause"`
}

// ScheduledRun is one upcoming run of a scheduled action.
type ScheduledRun struct {
	Action  string    `json:"action"`
	At      time.Time `json:"at"`
	Min     *int      `json:"min,omitempty"`
	Max     *int      `json:"max,omitempty"`
	Desired *int      `json:"desired,omitempty"`
}

// FleetSchedule is the scheduled actions and their next runs (`haven fleet
// schedule`).
type FleetSchedule struct {
	// Suspended is true while scaling is suspended: nothing runs.
	Suspended bool `json:"suspended"`
	// Actions are the scheduled actions' names.
	Actions []string `json:"actions"`
	// Runs are the next runs, in time order.
	Runs []ScheduledRun `json:"runs"`
}

// ScheduledActionRequest puts a scheduled action (PUT
// /v1/fleet/scheduled-actions/{name}; AWS: PutScheduledUpdateGroupAction).
// Without Recurrence it runs once, at StartTime.
type ScheduledActionRequest struct {
	// Recurrence is a five-field cron expression, evaluated in TimeZone.
	// Empty: a one-time action at StartTime.
	Recurrence string `json:"recurrence,omitempty"`
	// TimeZone is an IANA zone for Recurrence. Default UTC.
	TimeZone string `json:"time_zone,omitempty"`
	// StartTime is the one-time action's moment, or the first moment a
	// recurring one may run.
	StartTime time.Time `json:"start_time,omitzero"`
	// EndTime is the last moment a recurring action may run.
	EndTime time.Time `json:"end_time,omitzero"`
	// Min, Max and Desired are what the action sets; at least one.
	Min     *int `json:"min,omitempty"`
	Max     *int `json:"max,omitempty"`
	Desired *int `json:"desired,omitempty"`
}

// ScalingPolicy is one target tracking policy as the scaler runs it.
type ScalingPolicy struct {
	Name   string  `json:"name"`
	Metric string  `json:"metric"`
	Target float64 `json:"target"`
}

// ScalingVerdict is one policy's answer in the last decision.
type ScalingVerdict struct {
	Policy  string   `json:"policy"`
	Kind    string   `json:"kind"`
	Desired int      `json:"desired"`
	Value   *float64 `json:"value,omitempty"`
	Reason  string   `json:"reason"`
}

// ScalingStatus is the scaler at a glance (GET /v1/fleet/scaling).
type ScalingStatus struct {
	// Suspended is true while scaling is suspended.
	Suspended bool `json:"suspended"`
	// PeriodMS is the metric period and the time between decisions;
	// WarmupMS the instance warmup; both after time_scale.
	PeriodMS  int64   `json:"period_ms"`
	WarmupMS  int64   `json:"warmup_ms"`
	TimeScale float64 `json:"time_scale"`
	// CPUAccounting is false when instances' CPU cannot be read: CPU
	// policies are then left out and the fleet scales on request count.
	CPUAccounting bool `json:"cpu_accounting"`
	// Notes say what is not acted on, and why.
	Notes    []string        `json:"notes,omitempty"`
	Policies []ScalingPolicy `json:"policies"`
	// Min, Max and Desired are the capacity the scaler last decided.
	Min     int `json:"min"`
	Max     int `json:"max"`
	Desired int `json:"desired"`
	// LastReason is the last decision in one line, with each policy's verdict.
	LastReason string           `json:"last_reason,omitempty"`
	Verdicts   []ScalingVerdict `json:"verdicts,omitempty"`
	Failures   int              `json:"failures"`
	LastError  string           `json:"last_error,omitempty"`
	// AvgCPU is the in-service instances' average CPU utilisation over the
	// last second, in percent of their quota (absent when unknown).
	AvgCPU *float64 `json:"avg_cpu,omitempty"`
}

// ScalingSuspendRequest suspends or resumes scaling (POST /v1/fleet/scaling).
type ScalingSuspendRequest struct {
	Suspended bool `json:"suspended"`
}

// FleetActivity lists the scaling activities, oldest first.
func (c *Client) FleetActivity(ctx context.Context) ([]ScalingActivity, error) {
	var out []ScalingActivity
	err := c.do(ctx, http.MethodGet, "/v1/fleet/activity", nil, &out)
	return out, err
}

// FleetSchedule lists the scheduled actions' next runs.
func (c *Client) FleetSchedule(ctx context.Context) (FleetSchedule, error) {
	var out FleetSchedule
	err := c.do(ctx, http.MethodGet, "/v1/fleet/schedule", nil, &out)
	return out, err
}

// PutScheduledAction adds or replaces a scheduled action.
func (c *Client) PutScheduledAction(ctx context.Context, name string, r ScheduledActionRequest) error {
	return c.do(ctx, http.MethodPut, "/v1/fleet/scheduled-actions/"+url.PathEscape(name), r, nil)
}

// DeleteScheduledAction removes a scheduled action.
func (c *Client) DeleteScheduledAction(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/fleet/scheduled-actions/"+url.PathEscape(name), nil, nil)
}

// Scaling returns the scaler's status.
func (c *Client) Scaling(ctx context.Context) (ScalingStatus, error) {
	var out ScalingStatus
	err := c.do(ctx, http.MethodGet, "/v1/fleet/scaling", nil, &out)
	return out, err
}

// SetScalingSuspended suspends (true) or resumes (false) scaling.
func (c *Client) SetScalingSuspended(ctx context.Context, suspended bool) error {
	return c.do(ctx, http.MethodPost, "/v1/fleet/scaling", ScalingSuspendRequest{Suspended: suspended}, nil)
}
