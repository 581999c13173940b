// Package alarms evaluates CloudWatch-style metric alarms (M out of N datapoints, treat-missing-data, OK/ALARM/INSUFFICIENT_DATA) as a pure function, and runs them in an engine that persists state and delivers webhook and ServiceNow incident actions exactly once per transition.
package alarms

// State is an alarm's state.
type State string

// The three states of a CloudWatch alarm.
const (
	// StateOK: the metric is within the threshold.
	StateOK State = "OK"
	// StateAlarm: the metric breached the threshold for enough datapoints.
	StateAlarm State = "ALARM"
	// StateInsufficientData: the alarm has just started, or there is not
	// enough data to decide.
	StateInsufficientData State = "INSUFFICIENT_DATA"
)

// InitialReason is the reason of every new alarm, as CloudWatch words it.
const InitialReason = "Unchecked: Initial alarm creation"
