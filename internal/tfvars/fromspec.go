package tfvars

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/haven-platform/haven/internal/parity"
	"github.com/haven-platform/haven/internal/spec"
)

// GenerateSpec is `haven aws tfvars`: it maps a validated spec onto the
// module's variables with FromSpec and Generate, and names spec fields in
// every warning and problem (e.g. "app.health_check.interval"). Beyond
// Generate's clamping, it warns about each field the spec sets that the
// module cannot deploy yet (parity.NotOnAWS). Together with the fields
// parity marks exported or local-only, nothing in the spec is dropped
// without a word.
func GenerateSpec(s spec.Spec) (Vars, []Warning, error) {
	v, ws, err := Generate(FromSpec(s))
	for i := range ws {
		ws[i].Field = SpecField(s, ws[i].Field)
	}
	for _, u := range parity.AWSWarnings(s) {
		ws = append(ws, Warning{Field: u.Field, From: u.Value, Reason: u.Reason})
	}
	var e *Error
	if errors.As(err, &e) {
		for i := range e.Problems {
			e.Problems[i].Field = SpecField(s, e.Problems[i].Field)
		}
	}
	return v, ws, err
}

// FromSpec maps a validated spec onto the module's input. The same numbers
// drive `haven up`, so what a team tests locally is what it deploys.
func FromSpec(s spec.Spec) Input {
	hc := s.App.HealthCheck
	in := Input{
		Name: s.Name, Region: s.AWS.Region, AZs: s.AWS.AvailabilityZones,
		InstanceType: s.AWS.InstanceType, DBInstanceClass: s.AWS.DBInstanceClass,
		AppPort: s.App.Port,
		HealthCheck: HealthCheck{
			Path: hc.Path, Interval: hc.Interval.D(), Timeout: hc.Timeout.D(),
			Healthy: hc.Healthy, Unhealthy: hc.Unhealthy, Matcher: hc.Matcher,
		},
		Min: s.Fleet.Min, Max: s.Fleet.Max, Desired: s.Fleet.Desired, GracePeriod: s.Fleet.GracePeriod.D(),
		DeregistrationDelay: s.LoadBalancer.DeregistrationDelay.D(), SlowStart: s.LoadBalancer.SlowStart.D(),
		Algorithm: s.LoadBalancer.Algorithm,
		MultiAZ:   s.Database.MultiAZ, BackupRetention: s.Database.BackupRetention.D(),
		BackupWindow: s.AWS.BackupWindow, Rotation: s.Secrets.DB.Rotation.D(),
		MaintenanceWindow: s.AWS.MaintenanceWindow, RotationStrategy: s.Secrets.DB.Strategy,
		LogRetention:    s.AWS.LogRetention.D(),
		Alarm5XXPercent: s.Alarms.Thresholds.HTTP5XXPercent, AlarmP99LatencySeconds: s.Alarms.Thresholds.P99LatencySeconds,
		AlarmDBConnections: s.Alarms.Thresholds.DBConnections,
		AppEnv:             s.App.Env, IdleTimeout: s.LoadBalancer.IdleTimeout.D(),
		HealthCheckType: s.Fleet.HealthCheckType, DBName: s.Database.Name, DBUser: s.Database.User,
	}
	// The module serves static_paths from its one bucket; a behaviour to
	// the load balancer is the default behaviour's business there.
	for _, b := range s.Edge.Behaviors {
		if b.Target == spec.TargetLB {
			continue
		}
		in.StaticPaths = append(in.StaticPaths, b.Path)
		if b.Signed {
			in.SignedPaths = append(in.SignedPaths, b.Path)
		}
	}
	if len(in.AZs) == 0 {
		in.AZs = AZNames(s.AWS.Region, s.Zones)
	}
	ir := s.Fleet.InstanceRefresh
	in.InstanceRefresh = &InstanceRefresh{
		MinHealthy: ir.MinHealthyPercentage, MaxHealthy: ir.MaxHealthyPercentage,
		Checkpoints: append([]int(nil), ir.Checkpoints...), Bake: ir.Bake.D(), Warmup: ir.InstanceWarmup.D(),
		AutoRollback: ir.AutoRollback, RollbackOn: append([]string(nil), ir.RollbackOn...),
	}
	for _, g := range s.SecurityGroups {
		for _, d := range []struct {
			dir   string
			rules []spec.SecurityGroupRule
		}{{"ingress", g.Ingress}, {"egress", g.Egress}} {
			dir := d.dir
			for _, r := range d.rules {
				in.SecurityGroupRules = append(in.SecurityGroupRules, SecurityGroupRule{Group: g.Name, Direction: dir, Protocol: r.Protocol,
					FromPort: r.Port, ToPort: r.ToPort, PeerGroup: r.Group, CIDR: r.CIDR, Description: r.Description})
			}
		}
	}
	if len(s.App.Command) > 0 {
		// The program is the uploaded artifact; a program alone runs with
		// no arguments, never with the module's default ["serve"].
		in.AppCommand = append([]string{}, s.App.Command[1:]...)
	}
	for _, p := range s.Fleet.Scaling {
		switch {
		case p.TargetTracking != "":
			in.TargetTracking = append(in.TargetTracking, TargetTracking{Metric: p.TargetTracking, Target: p.Target, Warmup: p.Warmup.D()})
		case p.Scheduled != "":
			in.Scheduled = append(in.Scheduled, Scheduled{Name: p.Scheduled, Cron: p.Cron, TimeZone: p.TimeZone, Min: p.Min, Max: p.Max, Desired: p.Desired,
				Start: p.Start.T(), End: p.End.T()})
		}
	}
	return in
}

// specFields maps Input field paths onto the spec fields they come from.
var specFields = map[string]string{
	"Name": "name", "Region": "aws.region", "AZs": "aws.availability_zones",
	"InstanceType": "aws.instance_type", "DBInstanceClass": "aws.db_instance_class",
	"AppPort": "app.port", "AppCommand": "app.command",
	"HealthCheck.Path": "app.health_check.path", "HealthCheck.Interval": "app.health_check.interval",
	"HealthCheck.Timeout": "app.health_check.timeout", "HealthCheck.Healthy": "app.health_check.healthy",
	"HealthCheck.Unhealthy": "app.health_check.unhealthy", "HealthCheck.Matcher": "app.health_check.matcher",
	"Min": "fleet.min", "Max": "fleet.max", "Desired": "fleet.desired", "GracePeriod": "fleet.grace_period",
	"DeregistrationDelay": "load_balancer.deregistration_delay", "SlowStart": "load_balancer.slow_start",
	"Algorithm": "load_balancer.algorithm", "MultiAZ": "database.multi_az",
	"BackupRetention": "database.backup_retention", "BackupWindow": "aws.backup_window",
	"Rotation": "secrets.db.rotation", "StaticPaths": "edge.behaviors[].path", "SignedPaths": "edge.behaviors[].signed",
	"MaintenanceWindow": "aws.maintenance_window", "RotationStrategy": "secrets.db.strategy",
	"LogRetention": "aws.log_retention", "AppEnv": "app.env", "IdleTimeout": "load_balancer.idle_timeout",
	"HealthCheckType": "fleet.health_check_type", "DBName": "database.name", "DBUser": "database.user",
	"SecurityGroupRules":          "security_groups[].name",
	"InstanceRefresh.MinHealthy":  "fleet.instance_refresh.min_healthy_percentage",
	"InstanceRefresh.MaxHealthy":  "fleet.instance_refresh.max_healthy_percentage",
	"InstanceRefresh.Checkpoints": "fleet.instance_refresh.checkpoints",
	"InstanceRefresh.Bake":        "fleet.instance_refresh.bake", "InstanceRefresh.Warmup": "fleet.instance_refresh.instance_warmup",
	"InstanceRefresh.RollbackOn": "fleet.instance_refresh.rollback_on",
	"Alarm5XXPercent":            "alarms.thresholds.http_5xx_percent", "AlarmP99LatencySeconds": "alarms.thresholds.p99_latency_seconds",
	"AlarmDBConnections": "alarms.thresholds.db_connections",
}

var (
	indexed = regexp.MustCompile(`^(TargetTracking|Scheduled)\[(\d+)\]\.?(.*)$`)
	// listIndexed is an element of a list field: AZs[1], StaticPaths[0].
	listIndexed = regexp.MustCompile(`^(AZs|StaticPaths)\[(\d+)\]$`)
)

// SpecField names the spec field an Input field path (as in Warning.Field)
// comes from, e.g. "HealthCheck.Interval" → "app.health_check.interval".
// TargetTracking[i] and Scheduled[i] index the spec's fleet.scaling list.
func SpecField(s spec.Spec, inputField string) string {
	if f, ok := specFields[inputField]; ok {
		return f
	}
	if k, ok := strings.CutPrefix(inputField, "AppEnv."); ok {
		return "app.env." + k
	}
	if m := listIndexed.FindStringSubmatch(inputField); m != nil {
		if f, ok := specFields[m[1]]; ok {
			return f + "[" + m[2] + "]"
		}
	}
	if m := indexed.FindStringSubmatch(inputField); m != nil {
		want, n := m[1], 0
		for i, p := range s.Fleet.Scaling {
			if (want == "TargetTracking") != (p.TargetTracking != "") {
				continue
			}
			if strconv.Itoa(n) == m[2] {
				sub := strings.ToLower(m[3])
				if sub == "metric" {
					sub = "target_tracking"
				} else if sub == "name" {
					sub = "scheduled"
				} else if sub == "timezone" {
					sub = "time_zone"
				}
				out := "fleet.scaling[" + strconv.Itoa(i) + "]"
				if sub != "" {
					out += "." + sub
				}
				return out
			}
			n++
		}
	}
	return inputField
}
