package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/backoff"
	"github.com/haven-platform/haven/internal/clock"
)

// fakeRegion publishes what a healthy two-instance region would, second by
// second, into a Store.
type fakeRegion struct {
	t     *testing.T
	store *Store
}

func (r fakeRegion) put(metric string, s ...Sample) {
	r.t.Helper()
	must(r.t, r.store.Put(metric, s...))
}

// run publishes [from, to); failovers maps a second to failovers completed
// in it.
func (r fakeRegion) run(from, to time.Time, failovers map[time.Time]float64) {
	for ts := from; ts.Before(to); ts = ts.Add(time.Second) {
		r.put(MetricHealthyHostCount, Sample{Time: ts, Value: 2})
		r.put(MetricHTTP5XXPercent, Sample{Time: ts, Value: 0, Count: 50})
		r.put(MetricTargetResponseTime, Sample{Time: ts, Value: 0.05, Count: 49}, Sample{Time: ts, Value: 0.25, Count: 1})
		r.put(MetricDatabaseFailovers, Sample{Time: ts, Value: failovers[ts]})
		r.put(MetricReplicaLag, Sample{Time: ts, Value: 0.01})
		r.put(MetricDatabaseConnections, Sample{Time: ts, Value: 20})
		r.put(MetricGroupAtMaxSize, Sample{Time: ts, Value: 0})
	}
}

type storyRig struct {
	cfg   Config
	clk   *clock.Fake
	hook  *hook
	sn    *fakeServiceNow
	logs  *logs
	reg   fakeRegion
	state string
}

func newStoryRig(t *testing.T) *storyRig {
	r := &storyRig{clk: clock.NewFake(t0), hook: &hook{}, sn: &fakeServiceNow{user: "haven-int", pass: snPassword, t: t}, state: t.TempDir()}
	hookSrv := httptest.NewServer(r.hook)
	t.Cleanup(hookSrv.Close)
	snSrv := httptest.NewServer(r.sn)
	t.Cleanup(snSrv.Close)
	wh, err := NewWebhook(WebhookConfig{URL: hookSrv.URL + "/haven"})
	must(t, err)
	sn, err := NewServiceNow(ServiceNowConfig{InstanceURL: snSrv.URL, Credentials: staticCreds(BasicAuth("haven-int", snPassword))})
	must(t, err)
	defs, err := DefaultDefinitions(Params{FleetMin: 2, Actions: []string{"webhook", "servicenow"}})
	must(t, err)
	lg := newLogsLogger(t, r)
	r.reg = fakeRegion{t: t, store: NewStore(0, 0)}
	r.cfg = Config{Region: "dev", Definitions: defs, Source: r.reg.store, StateDir: r.state, Clock: r.clk, Logger: lg,
		Actions: map[string]Action{"webhook": wh, "servicenow": sn}, Retry: backoff.Policy{Base: time.Second, Max: 30 * time.Second}}
	return r
}

func newLogsLogger(t *testing.T, r *storyRig) *slog.Logger {
	lg, l := newLogs(t)
	r.logs = l
	return lg
}

func (r *storyRig) engine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(r.cfg)
	must(t, err)
	return e
}

func stateOf(e *Engine, name string) AlarmStatus {
	for _, a := range e.Status().Alarms {
		if a.Definition.Name == name {
			return a
		}
	}
	return AlarmStatus{}
}

// TestFailoverAlarmStory is the failover alarm end to end, in process: the
// database fails over, the alarm goes to ALARM, the webhook and the
// ServiceNow-shaped server each get exactly one incident, the engine is
// restarted twice (before and after delivering) without firing anything
// twice or losing anything, the data returns to normal, the alarm goes to
// OK and the incident is resolved.
func TestFailoverAlarmStory(t *testing.T) {
	r := newStoryRig(t)
	ctx := context.Background()
	e := r.engine(t)
	for _, a := range e.Status().Alarms {
		if a.State != StateInsufficientData || a.Reason != InitialReason {
			t.Fatalf("new alarm %s: %s %q", a.Definition.Name, a.State, a.Reason)
		}
	}

	// Ten healthy minutes: every alarm goes INSUFFICIENT_DATA → OK.
	r.reg.run(t0, t0.Add(10*time.Minute), nil)
	r.clk.Set(t0.Add(10 * time.Minute))
	if tr := e.Tick(ctx); len(tr) != 7 {
		t.Fatalf("first evaluation: %d transitions, want 7 (every alarm to OK): %+v", len(tr), tr)
	}
	for _, a := range e.Status().Alarms {
		if a.State != StateOK {
			t.Fatalf("%s is %s after healthy data: %s", a.Definition.Name, a.State, a.Reason)
		}
	}
	if ok, failed := e.DeliverDue(ctx); ok != 14 || failed != 0 {
		t.Fatalf("delivered %d, failed %d; want 14 (7 alarms × 2 actions)", ok, failed)
	}

	// The primary fails at 07:10:20; the controller reports one failover.
	failover := t0.Add(10*time.Minute + 20*time.Second)
	r.reg.run(t0.Add(10*time.Minute), t0.Add(11*time.Minute), map[time.Time]float64{failover: 1})
	r.clk.Set(t0.Add(11 * time.Minute))
	tr := e.Tick(ctx)
	if len(tr) != 1 || tr[0].Alarm != AlarmDBFailover || tr[0].NewState != StateAlarm {
		t.Fatalf("after the failover: %+v, want db-failover OK → ALARM only", tr)
	}
	if !strings.HasPrefix(tr[0].Reason, "Threshold Crossed: 1 out of the last 1 datapoints [1.0 (30/11/26 07:10:00)] was greater than the threshold (0.0)") {
		t.Errorf("reason %q", tr[0].Reason)
	}
	if st := e.Status(); len(st.Outbox) != 2 {
		t.Fatalf("outbox %d, want the ALARM for both actions", len(st.Outbox))
	}

	// The daemon dies before delivering. A new engine over the same state
	// dir has the ALARM and both notifications, and evaluates the same data
	// without a new transition.
	e = r.engine(t)
	if a := stateOf(e, AlarmDBFailover); a.State != StateAlarm || a.Pending != 2 || !strings.HasPrefix(a.Reason, "Threshold Crossed: 1 out of") {
		t.Fatalf("after restart: %s pending %d %q", a.State, a.Pending, a.Reason)
	}
	if tr := e.Tick(ctx); len(tr) != 0 {
		t.Fatalf("restart re-evaluated into %+v", tr)
	}
	if ok, failed := e.DeliverDue(ctx); ok != 2 || failed != 0 {
		t.Fatalf("resumed delivery: %d delivered, %d failed; want 2", ok, failed)
	}
	if n := r.hook.count(AlarmDBFailover, StateAlarm); n != 1 {
		t.Fatalf("webhook got %d ALARM notifications for db-failover, want 1", n)
	}
	incs, _, posts, _ := r.sn.snapshot()
	if len(incs) != 1 || posts != 1 || incs[0]["correlation_id"] != "haven/dev/db-failover" || incs[0]["state"] != "1" {
		t.Fatalf("ServiceNow: %d incidents from %d creates: %v; want 1 open", len(incs), posts, incs)
	}

	// A second restart, after delivery: nothing is sent again.
	e = r.engine(t)
	if len(e.Status().Outbox) != 0 {
		t.Fatalf("outbox after delivery and restart: %+v", e.Status().Outbox)
	}
	if ok, failed := e.DeliverDue(ctx); ok+failed != 0 {
		t.Fatalf("second restart attempted %d deliveries", ok+failed)
	}
	if tr := e.Tick(ctx); len(tr) != 0 {
		t.Fatalf("second restart re-evaluated into %+v", tr)
	}

	// A healthy minute: back to OK, and the incident is resolved.
	r.reg.run(t0.Add(11*time.Minute), t0.Add(12*time.Minute), nil)
	r.clk.Set(t0.Add(12 * time.Minute))
	tr = e.Tick(ctx)
	if len(tr) != 1 || tr[0].Alarm != AlarmDBFailover || tr[0].NewState != StateOK || tr[0].OldState != StateAlarm {
		t.Fatalf("after recovery: %+v, want db-failover ALARM → OK", tr)
	}
	if ok, failed := e.DeliverDue(ctx); ok != 2 || failed != 0 {
		t.Fatalf("OK delivery: %d delivered, %d failed", ok, failed)
	}
	incs, _, posts, _ = r.sn.snapshot()
	if len(incs) != 1 || posts != 1 || incs[0]["state"] != SNStateResolved || incs[0]["close_code"] == "" || incs[0]["close_notes"] == "" {
		t.Fatalf("ServiceNow after OK: %v (%d creates), want the one incident resolved", incs, posts)
	}

	// Counts: every transition reached the webhook once.
	all := r.hook.all()
	keys := map[string]int{}
	for _, n := range all {
		keys[n.IdempotencyKey]++
	}
	if len(all) != 9 || len(keys) != 9 {
		t.Errorf("webhook: %d posts, %d distinct keys; want 9 and 9 (7 initial OKs, the ALARM, its OK)", len(all), len(keys))
	}
	if n := r.hook.count(AlarmDBFailover, StateAlarm); n != 1 {
		t.Errorf("ALARM notifications %d, want 1", n)
	}
	if last := all[len(all)-1]; last.NewStateValue != StateOK || last.OldStateValue != StateAlarm || last.AlarmName != AlarmDBFailover || last.CorrelationID != "haven/dev/db-failover" {
		t.Errorf("last notification %+v", last)
	}

	// History: created, three state updates, six action outcomes.
	hist, err := e.History(AlarmDBFailover)
	must(t, err)
	kinds := map[HistoryType]int{}
	for _, h := range hist {
		kinds[h.Type]++
	}
	if kinds[HistoryConfigurationUpdate] != 1 || kinds[HistoryStateUpdate] != 3 || kinds[HistoryAction] != 6 {
		t.Errorf("history kinds %v, want 1 configuration, 3 state, 6 action items", kinds)
	}
	if hist[len(hist)-1].Type != HistoryConfigurationUpdate || !hist[0].Time.Equal(t0.Add(12*time.Minute)) {
		t.Errorf("history not newest first: first %+v, last %+v", hist[0], hist[len(hist)-1])
	}
	if _, err := e.History("no-such-alarm"); err == nil || !strings.Contains(err.Error(), AlarmDBFailover) {
		t.Errorf("unknown alarm: %v", err)
	}

	// The ServiceNow secret is nowhere: logs, state file, status, history.
	stateFile, _ := os.ReadFile(filepath.Join(r.state, StateFile))
	st, _ := json.Marshal(e.Status())
	hj, _ := json.Marshal(hist)
	for what, s := range map[string]string{"logs": r.logs.String(), "state file": string(stateFile), "status": string(st), "history": string(hj)} {
		if strings.Contains(s, snPassword) {
			t.Errorf("the ServiceNow password is in the %s", what)
		}
	}
	if fi, _ := os.Stat(filepath.Join(r.state, StateFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v", fi.Mode().Perm())
	}
}

// TestCrashBetweenDeliveryAndAck: an action delivered, then the daemon died
// before the outbox recorded it. After restart the notification goes again
// with the same idempotency key, and ServiceNow opens no second incident.
func TestCrashBetweenDeliveryAndAck(t *testing.T) {
	r := newStoryRig(t)
	ctx := context.Background()
	e := r.engine(t)
	r.reg.run(t0, t0.Add(10*time.Minute), map[time.Time]float64{t0.Add(9*time.Minute + 5*time.Second): 1})
	r.clk.Set(t0.Add(10 * time.Minute))
	e.Tick(ctx)
	if a := stateOf(e, AlarmDBFailover); a.State != StateAlarm {
		t.Fatalf("db-failover %s, want ALARM", a.State)
	}
	e.mu.Lock()
	e.beforeSave = func() error { return errors.New("power cut") }
	e.mu.Unlock()
	if ok, _ := e.DeliverDue(ctx); ok != 14 {
		t.Fatalf("delivered %d, want 14", ok)
	}
	if st := e.Status(); st.SaveError == "" || !strings.Contains(st.SaveError, "power cut") {
		t.Fatalf("save error not reported: %q", st.SaveError)
	}
	// The daemon dies here. The file still lists every notification.
	e = r.engine(t)
	if n := len(e.Status().Outbox); n != 14 {
		t.Fatalf("outbox after the crash: %d, want 14", n)
	}
	if ok, failed := e.DeliverDue(ctx); ok != 14 || failed != 0 {
		t.Fatalf("redelivery %d/%d", ok, failed)
	}
	all := r.hook.all()
	keys := map[string]int{}
	for _, n := range all {
		keys[n.IdempotencyKey]++
	}
	if len(all) != 14 || len(keys) != 7 {
		t.Errorf("webhook: %d posts with %d distinct keys, want 14 posts of 7 keys (each repeat carries its key)", len(all), len(keys))
	}
	incs, _, posts, _ := r.sn.snapshot()
	if len(incs) != 1 || posts != 1 {
		t.Errorf("ServiceNow: %d incidents from %d creates, want 1 (the repeat found the open one)", len(incs), posts)
	}
	if ok, failed := e.DeliverDue(ctx); ok+failed != 0 {
		t.Errorf("a third round attempted %d", ok+failed)
	}
}

// TestUnreachableWebhookIsRetriedAndNeverBlocksEvaluation runs both loops
// on the fake clock against a webhook whose port refuses connections: each
// failure is recorded, retries back off (doubling, jittered, capped), the
// alarms keep being evaluated, and once the endpoint is back everything
// queued is delivered in order, once.
func TestUnreachableWebhookIsRetriedAndNeverBlocksEvaluation(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	l.Close() // nothing listens: connection refused

	clk := clock.NewFake(t0.Add(3 * time.Minute))
	lg, _ := newLogs(t)
	store := NewStore(0, 0)
	reg := fakeRegion{t: t, store: store}
	// Healthy until 07:05, with a failover in the minute 07:03-07:04.
	reg.run(t0, t0.Add(5*time.Minute), map[time.Time]float64{t0.Add(3*time.Minute + 5*time.Second): 1})
	wh, err := NewWebhook(WebhookConfig{URL: "http://" + addr + "/hook", Client: &http.Client{Timeout: 5 * time.Second}})
	must(t, err)
	defs, err := DefaultDefinitions(Params{FleetMin: 2, Actions: []string{"webhook"}})
	must(t, err)
	var two []Definition
	for _, d := range defs {
		if d.Name == AlarmDBFailover || d.Name == AlarmHealthyHosts {
			two = append(two, d)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	policy := backoff.Policy{Base: time.Second, Max: 8 * time.Second, Jitter: 0.2, Rand: rng.Float64}
	e, err := New(Config{Region: "dev", Definitions: two, Source: store, StateDir: t.TempDir(), Clock: clk, Logger: lg,
		Actions: map[string]Action{"webhook": wh}, Retry: policy, DeliveryTimeout: 5 * time.Second})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, e.Start(ctx))
	defer e.Stop(context.Background())

	outbox := func() []Delivery { return e.Status().Outbox }
	waitFor(t, "the first failed attempts", func() bool {
		o := outbox()
		return len(o) == 2 && o[0].Attempts >= 1 && o[1].Attempts >= 1
	})
	for k := 1; k <= 6; k++ {
		waitFor(t, "attempt "+string(rune('0'+k)), func() bool {
			o := outbox()
			return len(o) == 2 && o[0].Attempts >= k && o[1].Attempts >= k
		})
		o := outbox()
		nom := backoff.Policy{Base: time.Second, Max: 8 * time.Second}.Nominal(k)
		latest := o[0].NextAttempt
		for _, d := range o {
			if d.Attempts != k {
				t.Fatalf("%s: %d attempts at round %d", d.ID, d.Attempts, k)
			}
			gap := d.NextAttempt.Sub(d.LastAttempt)
			if lo, hi := time.Duration(float64(nom)*0.8), min(time.Duration(float64(nom)*1.2), 8*time.Second); gap < lo || gap > hi {
				t.Errorf("attempt %d of %s: next in %v, want within [%v, %v]", k, d.ID, gap, lo, hi)
			}
			if !strings.Contains(d.LastError, "refused") {
				t.Errorf("last error %q", d.LastError)
			}
			if d.NextAttempt.After(latest) {
				latest = d.NextAttempt
			}
		}
		clk.Set(latest)
	}

	// Evaluation went on: move to 07:04, the failover minute is complete.
	clk.Set(t0.Add(4 * time.Minute))
	advanceUntil(t, clk, time.Second, "db-failover to go to ALARM while the webhook is down", func() bool { return stateOf(e, AlarmDBFailover).State == StateAlarm })
	o := outbox()
	if len(o) != 3 || o[2].Alarm != AlarmDBFailover || o[2].Notification.NewStateValue != StateAlarm || o[2].Attempts != 0 {
		t.Fatalf("outbox %+v: want the ALARM queued behind db-failover's undelivered OK, not attempted", o)
	}
	hist, _ := e.History(AlarmDBFailover)
	failures := 0
	for _, h := range hist {
		if h.Type == HistoryAction && strings.Contains(h.Error, "refused") && strings.Contains(h.Summary, "Failed to execute action webhook") {
			failures++
		}
	}
	if failures < 6 {
		t.Errorf("history records %d failed attempts, want at least 6", failures)
	}

	// The endpoint comes back on the same address.
	l2, err := net.Listen("tcp", addr)
	must(t, err)
	h := &hook{}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l2
	srv.Start()
	defer srv.Close()
	advanceUntil(t, clk, time.Second, "the outbox to drain", func() bool { return len(outbox()) == 0 })
	got := h.all()
	var order []string
	for _, n := range got {
		order = append(order, n.AlarmName+":"+string(n.NewStateValue))
	}
	if len(got) != 3 || h.count(AlarmDBFailover, StateOK) != 1 || h.count(AlarmDBFailover, StateAlarm) != 1 || h.count(AlarmHealthyHosts, StateOK) != 1 {
		t.Fatalf("received %v, want each of the three transitions once", order)
	}
	var fo []State
	for _, n := range got {
		if n.AlarmName == AlarmDBFailover {
			fo = append(fo, n.NewStateValue)
		}
	}
	if fo[0] != StateOK || fo[1] != StateAlarm {
		t.Errorf("db-failover delivered in order %v, want OK then ALARM", fo)
	}
}

// TestHungWebhookDoesNotDelayEvaluation: a delivery in flight that never
// answers does not hold up the evaluation loop.
func TestHungWebhookDoesNotDelayEvaluation(t *testing.T) {
	h := &hook{block: make(chan struct{})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(h.block)
	clk := clock.NewFake(t0.Add(3 * time.Minute))
	lg, _ := newLogs(t)
	store := NewStore(0, 0)
	fakeRegion{t: t, store: store}.run(t0, t0.Add(5*time.Minute), map[time.Time]float64{t0.Add(3*time.Minute + 5*time.Second): 1})
	wh, _ := NewWebhook(WebhookConfig{URL: srv.URL})
	defs, _ := DefaultDefinitions(Params{FleetMin: 2, Actions: []string{"webhook"}})
	e, err := New(Config{Region: "dev", Definitions: defs, Source: store, StateDir: t.TempDir(), Clock: clk, Logger: lg,
		Actions: map[string]Action{"webhook": wh}, DeliveryTimeout: time.Hour})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, e.Start(ctx))
	defer e.Stop(context.Background())
	waitFor(t, "the first transitions", func() bool { return stateOf(e, AlarmDBFailover).State == StateOK })
	advanceUntil(t, clk, time.Second, "db-failover to go to ALARM with every delivery hung", func() bool { return stateOf(e, AlarmDBFailover).State == StateAlarm })
	if n := len(h.all()); n != 0 {
		t.Fatalf("the hung webhook answered %d", n)
	}
}

func TestEngineRefusesBadConfigNamingTheField(t *testing.T) {
	dir := t.TempDir()
	good := Definition{Name: "a", Metric: MetricReplicaLag, Statistic: Maximum, Period: time.Minute, EvaluationPeriods: 3, Threshold: 1, Comparison: GreaterThanThreshold}
	with := func(f func(*Definition)) []Definition { d := good; f(&d); return []Definition{d} }
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0), Definitions: with(func(d *Definition) { d.Metric = "DatabaseFailover" })},
			`alarms.a.metric: unknown metric "DatabaseFailover": the region publishes only`},
		{Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0), Definitions: with(func(d *Definition) { d.DatapointsToAlarm = 5 })},
			"alarms.a.datapoints_to_alarm: must be ≤ evaluation_periods (3), got 5"},
		{Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0), Definitions: with(func(d *Definition) { d.AlarmActions = []string{"pager"} })},
			`alarms.a.alarm_actions: unknown action "pager": configured actions are none`},
		{Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0), Definitions: with(func(d *Definition) { d.Statistic = "p100.5" })}, "alarms.a.statistic"},
		{Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0), Definitions: with(func(d *Definition) { d.Comparison = "GreaterThan" })}, "alarms.a.comparison_operator"},
		{Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0), Definitions: with(func(d *Definition) { d.TreatMissingData = "zero" })}, "alarms.a.treat_missing_data"},
		{Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0), Definitions: with(func(d *Definition) { d.Period = 1500 * time.Millisecond })}, "alarms.a.period: must be whole seconds"},
		{Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0), Definitions: with(func(d *Definition) { d.EvaluationPeriods = 1441 })}, "alarms.a.evaluation_periods: evaluation_periods × period must be at most 24h0m0s"},
		{Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0), Definitions: append(with(func(*Definition) {}), good)}, `alarms.a.name: "a" is defined twice`},
		{Config{Region: "Dev Region", StateDir: dir, Source: NewStore(0, 0)}, "region: must be"},
		{Config{Region: "dev", StateDir: filepath.Join(dir, "nope"), Source: NewStore(0, 0)}, "state_dir"},
		{Config{Region: "dev", StateDir: dir}, "source: must be set"},
	}
	for _, c := range cases {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want it to contain %q", err, c.want)
		}
	}
	// A damaged state file is an error that says what to do, and is kept.
	must(t, os.WriteFile(filepath.Join(dir, StateFile), []byte("{not json"), 0o600))
	_, err := New(Config{Region: "dev", StateDir: dir, Source: NewStore(0, 0)})
	if err == nil || !strings.Contains(err.Error(), "move it aside") {
		t.Errorf("damaged state: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, StateFile)); string(b) != "{not json" {
		t.Errorf("the damaged file was changed")
	}
	other := t.TempDir()
	_, err = New(Config{Region: "dev", StateDir: other, Source: NewStore(0, 0)})
	must(t, err)
	if _, err := New(Config{Region: "prod", StateDir: other, Source: NewStore(0, 0)}); err == nil || !strings.Contains(err.Error(), `belongs to region "dev"`) {
		t.Errorf("another region's state: %v", err)
	}
}

func TestHistoryIsBoundedAndStatusIsAnImmutableSnapshot(t *testing.T) {
	clk := clock.NewFake(t0)
	store := NewStore(0, 0)
	lg, _ := newLogs(t)
	d := Definition{Name: "flip", Metric: MetricReplicaLag, Statistic: Maximum, Period: time.Minute, EvaluationPeriods: 1, Threshold: 1, Comparison: GreaterThanThreshold}
	e, err := New(Config{Region: "dev", Definitions: []Definition{d}, Source: store, StateDir: t.TempDir(), Clock: clk, Logger: lg, HistoryLimit: 3})
	must(t, err)
	before := e.Status()
	keep, _ := json.Marshal(before)
	for i := 0; i < 10; i++ {
		must(t, store.Put(MetricReplicaLag, Sample{Time: t0.Add(time.Duration(i) * time.Minute), Value: float64(2 * (i % 2))}))
		clk.Set(t0.Add(time.Duration(i+1) * time.Minute))
		if tr := e.Tick(context.Background()); len(tr) != 1 {
			t.Fatalf("minute %d: %d transitions, want 1", i, len(tr))
		}
	}
	if after, _ := json.Marshal(before); string(after) != string(keep) {
		t.Errorf("an old snapshot changed under its reader")
	}
	if e.Status() == before || e.Status().Alarms[0].State != StateAlarm {
		t.Errorf("no new snapshot published")
	}
	hist, _ := e.History("flip")
	if len(hist) != 3 || hist[0].NewState != StateAlarm || hist[0].Seq != 10 {
		t.Errorf("history %d items, newest %+v; want the last 3 state updates", len(hist), hist[0])
	}
}

// TestNotBeforeWaitsForHistory: a store born at NotBefore has no history
// before it, which is unknown, not missing: an alarm whose missing data
// breaches stays as it is until its N periods all lie after NotBefore,
// and breaching datapoints from before NotBefore never count.
func TestNotBeforeWaitsForHistory(t *testing.T) {
	clk := clock.NewFake(t0)
	lg, _ := newLogs(t)
	store := NewStore(0, 0)
	// Before NotBefore the region was starting: no healthy host.
	for s := time.Duration(0); s < 2*time.Minute; s += time.Second {
		must(t, store.Put(MetricHealthyHostCount, Sample{Time: t0.Add(s), Value: 0}))
	}
	notBefore := t0.Add(2*time.Minute + 30*time.Second)
	for s := 2*time.Minute + 30*time.Second; s < 10*time.Minute; s += time.Second {
		must(t, store.Put(MetricHealthyHostCount, Sample{Time: t0.Add(s), Value: 2}))
	}
	defs, _ := DefaultDefinitions(Params{FleetMin: 2})
	var hh []Definition
	for _, d := range defs {
		if d.Name == AlarmHealthyHosts {
			hh = append(hh, d) // 3 of 3 × 60 s, missing data breaching
		}
	}
	e, err := New(Config{Region: "dev", Definitions: hh, Source: store, StateDir: t.TempDir(), Clock: clk, Logger: lg, NotBefore: notBefore})
	must(t, err)
	for _, at := range []time.Duration{2 * time.Minute, 3 * time.Minute, 5*time.Minute + 59*time.Second} {
		clk.Set(t0.Add(at))
		if tr := e.Tick(context.Background()); len(tr) != 0 {
			t.Fatalf("at +%s: transitions %+v before 3 periods of history (NotBefore +2m30s)", at, tr)
		}
		if st := stateOf(e, AlarmHealthyHosts); st.State != StateInsufficientData || !st.LastEvaluated.IsZero() {
			t.Fatalf("at +%s: %s evaluated %v, want INSUFFICIENT_DATA, not evaluated", at, st.State, st.LastEvaluated)
		}
	}
	// At +6m the periods 3m, 4m and 5m are complete and after NotBefore:
	// healthy, so OK, with the partial 2m period's zeros left out.
	clk.Set(t0.Add(6 * time.Minute))
	tr := e.Tick(context.Background())
	if len(tr) != 1 || tr[0].NewState != StateOK {
		t.Fatalf("at +6m: transitions %+v, want one to OK", tr)
	}
	for _, dp := range tr[0].ReasonData.EvaluatedDatapoints {
		if dp.Timestamp.Before(notBefore) {
			t.Errorf("a datapoint of %s (before NotBefore) was evaluated", dp.Timestamp)
		}
	}
}
