package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/secrets"
)

// The metric names the Sampler and the tests refer to.
const (
	NameLBUp                 = "haven_lb_up"
	NameLBRequests           = "haven_lb_requests_total"
	NameLBELBResponses       = "haven_lb_elb_responses_total"
	NameLBTargetRequests     = "haven_lb_target_requests_total"
	NameLBRequestDuration    = "haven_lb_request_duration_seconds"
	NameLBTargetResponseTime = "haven_lb_target_response_time_seconds"
	NameLBTargets            = "haven_lb_targets"
	NameFleetInstances       = "haven_fleet_instances"
	NameFleetDesired         = "haven_fleet_desired_instances"
	NameFleetMin             = "haven_fleet_min_instances"
	NameFleetMax             = "haven_fleet_max_instances"
	NameInstanceCPU          = "haven_instance_cpu_seconds_total"
	NameInstanceCPULimit     = "haven_instance_cpu_limit_cores"
	NameDBUp                 = "haven_db_up"
	NameDBConnections        = "haven_db_connections"
	NameDBFailovers          = "haven_db_failovers_total"
	NameDBSwitchovers        = "haven_db_switchovers_total"
	NameDBReplicationLag     = "haven_db_replication_lag_seconds"
	NameDBEpoch              = "haven_db_epoch"
)

// dbRoles are the roles haven_db_node_role has a series for, per node.
var dbRoles = []string{"primary", "standby", "rebuilding", "down"}

// lbStates are the target states haven_lb_targets has a series for, per zone.
var lbStates = []lb.State{lb.StateInitial, lb.StateHealthy, lb.StateUnhealthy, lb.StateDraining}

// fleetStates are the instance states haven_fleet_instances has a series
// for, per zone.
var fleetStates = []fleet.State{fleet.StatePending, fleet.StateInService, fleet.StateDraining, fleet.StateTerminated}

var alarmStates = []alarms.State{alarms.StateOK, alarms.StateAlarm, alarms.StateInsufficientData}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// collector reads every tier's snapshot at each scrape and turns it into
// constant metrics: it holds no state of its own, and never takes a
// tier's lock.
type collector struct {
	cfg Config

	buildInfo *prometheus.Desc

	lbUp, lbRequests, lbELB, lbTargetRequests, lbDuration, lbTTFB, lbActive, lbInFlight,
	lbEjections, lbTargetEjections, lbTargets, lbRetries, lbRedirects *prometheus.Desc

	fleetInstances, fleetDesired, fleetMin, fleetMax, fleetLaunches, fleetTerminations, fleetLaunchFailures *prometheus.Desc

	instCPU, instThrottled, instMemory, instCPULimit, instMemoryLimit *prometheus.Desc

	dbUp, dbRole, dbNodeUp, dbEpoch, dbFailovers, dbSwitchovers, dbLagBytes, dbLagSeconds, dbSync, dbEligible,
	dbConnections, dbArchiveLag, dbArchiveFailures, dbEarliest, dbLatest *prometheus.Desc

	secCalls, secRotations, secAge *prometheus.Desc

	alarmState, alarmPending *prometheus.Desc
}

func newCollector(cfg Config) *collector {
	return &collector{
		cfg:       cfg,
		buildInfo: desc("haven_build_info", "Always 1: the haven build serving these metrics, and its region.", "version", "goversion", "region"),

		lbUp:              desc(NameLBUp, "1 while the load balancer runs; its other series are absent while it does not."),
		lbRequests:        desc(NameLBRequests, "Requests the load balancer answered on its HTTPS listener, by the zone of the target that answered (\"none\" when none was reached) and status class (460, client closed, counts as 4xx).", "zone", "code"),
		lbELB:             desc(NameLBELBResponses, "Error responses the load balancer generated itself (ALB's HTTPCode_ELB_5XX_Count): 502 a target failed, 503 no target, 504 a target timed out.", "code"),
		lbTargetRequests:  desc(NameLBTargetRequests, "Requests answered whose last attempt went to this registered target, by status class; the series ends when the target is removed.", "target", "zone", "code"),
		lbDuration:        desc(NameLBRequestDuration, "Seconds from a request's arrival at the load balancer to the end of its response, as the client sees it."),
		lbTTFB:            desc(NameLBTargetResponseTime, "Seconds from an attempt leaving the load balancer to the target's response headers (ALB's TargetResponseTime), by the target's zone.", "zone"),
		lbActive:          desc("haven_lb_active_connections", "Client connections open on the load balancer's HTTPS listener."),
		lbInFlight:        desc("haven_lb_target_in_flight_requests", "Requests being proxied to this target now.", "target", "zone"),
		lbEjections:       desc("haven_lb_ejections_total", "Targets of the zone marked unhealthy by a connection error on a proxied request (passive ejection).", "zone"),
		lbTargetEjections: desc("haven_lb_target_ejections_total", "Times this registered target was ejected after a connection error.", "target", "zone"),
		lbTargets:         desc(NameLBTargets, "Registered targets by zone and health state (ALB's HealthyHostCount and UnHealthyHostCount are the healthy and unhealthy series).", "zone", "state"),
		lbRetries:         desc("haven_lb_retries_total", "Attempts beyond a request's first, on another target."),
		lbRedirects:       desc("haven_lb_redirects_total", "Responses of the HTTP listener, which redirects to HTTPS."),

		fleetInstances:      desc(NameFleetInstances, "Instances the fleet holds, by zone and state.", "zone", "state"),
		fleetDesired:        desc(NameFleetDesired, "The fleet's desired capacity (ASG GroupDesiredCapacity)."),
		fleetMin:            desc(NameFleetMin, "The fleet's minimum size (ASG GroupMinSize)."),
		fleetMax:            desc(NameFleetMax, "The fleet's maximum size (ASG GroupMaxSize)."),
		fleetLaunches:       desc("haven_fleet_launches_total", "Instances launched, by zone and cause (capacity: below desired, a scale-out or a replacement; rebalance: zones uneven).", "zone", "cause"),
		fleetTerminations:   desc("haven_fleet_terminations_total", "Instances terminated, by zone and cause (scale-in, unhealthy, rebalance, exited, terminated-by-request, fleet-stopped).", "zone", "cause"),
		fleetLaunchFailures: desc("haven_fleet_launch_failures_total", "Launches that failed (retried with backoff), by zone.", "zone"),

		instCPU:         desc(NameInstanceCPU, "CPU time the instance's processes used, from its cgroup.", "instance_id", "zone"),
		instThrottled:   desc("haven_instance_cpu_throttled_seconds_total", "Time the instance's processes were throttled by their CPU quota, from its cgroup.", "instance_id", "zone"),
		instMemory:      desc("haven_instance_memory_bytes", "Memory the instance's processes use now, from its cgroup.", "instance_id", "zone"),
		instCPULimit:    desc(NameInstanceCPULimit, "Each instance's CPU quota in cores (the launch template's app.instance.cpu): CPU utilisation is cpu seconds per second divided by it."),
		instMemoryLimit: desc("haven_instance_memory_limit_bytes", "Each instance's memory limit (the launch template's app.instance.memory)."),

		dbUp:              desc(NameDBUp, "1 while the database tier runs; its other series are absent while it does not."),
		dbRole:            desc("haven_db_node_role", "1 for the role the database node has now (primary, standby, rebuilding, down), 0 for the others.", "node", "zone", "role"),
		dbNodeUp:          desc("haven_db_node_up", "1 while the node answers the failover controller's probes.", "node", "zone"),
		dbEpoch:           desc(NameDBEpoch, "The database's epoch: it grows by one at every promotion."),
		dbFailovers:       desc(NameDBFailovers, "Failovers the controller completed since the daemon started."),
		dbSwitchovers:     desc(NameDBSwitchovers, "Planned switchovers completed since the daemon started."),
		dbLagBytes:        desc("haven_db_replication_lag_bytes", "Bytes of WAL the standby's replay trails the primary's position by; absent while the standby is not connected.", "standby"),
		dbLagSeconds:      desc(NameDBReplicationLag, "Seconds the standby's replay trails the primary (pg_stat_replication replay_lag, 0 when idle); absent while the standby is not connected.", "standby"),
		dbSync:            desc("haven_db_standby_synchronous", "1 while the standby streams with sync_state sync, the primary waiting for it at every commit."),
		dbEligible:        desc("haven_db_standby_eligible", "1 while the standby holds every acknowledged commit and may be promoted."),
		dbConnections:     desc(NameDBConnections, "Client connections to the primary (pg_stat_activity client backends; RDS DatabaseConnections); absent while the primary does not answer."),
		dbArchiveLag:      desc("haven_db_wal_archive_lag_seconds", "Seconds since the primary last archived a WAL segment (pg_stat_archiver); absent before the first."),
		dbArchiveFailures: desc("haven_db_wal_archive_failures_total", "Failed archive_command runs on the primary (pg_stat_archiver failed_count; restarts at a failover)."),
		dbEarliest:        desc("haven_db_earliest_restorable_timestamp_seconds", "Unix time of the earliest point-in-time restore target (the end of the oldest backup)."),
		dbLatest:          desc("haven_db_latest_restorable_timestamp_seconds", "Unix time of the latest point-in-time restore target (RDS LatestRestorableTime), refreshed every 30 s; time() minus it is how far restores trail."),

		secCalls:     desc("haven_secrets_api_calls_total", "Secrets Manager API calls by action and result (Success or the error code).", "action", "result"),
		secRotations: desc("haven_secrets_rotations_total", "Finished rotations by secret and outcome (success, failure).", "secret", "outcome"),
		secAge:       desc("haven_secrets_current_version_age_seconds", "Seconds since the secret's AWSCURRENT version was created.", "secret"),

		alarmState:   desc("haven_alarm_state", "1 for the state the alarm is in (OK, ALARM, INSUFFICIENT_DATA), 0 for the others.", "alarm", "state"),
		alarmPending: desc("haven_alarm_notifications_pending", "The alarm's notifications not yet acknowledged by their action (retried with backoff).", "alarm"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo,
		c.lbUp, c.lbRequests, c.lbELB, c.lbTargetRequests, c.lbDuration, c.lbTTFB, c.lbActive, c.lbInFlight, c.lbEjections, c.lbTargetEjections, c.lbTargets, c.lbRetries, c.lbRedirects,
		c.fleetInstances, c.fleetDesired, c.fleetMin, c.fleetMax, c.fleetLaunches, c.fleetTerminations, c.fleetLaunchFailures,
		c.instCPU, c.instThrottled, c.instMemory, c.instCPULimit, c.instMemoryLimit,
		c.dbUp, c.dbRole, c.dbNodeUp, c.dbEpoch, c.dbFailovers, c.dbSwitchovers, c.dbLagBytes, c.dbLagSeconds, c.dbSync, c.dbEligible,
		c.dbConnections, c.dbArchiveLag, c.dbArchiveFailures, c.dbEarliest, c.dbLatest,
		c.secCalls, c.secRotations, c.secAge, c.alarmState, c.alarmPending} {
		ch <- d
	}
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	t := c.cfg.Tiers
	now := c.cfg.Clock.Now()
	ch <- gauge(c.buildInfo, 1, c.cfg.Version, runtime.Version(), c.cfg.Region)
	if l := t.LB(); l != nil {
		c.collectLB(ch, l.Metrics())
	}
	if f := t.Fleet(); f != nil {
		c.collectFleet(ch, f, t.Cgroups())
	}
	if d := t.DB(); d != nil {
		c.collectDB(ch, d.Status())
	}
	if b := t.Backups(); b != nil {
		c.collectBackups(ch, b, now)
	}
	if s := t.Secrets(); s != nil {
		c.collectSecrets(ch, s.Stats(), now)
	}
	if a := t.Alarms(); a != nil {
		if st := a.Status(); st != nil {
			for _, as := range st.Alarms {
				for _, s := range alarmStates {
					ch <- gauge(c.alarmState, b2f(as.State == s), as.Definition.Name, string(s))
				}
				ch <- gauge(c.alarmPending, float64(as.Pending), as.Definition.Name)
			}
		}
	}
}

func zoneLabel(z string) string {
	if z == "" {
		return "none"
	}
	return z
}

func histogram(d *prometheus.Desc, h lb.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b] = h.Counts[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, labels...)
}

func (c *collector) collectLB(ch chan<- prometheus.Metric, m lb.Metrics) {
	ch <- gauge(c.lbUp, 1)
	zones := map[string]bool{}
	for _, z := range m.Zones {
		zl := zoneLabel(z.Zone)
		for i, class := range lb.Classes {
			ch <- counter(c.lbRequests, float64(z.Responses[i]), zl, class)
		}
		ch <- histogram(c.lbTTFB, z.TargetResponseTime, zl)
		if z.Zone != "" {
			zones[z.Zone] = true
			ch <- counter(c.lbEjections, float64(z.Ejections), zl)
		}
	}
	for code, n := range map[string]uint64{"502": m.Stats.ELB502, "503": m.Stats.ELB503, "504": m.Stats.ELB504} {
		ch <- counter(c.lbELB, float64(n), code)
	}
	ch <- histogram(c.lbDuration, m.RequestDuration)
	ch <- gauge(c.lbActive, float64(m.ActiveConnections))
	ch <- counter(c.lbRetries, float64(m.Stats.Retries))
	ch <- counter(c.lbRedirects, float64(m.Stats.Redirects))
	states := map[string]map[lb.State]int{}
	for _, tm := range m.Targets {
		zl := zoneLabel(tm.Zone)
		zones[tm.Zone] = true
		for i, class := range lb.Classes {
			ch <- counter(c.lbTargetRequests, float64(tm.Responses[i]), tm.ID, zl, class)
		}
		ch <- gauge(c.lbInFlight, float64(tm.InFlight), tm.ID, zl)
		ch <- counter(c.lbTargetEjections, float64(tm.Ejections), tm.ID, zl)
		if states[tm.Zone] == nil {
			states[tm.Zone] = map[lb.State]int{}
		}
		states[tm.Zone][tm.State]++
	}
	for z := range zones {
		for _, s := range lbStates {
			ch <- gauge(c.lbTargets, float64(states[z][s]), zoneLabel(z), string(s))
		}
	}
}

func (c *collector) collectFleet(ch chan<- prometheus.Metric, f FleetReader, cg CgroupReader) {
	capa := f.Capacity()
	ch <- gauge(c.fleetDesired, float64(capa.Desired))
	ch <- gauge(c.fleetMin, float64(capa.Min))
	ch <- gauge(c.fleetMax, float64(capa.Max))
	counts := map[string]map[fleet.State]int{}
	insts := f.Instances()
	for _, in := range insts {
		if counts[in.Zone] == nil {
			counts[in.Zone] = map[fleet.State]int{}
		}
		counts[in.Zone][in.State]++
	}
	for _, a := range f.Activity() {
		if counts[a.Zone] == nil {
			counts[a.Zone] = map[fleet.State]int{}
		}
		switch a.Kind {
		case fleet.EventLaunch:
			ch <- counter(c.fleetLaunches, float64(a.Count), a.Zone, a.Cause)
		case fleet.EventTerminate:
			ch <- counter(c.fleetTerminations, float64(a.Count), a.Zone, a.Cause)
		case fleet.EventLaunchFailed:
			ch <- counter(c.fleetLaunchFailures, float64(a.Count), a.Zone)
		}
	}
	for z, byState := range counts {
		for _, s := range fleetStates {
			ch <- gauge(c.fleetInstances, float64(byState[s]), z, string(s))
		}
	}
	if c.cfg.InstanceCPU > 0 {
		ch <- gauge(c.instCPULimit, c.cfg.InstanceCPU)
	}
	if c.cfg.InstanceMemory > 0 {
		ch <- gauge(c.instMemoryLimit, float64(c.cfg.InstanceMemory))
	}
	if cg == nil {
		return
	}
	for _, in := range insts {
		if in.State == fleet.StateTerminated {
			continue
		}
		st, err := cg.Stats(in.ID)
		if err != nil {
			continue // the instance is gone or going: its cgroup with it
		}
		ch <- counter(c.instCPU, st.CPUUsage.Seconds(), in.ID, in.Zone)
		ch <- counter(c.instThrottled, st.Throttled.Seconds(), in.ID, in.Zone)
		ch <- gauge(c.instMemory, float64(st.MemoryBytes), in.ID, in.Zone)
	}
}

func (c *collector) collectDB(ch chan<- prometheus.Metric, s pgha.Status) {
	ch <- gauge(c.dbUp, 1)
	ch <- gauge(c.dbEpoch, float64(s.State.Epoch))
	ch <- counter(c.dbFailovers, float64(s.Failovers))
	ch <- counter(c.dbSwitchovers, float64(s.Switchovers))
	for _, n := range s.Nodes {
		for _, r := range dbRoles {
			ch <- gauge(c.dbRole, b2f(n.Role == r), n.Name, n.Zone, r)
		}
		ch <- gauge(c.dbNodeUp, b2f(n.Health == "up" || n.Health == "slow"), n.Name, n.Zone)
	}
	if s.State.Standby != "" {
		ch <- gauge(c.dbEligible, b2f(s.State.StandbyEligible))
		ch <- gauge(c.dbSync, b2f(s.StandbySync))
		if r := s.Replication; r != nil {
			ch <- gauge(c.dbLagBytes, r.LagBytes, s.State.Standby)
			ch <- gauge(c.dbLagSeconds, r.LagSeconds, s.State.Standby)
		}
	}
	primaryUp := false
	for _, n := range s.Nodes {
		if n.Name == s.State.Primary && n.Role == "primary" {
			primaryUp = true
		}
	}
	if primaryUp {
		ch <- gauge(c.dbConnections, float64(s.Connections))
	}
}

func (c *collector) collectBackups(ch chan<- prometheus.Metric, b BackupReader, now time.Time) {
	a := b.ArchiveStatus()
	if !a.LastArchivedAt.IsZero() {
		ch <- gauge(c.dbArchiveLag, max(now.Sub(a.LastArchivedAt).Seconds(), 0))
	}
	ch <- counter(c.dbArchiveFailures, float64(a.FailedCount))
	r := b.Restorable()
	if !r.Earliest.IsZero() {
		ch <- gauge(c.dbEarliest, unix(r.Earliest))
	}
	if !r.Latest.IsZero() {
		ch <- gauge(c.dbLatest, unix(r.Latest))
	}
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (c *collector) collectSecrets(ch chan<- prometheus.Metric, s secrets.Stats, now time.Time) {
	for _, k := range s.Calls {
		ch <- counter(c.secCalls, float64(k.Count), k.Action, k.Result)
	}
	for _, r := range s.Rotations {
		ch <- counter(c.secRotations, float64(r.Count), r.Secret, r.Outcome)
	}
	for _, sec := range s.Secrets {
		ch <- gauge(c.secAge, max(now.Sub(sec.CurrentCreated).Seconds(), 0), sec.Name)
	}
}
