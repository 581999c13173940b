package alarms

import (
	"slices"
	"strings"
)

// Unit is the unit a metric is published in, named as CloudWatch names it.
type Unit string

// Units of the known metrics.
const (
	UnitCount   Unit = "Count"
	UnitSeconds Unit = "Seconds"
	UnitPercent Unit = "Percent"
	UnitNone    Unit = "None"
)

// MetricInfo describes one metric the region publishes for alarms to watch.
type MetricInfo struct {
	// Name is the metric's name, as alarms refer to it (CloudWatch's name
	// where AWS publishes the same quantity).
	Name string
	// Unit is the unit of its samples.
	Unit Unit
	// Tier is the part of the region that publishes it: lb, fleet or db.
	Tier string
	// Help says what one sample is and how often the region publishes it.
	Help string
	// AWS is the CloudWatch metric or metric math that measures the same
	// quantity on AWS; nil when there is none (LocalOnly says why).
	AWS *AWSMetric
	// LocalOnly says why the metric has no CloudWatch counterpart.
	LocalOnly string
}

// AWSMetric is where a metric comes from on AWS: one CloudWatch metric
// (Namespace and Name), or a metric math Expression over Inputs, as the
// Terraform module's alarms.tf writes it.
type AWSMetric struct {
	Namespace string
	Name      string
	// Expression is the metric math expression, when the quantity is
	// computed from several CloudWatch metrics.
	Expression string
	// Inputs are the expression's metric queries.
	Inputs []AWSInput
}

// AWSInput is one metric query of a metric math expression.
type AWSInput struct {
	// ID is the query's id in the expression.
	ID        string
	Namespace string
	Name      string
	// Stat is the statistic CloudWatch computes per period for the input.
	Stat string
}

// The names of the metrics the region publishes.
const (
	MetricHealthyHostCount       = "HealthyHostCount"
	MetricUnHealthyHostCount     = "UnHealthyHostCount"
	MetricRequestCount           = "RequestCount"
	MetricHTTPCodeELB5XXCount    = "HTTPCode_ELB_5XX_Count"
	MetricHTTPCodeTarget5XXCount = "HTTPCode_Target_5XX_Count"
	MetricHTTP5XXPercent         = "HTTPCode_5XX_Percent"
	MetricTargetResponseTime     = "TargetResponseTime"
	MetricGroupInService         = "GroupInServiceInstances"
	MetricGroupDesiredCapacity   = "GroupDesiredCapacity"
	MetricGroupMaxSize           = "GroupMaxSize"
	MetricGroupMinSize           = "GroupMinSize"
	MetricGroupAtMaxSize         = "GroupAtMaxSize"
	MetricDatabaseConnections    = "DatabaseConnections"
	MetricDatabaseFailovers      = "DatabaseFailovers"
	MetricReplicaLag             = "ReplicaLag"
)

const (
	nsELB = "AWS/ApplicationELB"
	nsASG = "AWS/AutoScaling"
	nsRDS = "AWS/RDS"
)

// metrics is the registry: every metric an alarm may watch. The region
// publishes each one into a Store (see docs/alarms.md, "What the region
// publishes").
var metrics = []MetricInfo{
	{Name: MetricHealthyHostCount, Unit: UnitCount, Tier: "lb",
		Help: "targets in service and healthy behind the load balancer, sampled every second",
		AWS:  &AWSMetric{Namespace: nsELB, Name: "HealthyHostCount"}},
	{Name: MetricUnHealthyHostCount, Unit: UnitCount, Tier: "lb",
		Help: "registered targets failing their health checks, sampled every second",
		AWS:  &AWSMetric{Namespace: nsELB, Name: "UnHealthyHostCount"}},
	{Name: MetricRequestCount, Unit: UnitCount, Tier: "lb",
		Help: "requests the load balancer answered: one sample per second, the number answered in that second (Sum over a period is the request count)",
		AWS:  &AWSMetric{Namespace: nsELB, Name: "RequestCount"}},
	{Name: MetricHTTPCodeELB5XXCount, Unit: UnitCount, Tier: "lb",
		Help: "5xx responses the load balancer generated itself (502, 503, 504): one sample per second, the number in that second",
		AWS:  &AWSMetric{Namespace: nsELB, Name: "HTTPCode_ELB_5XX_Count"}},
	{Name: MetricHTTPCodeTarget5XXCount, Unit: UnitCount, Tier: "lb",
		Help: "5xx responses returned by targets: one sample per second, the number in that second",
		AWS:  &AWSMetric{Namespace: nsELB, Name: "HTTPCode_Target_5XX_Count"}},
	{Name: MetricHTTP5XXPercent, Unit: UnitPercent, Tier: "lb",
		Help: "per second, a sample of value 100 with the count of 5xx responses (load balancer's and targets') and a sample of value 0 with the count of the others, so the Average over a period is the percentage of requests answered with 5xx; no request, no sample",
		AWS: &AWSMetric{
			Expression: "100 * (FILL(elb5xx, 0) + FILL(target5xx, 0)) / FILL(requests, 1)",
			Inputs: []AWSInput{
				{ID: "elb5xx", Namespace: nsELB, Name: "HTTPCode_ELB_5XX_Count", Stat: "Sum"},
				{ID: "target5xx", Namespace: nsELB, Name: "HTTPCode_Target_5XX_Count", Stat: "Sum"},
				{ID: "requests", Namespace: nsELB, Name: "RequestCount", Stat: "Sum"},
			},
		}},
	{Name: MetricTargetResponseTime, Unit: UnitSeconds, Tier: "lb",
		Help: "seconds from the request leaving the load balancer to the target's response headers: per second, one sample per latency histogram bucket (value: the bucket's upper bound, count: requests in it)",
		AWS:  &AWSMetric{Namespace: nsELB, Name: "TargetResponseTime"}},
	{Name: MetricGroupInService, Unit: UnitCount, Tier: "fleet",
		Help: "instances in service in the fleet, sampled every second",
		AWS:  &AWSMetric{Namespace: nsASG, Name: "GroupInServiceInstances"}},
	{Name: MetricGroupDesiredCapacity, Unit: UnitCount, Tier: "fleet",
		Help: "the fleet's desired capacity, sampled every second",
		AWS:  &AWSMetric{Namespace: nsASG, Name: "GroupDesiredCapacity"}},
	{Name: MetricGroupMaxSize, Unit: UnitCount, Tier: "fleet",
		Help: "the fleet's maximum size, sampled every second",
		AWS:  &AWSMetric{Namespace: nsASG, Name: "GroupMaxSize"}},
	{Name: MetricGroupMinSize, Unit: UnitCount, Tier: "fleet",
		Help: "the fleet's minimum size, sampled every second",
		AWS:  &AWSMetric{Namespace: nsASG, Name: "GroupMinSize"}},
	{Name: MetricGroupAtMaxSize, Unit: UnitNone, Tier: "fleet",
		Help: "1 while the instances in service are at the fleet's maximum size, else 0, sampled every second (its Minimum over a period is 1 only if the fleet sat at max for the whole period)",
		AWS: &AWSMetric{
			Expression: "IF(inservice >= maxsize, 1, 0)",
			Inputs: []AWSInput{
				{ID: "inservice", Namespace: nsASG, Name: "GroupInServiceInstances", Stat: "Average"},
				{ID: "maxsize", Namespace: nsASG, Name: "GroupMaxSize", Stat: "Average"},
			},
		}},
	{Name: MetricDatabaseConnections, Unit: UnitCount, Tier: "db",
		Help: "client connections to the primary (pg_stat_activity client backends), sampled every probe",
		AWS:  &AWSMetric{Namespace: nsRDS, Name: "DatabaseConnections"}},
	{Name: MetricDatabaseFailovers, Unit: UnitCount, Tier: "db",
		Help:      "failovers and switchovers completed: every probe a sample of the number completed since the last one (0 when none), so Sum over a period counts them",
		LocalOnly: "RDS publishes no failover metric: it emits the RDS event category \"failover\", which an aws_db_event_subscription sends to the alarm topic"},
	{Name: MetricReplicaLag, Unit: UnitSeconds, Tier: "db",
		Help:      "seconds the synchronous standby's replay trails the primary (pg_stat_replication replay_lag), sampled every probe; no sample while no standby streams",
		LocalOnly: "a Multi-AZ DB instance's standby is not visible to CloudWatch: RDS's ReplicaLag metric exists only for read replicas"},
}

// Metrics returns the registry of metrics alarms may watch, sorted by name.
func Metrics() []MetricInfo {
	out := slices.Clone(metrics)
	slices.SortFunc(out, func(a, b MetricInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// LookupMetric returns the registry entry of a metric.
func LookupMetric(name string) (MetricInfo, bool) {
	for _, m := range metrics {
		if m.Name == name {
			return m, true
		}
	}
	return MetricInfo{}, false
}

func metricNames() string {
	var names []string
	for _, m := range Metrics() {
		names = append(names, m.Name)
	}
	return strings.Join(names, ", ")
}
