package metrics

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/backup"
	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/secrets"
	"github.com/haven-platform/haven/internal/testkit"
)

// fakeTiers serves fixed snapshots the test edits between rounds.
type fakeTiers struct {
	mu      sync.Mutex
	lb      *lb.Metrics
	fleet   *fakeFleet
	cg      map[string]cgroup.Stats
	db      *pgha.Status
	backups *fakeBackups
	secrets *secrets.Stats
	alarms  *alarms.Status
}

type fakeFleet struct {
	capacity  fleet.Capacity
	instances []fleet.InstanceStatus
	activity  []fleet.ActivityCount
}

func (f *fakeFleet) Capacity() fleet.Capacity                { return f.capacity }
func (f *fakeFleet) Instances() []fleet.InstanceStatus       { return f.instances }
func (f *fakeFleet) Activity() []fleet.ActivityCount         { return f.activity }
func (t *fakeTiers) Stats(name string) (cgroup.Stats, error) { return t.cg[name], nil }

type fakeLB struct{ m lb.Metrics }

func (f fakeLB) Metrics() lb.Metrics { return f.m }

type fakeDB struct{ s pgha.Status }

func (f fakeDB) Status() pgha.Status { return f.s }

type fakeBackups struct {
	a backup.ArchiveStatus
	r backup.Restorable
}

func (f *fakeBackups) ArchiveStatus() backup.ArchiveStatus { return f.a }
func (f *fakeBackups) Restorable() backup.Restorable       { return f.r }

type fakeSecrets struct{ s secrets.Stats }

func (f fakeSecrets) Stats() secrets.Stats { return f.s }

type fakeAlarms struct{ s *alarms.Status }

func (f fakeAlarms) Status() *alarms.Status { return f.s }

func (t *fakeTiers) LB() LBReader {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lb == nil {
		return nil
	}
	return fakeLB{*t.lb}
}
func (t *fakeTiers) Fleet() FleetReader {
	if t.fleet == nil {
		return nil
	}
	return t.fleet
}
func (t *fakeTiers) Cgroups() CgroupReader { return t }
func (t *fakeTiers) DB() DBReader {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.db == nil {
		return nil
	}
	return fakeDB{*t.db}
}
func (t *fakeTiers) Backups() BackupReader {
	if t.backups == nil {
		return nil
	}
	return t.backups
}
func (t *fakeTiers) Secrets() SecretsReader {
	if t.secrets == nil {
		return nil
	}
	return fakeSecrets{*t.secrets}
}
func (t *fakeTiers) Alarms() AlarmsReader {
	if t.alarms == nil {
		return nil
	}
	return fakeAlarms{t.alarms}
}

var t0 = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

func hist(counts ...uint64) lb.Histogram {
	h := lb.Histogram{Bounds: lb.LatencyBuckets, Counts: make([]uint64, len(lb.LatencyBuckets))}
	var cum uint64
	for i := range h.Counts {
		if i < len(counts) {
			cum += counts[i]
		}
		h.Counts[i] = cum
	}
	h.Count, h.Sum = cum, float64(cum)*0.01
	return h
}

func fullTiers() *fakeTiers {
	return &fakeTiers{
		lb: &lb.Metrics{
			Stats:             lb.Stats{Requests: 105, ELB503: 1, Retries: 2, Redirects: 3},
			ActiveConnections: 4,
			RequestDuration:   hist(50, 50, 5),
			Zones: []lb.ZoneMetrics{
				{Zone: "", Responses: lb.ClassCounts{0, 0, 0, 1}},
				{Zone: "a", Responses: lb.ClassCounts{60, 0, 2, 0}, TargetResponseTime: hist(60, 2)},
				{Zone: "b", Responses: lb.ClassCounts{40, 0, 0, 2}, Ejections: 1, TargetResponseTime: hist(40, 0, 2)},
			},
			Targets: []lb.TargetMetrics{
				{ID: "i-0a", Zone: "a", State: lb.StateHealthy, InFlight: 1, Responses: lb.ClassCounts{60, 0, 2, 0}},
				{ID: "i-0b", Zone: "b", State: lb.StateUnhealthy, Responses: lb.ClassCounts{40, 0, 0, 2}, Ejections: 1},
			},
		},
		fleet: &fakeFleet{
			capacity: fleet.Capacity{Min: 2, Desired: 2, Max: 4},
			instances: []fleet.InstanceStatus{
				{ID: "i-0a", Zone: "a", State: fleet.StateInService}, {ID: "i-0b", Zone: "b", State: fleet.StateInService},
			},
			activity: []fleet.ActivityCount{{Kind: fleet.EventLaunch, Zone: "a", Cause: "capacity", Count: 2}, {Kind: fleet.EventTerminate, Zone: "a", Cause: "exited", Count: 1}},
		},
		cg: map[string]cgroup.Stats{"i-0a": {CPUUsage: 2 * time.Second, MemoryBytes: 50 << 20}, "i-0b": {CPUUsage: time.Second, MemoryBytes: 40 << 20}},
		db: &pgha.Status{
			State: pgha.State{Epoch: 3, Primary: "db_a", Standby: "db_b", StandbyEligible: true}, StandbySync: true,
			Nodes:       []pgha.NodeStatus{{Name: "db_a", Zone: "a", Role: "primary", Health: "up"}, {Name: "db_b", Zone: "b", Role: "standby", Health: "up"}},
			Replication: &pgha.ReplicationObs{State: "streaming", Sync: "sync", LagBytes: 128, LagSeconds: 0.002},
			Connections: 7, Failovers: 1,
		},
		backups: &fakeBackups{
			a: backup.ArchiveStatus{LastArchivedAt: t0.Add(-5 * time.Second), FailedCount: 0},
			r: backup.Restorable{Earliest: t0.Add(-time.Hour), Latest: t0.Add(-3 * time.Second), CheckedAt: t0},
		},
		secrets: &secrets.Stats{
			Calls:     []secrets.CallCount{{Action: "GetSecretValue", Result: "Success", Count: 9}, {Action: "GetSecretValue", Result: "AccessDeniedException", Count: 1}},
			Rotations: []secrets.RotationCount{{Secret: "courses/db", Outcome: "success", Count: 2}},
			Secrets:   []secrets.SecretSummary{{Name: "courses/db", CurrentCreated: t0.Add(-90 * time.Second)}},
		},
		alarms: &alarms.Status{Alarms: []alarms.AlarmStatus{{Definition: alarms.Definition{Name: "db-failover"}, State: alarms.StateAlarm, Pending: 2}}},
	}
}

func newTest(t *testing.T, tiers Tiers, clk clock.Clock) *Metrics {
	t.Helper()
	m, err := New(Config{Tiers: tiers, Region: "courses", Version: "test", InstanceCPU: 0.5, InstanceMemory: 256 << 20, Clock: clk, Logger: testkit.Logger(t), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scrape serves /metrics on a real loopback listener and parses the body
// with Prometheus's own text parser.
func scrape(t *testing.T, m *Metrics) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	if m.Addr() == "" {
		if err := m.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Stop(context.Background()) })
	}
	resp, err := http.Get("http://" + m.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("the exposition does not parse with Prometheus's text parser: %v\n%s", err, body)
	}
	return fams, string(body)
}

func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf := fams[name]
	if mf == nil {
		t.Fatalf("family %s missing", name)
	}
	for _, m := range mf.GetMetric() {
		ok := true
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return value(m)
		}
	}
	t.Fatalf("%s%v: no such series", name, labels)
	return 0
}

// TestExpositionParsesAndFollowsConventions: /metrics answers on a loopback
// listener with every tier's families, parses with Prometheus's text
// parser, passes promlint (names, base units, _total counters, HELP on
// every family), and carries the tiers' snapshot values.
func TestExpositionParsesAndFollowsConventions(t *testing.T) {
	m := newTest(t, fullTiers(), clock.NewFake(t0))
	fams, body := scrape(t, m)

	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for name, mf := range fams {
		if mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		if strings.HasPrefix(name, "haven_") && mf.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"haven_build_info", map[string]string{"region": "courses", "version": "test"}, 1},
		{NameLBRequests, map[string]string{"zone": "a", "code": "2xx"}, 60},
		{NameLBRequests, map[string]string{"zone": "none", "code": "5xx"}, 1},
		{NameLBELBResponses, map[string]string{"code": "503"}, 1},
		{NameLBTargetRequests, map[string]string{"target": "i-0b", "zone": "b", "code": "5xx"}, 2},
		{"haven_lb_active_connections", nil, 4},
		{"haven_lb_target_in_flight_requests", map[string]string{"target": "i-0a"}, 1},
		{"haven_lb_ejections_total", map[string]string{"zone": "b"}, 1},
		{NameLBTargets, map[string]string{"zone": "a", "state": "healthy"}, 1},
		{NameLBTargets, map[string]string{"zone": "b", "state": "unhealthy"}, 1},
		{NameLBTargets, map[string]string{"zone": "b", "state": "healthy"}, 0},
		{"haven_lb_retries_total", nil, 2},
		{NameFleetInstances, map[string]string{"zone": "a", "state": "in-service"}, 1},
		{NameFleetDesired, nil, 2}, {NameFleetMin, nil, 2}, {NameFleetMax, nil, 4},
		{"haven_fleet_launches_total", map[string]string{"zone": "a", "cause": "capacity"}, 2},
		{"haven_fleet_terminations_total", map[string]string{"zone": "a", "cause": "exited"}, 1},
		{NameInstanceCPU, map[string]string{"instance_id": "i-0a", "zone": "a"}, 2},
		{"haven_instance_memory_bytes", map[string]string{"instance_id": "i-0b"}, 40 << 20},
		{NameInstanceCPULimit, nil, 0.5},
		{"haven_instance_memory_limit_bytes", nil, 256 << 20},
		{"haven_db_node_role", map[string]string{"node": "db_a", "role": "primary"}, 1},
		{"haven_db_node_role", map[string]string{"node": "db_a", "role": "standby"}, 0},
		{"haven_db_node_role", map[string]string{"node": "db_b", "role": "standby"}, 1},
		{NameDBEpoch, nil, 3}, {NameDBFailovers, nil, 1}, {NameDBSwitchovers, nil, 0},
		{"haven_db_replication_lag_bytes", map[string]string{"standby": "db_b"}, 128},
		{NameDBReplicationLag, map[string]string{"standby": "db_b"}, 0.002},
		{"haven_db_standby_synchronous", nil, 1}, {"haven_db_standby_eligible", nil, 1},
		{NameDBConnections, nil, 7},
		{"haven_db_wal_archive_lag_seconds", nil, 5},
		{"haven_db_latest_restorable_timestamp_seconds", nil, float64(t0.Add(-3 * time.Second).Unix())},
		{"haven_secrets_api_calls_total", map[string]string{"action": "GetSecretValue", "result": "AccessDeniedException"}, 1},
		{"haven_secrets_rotations_total", map[string]string{"secret": "courses/db", "outcome": "success"}, 2},
		{"haven_secrets_current_version_age_seconds", map[string]string{"secret": "courses/db"}, 90},
		{"haven_alarm_state", map[string]string{"alarm": "db-failover", "state": "ALARM"}, 1},
		{"haven_alarm_state", map[string]string{"alarm": "db-failover", "state": "OK"}, 0},
		{"haven_alarm_notifications_pending", map[string]string{"alarm": "db-failover"}, 2},
	}
	for _, c := range checks {
		if got := find(t, fams, c.name, c.labels); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	h := fams[NameLBTargetResponseTime]
	if h.GetType() != dto.MetricType_HISTOGRAM || len(h.GetMetric()) != 3 {
		t.Fatalf("%s: %v series of type %v, want 3 histograms", NameLBTargetResponseTime, len(h.GetMetric()), h.GetType())
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("runtime family %s missing", name)
		}
	}
}

// TestTiersThatDoNotRunAreAbsent: before any tier runs, only the build
// info (and the runtime) is exported: no made-up zeros.
func TestTiersThatDoNotRunAreAbsent(t *testing.T) {
	m := newTest(t, &fakeTiers{}, clock.NewFake(t0))
	fams, _ := scrape(t, m)
	for name := range fams {
		if strings.HasPrefix(name, "haven_") && name != "haven_build_info" {
			t.Errorf("family %s exported with no tier running", name)
		}
	}
}

func TestListenMustBeLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9464", "10.0.0.1:9464", ":9464", "9464", "example.com:9464"} {
		m, err := New(Config{Tiers: &fakeTiers{}, Listen: addr, Logger: testkit.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		err = m.Start(t.Context())
		if err == nil {
			m.Stop(context.Background())
			t.Errorf("Start on %q: no error, want a refusal", addr)
		} else if !strings.Contains(err.Error(), "metrics.listen") {
			t.Errorf("Start on %q: %v, want the field named", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0"} {
		if err := CheckLoopback("metrics.listen", addr); err != nil {
			t.Errorf("CheckLoopback(%q) = %v", addr, err)
		}
	}
}

// TestSamplerFeedsTheAlarmRegistry: the sampler reads the same families and
// turns them into CloudWatch-style samples: gauges as they are, counters
// as their increase since the previous round (a reset counts from zero),
// latency histograms as one weighted sample per bucket.
func TestSamplerFeedsTheAlarmRegistry(t *testing.T) {
	tiers := fullTiers()
	clk := clock.NewFake(t0)
	m := newTest(t, tiers, clk)
	store := alarms.NewStore(0, 0)
	s, err := NewSampler(SamplerConfig{Gatherer: m.Gatherer(), Store: store, Clock: clk, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s.Sample() // the baseline
	clk.Advance(time.Second)
	// One second later: 10 more 2xx in zone a, 3 more 5xx of which 1 the
	// LB's own 503, one more failover; 10 target responses ≤ 5 ms, 2 in
	// (0.5, 1] s.
	tiers.mu.Lock()
	tiers.lb.Zones[1].Responses[0] += 10
	tiers.lb.Zones[2].Responses[3] += 2
	tiers.lb.Zones[0].Responses[3]++
	tiers.lb.Stats.ELB503++
	tiers.lb.Zones[1].TargetResponseTime = hist(70, 2, 0, 0, 0, 0, 0, 2)
	tiers.db.Failovers++
	tiers.db.Replication.LagSeconds = 12
	tiers.mu.Unlock()
	tiers.cg["i-0a"] = cgroup.Stats{CPUUsage: 2*time.Second + 250*time.Millisecond}
	tiers.cg["i-0b"] = cgroup.Stats{CPUUsage: time.Second + 250*time.Millisecond}
	s.Sample()

	q := func(metric string, st alarms.Statistic) float64 {
		t.Helper()
		pts, err := store.Datapoints(context.Background(), alarms.Query{Metric: metric, Statistic: st, Period: time.Second, Start: t0.Add(time.Second), End: t0.Add(2 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != 1 {
			t.Fatalf("%s: %d datapoints in the second round, want 1", metric, len(pts))
		}
		return pts[0].Value
	}
	for _, c := range []struct {
		metric string
		st     alarms.Statistic
		want   float64
	}{
		{alarms.MetricRequestCount, alarms.Sum, 13},
		{alarms.MetricHTTPCodeELB5XXCount, alarms.Sum, 1},
		{alarms.MetricHTTPCodeTarget5XXCount, alarms.Sum, 2},
		{alarms.MetricHTTP5XXPercent, alarms.Average, 100 * 3.0 / 13},
		{alarms.MetricHealthyHostCount, alarms.Minimum, 1},
		{alarms.MetricUnHealthyHostCount, alarms.Maximum, 1},
		{alarms.MetricTargetResponseTime, "p99", 1},
		{alarms.MetricTargetResponseTime, alarms.SampleCount, 12},
		{alarms.MetricGroupInService, alarms.Minimum, 2},
		{alarms.MetricGroupAtMaxSize, alarms.Maximum, 0},
		{alarms.MetricDatabaseFailovers, alarms.Sum, 1},
		{alarms.MetricDatabaseConnections, alarms.Maximum, 7},
		{alarms.MetricReplicaLag, alarms.Maximum, 12},
	} {
		if got := q(c.metric, c.st); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s %s = %v, want %v", c.metric, c.st, got, c.want)
		}
	}
	// The baseline round put no counter sample.
	pts, _ := store.Datapoints(context.Background(), alarms.Query{Metric: alarms.MetricRequestCount, Statistic: alarms.SampleCount, Period: time.Second, Start: t0, End: t0.Add(time.Second)})
	if len(pts) != 0 {
		t.Errorf("the first round put RequestCount %+v, want nothing (no increase yet)", pts)
	}

	// The chart series: per second, CPU in percent of the quota.
	pts2 := s.Series()
	if len(pts2) != 2 {
		t.Fatalf("series has %d points, want 2", len(pts2))
	}
	p := pts2[1]
	if p.Requests != 13 || p.Errors5xx != 3 || p.InService != 2 || p.Healthy != 1 || p.P99 != 1 || p.ReplicationLag != 12 || math.Abs(p.CPU-50) > 1e-6 {
		t.Errorf("chart point = %+v, want 13 req/s, 3 5xx/s, 2 in service, 1 healthy, p99 1 s, lag 12 s, CPU 50 %%", p)
	}

	// A reset (the daemon restarted: failovers from 2 back to 0, then 1)
	// counts from zero; a vanished load balancer leaves its metrics missing.
	clk.Advance(time.Second)
	tiers.mu.Lock()
	tiers.db.Failovers = 1
	tiers.lb = nil
	tiers.mu.Unlock()
	s.Sample()
	pts, _ = store.Datapoints(context.Background(), alarms.Query{Metric: alarms.MetricDatabaseFailovers, Statistic: alarms.Sum, Period: time.Second, Start: t0.Add(2 * time.Second), End: t0.Add(3 * time.Second)})
	if len(pts) != 1 || pts[0].Value != 1 {
		t.Errorf("failovers after a reset to 1 = %+v, want one datapoint of 1", pts)
	}
	pts, _ = store.Datapoints(context.Background(), alarms.Query{Metric: alarms.MetricHealthyHostCount, Statistic: alarms.Minimum, Period: time.Second, Start: t0.Add(2 * time.Second), End: t0.Add(3 * time.Second)})
	if len(pts) != 0 {
		t.Errorf("HealthyHostCount with no load balancer = %+v, want missing (the alarm treats it as breaching)", pts)
	}
}

// TestSamplerLoopRunsOnTheClock: Start samples at once and every Interval
// on the injected clock; Stop ends it.
func TestSamplerLoopRunsOnTheClock(t *testing.T) {
	clk := clock.NewFake(t0)
	m := newTest(t, fullTiers(), clk)
	s, err := NewSampler(SamplerConfig{Gatherer: m.Gatherer(), Clock: clk, Interval: 500 * time.Millisecond, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if !clk.BlockUntil(1, 5*time.Second) {
			t.Fatalf("round %d: the loop is not waiting on the clock", i)
		}
		clk.Advance(500 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Series()) < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(s.Series()); n < 5 {
		t.Errorf("%d rounds after 4 intervals, want 5", n)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkGather is one scrape's collection: every family of a region
// with two zones, two instances, a database pair, secrets and an alarm.
func BenchmarkGather(b *testing.B) {
	m, err := New(Config{Tiers: fullTiers(), Region: "courses", InstanceCPU: 0.5, Clock: clock.NewFake(t0), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for range b.N {
		if _, err := m.Gatherer().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
