package alarms

import (
	"errors"
	"fmt"
	"time"
)

// Params sets the thresholds of the default alarms. The zero value of each
// threshold selects its default, which is the Terraform module's variable
// default where AWS has the same alarm.
type Params struct {
	// FleetMin is the fleet's minimum size (spec fleet.min; AWS var.min_size):
	// healthy-hosts-below-min alarms below it (with 0 it never does, as
	// on AWS). ≥ 0.
	FleetMin int
	// HTTP5XXPercent: alb-5xx-rate alarms above this percentage of requests
	// answered with 5xx. Default 5 (AWS var.alarm_5xx_rate_percent).
	HTTP5XXPercent float64
	// P99LatencySeconds: target-p99-latency alarms above this p99. Default 1
	// (AWS var.alarm_p99_latency_seconds).
	P99LatencySeconds float64
	// DBConnections: db-connections alarms above this many connections.
	// Default 100 (AWS var.alarm_db_connections; PostgreSQL's
	// max_connections is 100 too).
	DBConnections float64
	// ReplicaLagSeconds: db-replica-lag alarms above this replay lag.
	// Default 10 (local only).
	ReplicaLagSeconds float64
	// Actions are the action names every default alarm runs on ALARM and on
	// OK, as alarms.tf sends both to the alarm topic. Default none.
	Actions []string
}

// The defaults of Params.
const (
	DefaultHTTP5XXPercent    = 5
	DefaultP99LatencySeconds = 1
	DefaultDBConnections     = 100
	DefaultReplicaLagSeconds = 10
)

// The names of the default alarms.
const (
	AlarmHealthyHosts = "healthy-hosts-below-min"
	AlarmHTTP5XXRate  = "alb-5xx-rate"
	AlarmP99Latency   = "target-p99-latency"
	AlarmDBFailover   = "db-failover"
	AlarmReplicaLag   = "db-replica-lag"
	AlarmDBConns      = "db-connections"
	AlarmFleetAtMax   = "asg-at-max"
)

// RunbookPath returns the repository path of an alarm's runbook.
func RunbookPath(name string) string { return "docs/runbooks/" + name + ".md" }

// DefaultDefinitions returns the seed's alarms, the set the Terraform
// module's alarms.tf creates on AWS (the parity test holds them together),
// in AWS's units: the local region divides periods by its time scale.
func DefaultDefinitions(p Params) ([]Definition, error) {
	if p.FleetMin < 0 {
		return nil, fmt.Errorf("default alarms: fleet_min: must be ≥ 0 (fleet.min), got %d", p.FleetMin)
	}
	for _, v := range []struct {
		name string
		p    *float64
		def  float64
	}{{"http_5xx_percent", &p.HTTP5XXPercent, DefaultHTTP5XXPercent}, {"p99_latency_seconds", &p.P99LatencySeconds, DefaultP99LatencySeconds},
		{"db_connections", &p.DBConnections, DefaultDBConnections}, {"replica_lag_seconds", &p.ReplicaLagSeconds, DefaultReplicaLagSeconds}} {
		if *v.p < 0 {
			return nil, fmt.Errorf("default alarms: %s: must be > 0 (0 selects %g), got %g", v.name, v.def, *v.p)
		}
		if *v.p == 0 {
			*v.p = v.def
		}
	}
	defs := []Definition{
		{
			Name:        AlarmHealthyHosts,
			Description: fmt.Sprintf("Fewer healthy targets behind the load balancer than the fleet minimum (%d) for 3 minutes.", p.FleetMin),
			Metric:      MetricHealthyHostCount, Statistic: Minimum, Period: time.Minute,
			EvaluationPeriods: 3, Threshold: float64(p.FleetMin), Comparison: LessThanThreshold,
			// No datapoint means the balancer itself is gone: breaching.
			TreatMissingData: Breaching,
			AWS:              &AWSParity{Resource: "healthy_hosts", ThresholdVar: "min_size"},
		},
		{
			Name:        AlarmHTTP5XXRate,
			Description: fmt.Sprintf("More than %g%% of requests answered with 5xx (load balancer or targets) in 2 of 3 minutes.", p.HTTP5XXPercent),
			Metric:      MetricHTTP5XXPercent, Statistic: Average, Period: time.Minute,
			EvaluationPeriods: 3, DatapointsToAlarm: 2, Threshold: p.HTTP5XXPercent, Comparison: GreaterThanThreshold,
			// No request, no error.
			TreatMissingData: NotBreaching,
			AWS:              &AWSParity{Resource: "alb_5xx_rate", ThresholdVar: "alarm_5xx_rate_percent"},
		},
		{
			Name:        AlarmP99Latency,
			Description: fmt.Sprintf("Target p99 response time above %g s in 3 of 5 minutes.", p.P99LatencySeconds),
			Metric:      MetricTargetResponseTime, Statistic: "p99", Period: time.Minute,
			EvaluationPeriods: 5, DatapointsToAlarm: 3, Threshold: p.P99LatencySeconds, Comparison: GreaterThanThreshold,
			TreatMissingData: NotBreaching,
			AWS:              &AWSParity{Resource: "target_p99_latency", ThresholdVar: "alarm_p99_latency_seconds"},
		},
		{
			Name:        AlarmDBFailover,
			Description: "The database failed over (or was switched over) to its standby in the last minute.",
			Metric:      MetricDatabaseFailovers, Statistic: Sum, Period: time.Minute,
			EvaluationPeriods: 1, Threshold: 0, Comparison: GreaterThanThreshold,
			// The controller publishes 0 every probe; no datapoint means no
			// failover was seen.
			TreatMissingData: NotBreaching,
			AWS: &AWSParity{Instead: "RDS publishes no failover metric: on AWS a failover is an RDS event of category \"failover\", which the module's aws_db_event_subscription delivers to the alarm topic",
				EventCategories: []string{"failover"}},
		},
		{
			Name:        AlarmReplicaLag,
			Description: fmt.Sprintf("The synchronous standby's replay lag stayed above %g s for 3 minutes.", p.ReplicaLagSeconds),
			Metric:      MetricReplicaLag, Statistic: Maximum, Period: time.Minute,
			EvaluationPeriods: 3, Threshold: p.ReplicaLagSeconds, Comparison: GreaterThanThreshold,
			// No standby streaming: INSUFFICIENT_DATA, not a guess.
			TreatMissingData: Missing,
			AWS: &AWSParity{Instead: "a Multi-AZ DB instance's standby is invisible to CloudWatch (ReplicaLag exists only for read replicas); RDS keeps it synchronous and reports trouble through the \"availability\" and \"failure\" event categories, which the module's aws_db_event_subscription delivers to the alarm topic",
				EventCategories: []string{"availability", "failure"}},
		},
		{
			Name:        AlarmDBConns,
			Description: fmt.Sprintf("More than %g database connections for 5 minutes.", p.DBConnections),
			Metric:      MetricDatabaseConnections, Statistic: Maximum, Period: time.Minute,
			EvaluationPeriods: 5, Threshold: p.DBConnections, Comparison: GreaterThanThreshold,
			TreatMissingData: Missing,
			AWS:              &AWSParity{Resource: "db_connections", ThresholdVar: "alarm_db_connections"},
		},
		{
			Name:        AlarmFleetAtMax,
			Description: "The fleet has sat at its maximum size for 15 minutes: raise max or investigate.",
			Metric:      MetricGroupAtMaxSize, Statistic: Minimum, Period: 5 * time.Minute,
			EvaluationPeriods: 3, Threshold: 1, Comparison: GreaterThanOrEqualToThreshold,
			TreatMissingData: NotBreaching,
			AWS:              &AWSParity{Resource: "asg_at_max"},
		},
	}
	for i := range defs {
		defs[i].Runbook = RunbookPath(defs[i].Name)
		defs[i].AlarmActions = append([]string(nil), p.Actions...)
		defs[i].OKActions = append([]string(nil), p.Actions...)
	}
	if err := ValidateAll(defs, nil); err != nil {
		return nil, errors.Join(errors.New("default alarms"), err)
	}
	return defs, nil
}
