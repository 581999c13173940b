package region

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"time"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/api/routes"
	"github.com/haven-platform/haven/internal/console"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/metrics"
	"github.com/haven-platform/haven/internal/secrets"
	"github.com/haven-platform/haven/internal/spec"
)

// OpsConfig is the operations tier: the metrics endpoint and its sampler,
// the alarms, the console and the drill reports.
type OpsConfig struct {
	// MetricsListen and ConsoleListen are the loopback listeners.
	MetricsListen, ConsoleListen string
	// Alarms are the spec's alarms with their periods divided by the time
	// scale (whole seconds, at least 1 s).
	Alarms []alarms.Definition
	// Actions are the spec's alarm actions.
	Actions []spec.AlarmAction
	// EvalInterval is how often the engine evaluates; SampleInterval how
	// often the sampler reads the metrics: a quarter of the shortest
	// period, within 250 ms–10 s and 250 ms–1 s.
	EvalInterval, SampleInterval time.Duration
	// StateDir holds the alarm engine's state file (alarms.json).
	StateDir string
	// ReportsDir keeps the drill reports.
	ReportsDir string
	// InstanceCPU and InstanceMemory are the launch template's limits.
	InstanceCPU    float64
	InstanceMemory int64
}

// opsConfig derives the operations tier from the spec (pure).
func opsConfig(s spec.Spec, l Layout) (OpsConfig, error) {
	defs, err := s.AlarmDefinitions()
	if err != nil {
		return OpsConfig{}, fmt.Errorf("alarms: %w", err)
	}
	scale := s.TimeScale
	if scale < 1 {
		scale = 1
	}
	shortest := time.Minute
	for i := range defs {
		p := time.Duration(math.Round(defs[i].Period.Seconds()/scale)) * time.Second
		defs[i].Period = max(p, time.Second)
		shortest = min(shortest, defs[i].Period)
	}
	quarter := shortest / 4
	return OpsConfig{
		MetricsListen: s.Metrics.Listen, ConsoleListen: s.Console.Listen,
		Alarms: defs, Actions: s.Alarms.Actions,
		EvalInterval:   min(max(quarter, 250*time.Millisecond), 10*time.Second),
		SampleInterval: min(max(quarter, 250*time.Millisecond), time.Second),
		StateDir:       l.StateDir, ReportsDir: filepath.Join(l.StateDir, "drills"),
		InstanceCPU: s.App.Instance.CPU, InstanceMemory: int64(s.App.Instance.Memory),
	}, nil
}

// opsTiers gives the metrics collectors the tiers published so far; each
// is nil while it does not run.
type opsTiers struct{ r *Region }

var _ metrics.Tiers = opsTiers{}

func (o opsTiers) LB() metrics.LBReader {
	if l := o.r.view().lb; l != nil {
		return l
	}
	return nil
}

func (o opsTiers) Fleet() metrics.FleetReader {
	if f := o.r.view().fleet; f != nil {
		return f
	}
	return nil
}

func (o opsTiers) Cgroups() metrics.CgroupReader {
	if c := o.r.view().cgroups; c != nil {
		return c
	}
	return nil
}

func (o opsTiers) DB() metrics.DBReader {
	if d := o.r.view().db; d != nil {
		return d
	}
	return nil
}

func (o opsTiers) Backups() metrics.BackupReader {
	if v := o.r.view(); v.backups != nil && v.bkUp {
		return v.backups
	}
	return nil
}

func (o opsTiers) Secrets() metrics.SecretsReader {
	if v := o.r.view(); v.secrets != nil && v.secUp {
		return v.secrets
	}
	return nil
}

func (o opsTiers) Alarms() metrics.AlarmsReader {
	if e := o.r.view().alarms; e != nil {
		return e
	}
	return nil
}

// startMetrics serves /metrics and starts the sampler that feeds the
// alarms and the console's charts. The tiers show up in it as they start.
func (r *Region) startMetrics(ctx context.Context) error {
	c := r.cfg.Ops
	m, err := metrics.New(metrics.Config{Tiers: opsTiers{r}, Region: r.spec.Name, Version: drill.HavenVersion(),
		InstanceCPU: c.InstanceCPU, InstanceMemory: c.InstanceMemory, Listen: c.MetricsListen, Logger: r.opts.Logger})
	if err != nil {
		return err
	}
	if err := m.Start(ctx); err != nil {
		return fmt.Errorf("%w (is another region using this port? set metrics.listen)", err)
	}
	r.t.metrics = m
	r.t.alarmStore = alarms.NewStore(0, 0)
	s, err := metrics.NewSampler(metrics.SamplerConfig{Gatherer: m.Gatherer(), Store: r.t.alarmStore, Interval: c.SampleInterval, Logger: r.opts.Logger})
	if err != nil {
		return err
	}
	if err := s.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	r.t.sampler = s
	r.say("metrics: http://%s/metrics", m.Addr())
	return nil
}

func (r *Region) stopMetrics(ctx context.Context) error {
	var errs []error
	if r.t.sampler != nil {
		errs = append(errs, r.t.sampler.Stop(ctx))
	}
	return errors.Join(append(errs, r.t.metrics.Stop(ctx))...)
}

// secretCredentials reads an action's credential from the region's secrets
// store at each delivery, so a rotation applies at the next one and the
// secret is never in the spec or the state file.
type secretCredentials struct {
	r            *Region
	action, name string
}

func (c secretCredentials) Credential(context.Context) (alarms.Credential, error) {
	v := c.r.view()
	if v.secrets == nil {
		return alarms.Credential{}, fmt.Errorf("action %s: the secrets store is not open (yet)", c.action)
	}
	out, err := v.secrets.Store().GetSecretValue(secrets.GetSecretValueInput{SecretId: c.name})
	if err != nil {
		return alarms.Credential{}, fmt.Errorf("action %s: read credentials_secret %q: %w; create it with `haven secrets put %s`", c.action, c.name, err, c.name)
	}
	if out.SecretString == nil {
		return alarms.Credential{}, fmt.Errorf("action %s: credentials_secret %q holds binary data, not JSON", c.action, c.name)
	}
	cred, err := alarms.CredentialFromSecret(*out.SecretString)
	if err != nil {
		return alarms.Credential{}, fmt.Errorf("action %s: credentials_secret %q: %w", c.action, c.name, err)
	}
	return cred, nil
}

// buildActions makes the spec's alarm actions.
func (r *Region) buildActions(actions []spec.AlarmAction) (map[string]alarms.Action, error) {
	out := map[string]alarms.Action{}
	for _, a := range actions {
		switch {
		case a.Webhook != nil:
			cfg := alarms.WebhookConfig{URL: a.Webhook.URL}
			if a.Webhook.CredentialsSecret != "" {
				cfg.Credentials = secretCredentials{r, a.Name, a.Webhook.CredentialsSecret}
			}
			w, err := alarms.NewWebhook(cfg)
			if err != nil {
				return nil, fmt.Errorf("alarms.actions %s: %w", a.Name, err)
			}
			out[a.Name] = w
		case a.ServiceNow != nil:
			sn := a.ServiceNow
			cfg := alarms.ServiceNowConfig{InstanceURL: sn.InstanceURL, Credentials: secretCredentials{r, a.Name, sn.CredentialsSecret},
				AssignmentGroup: sn.AssignmentGroup, CallerID: sn.CallerID, Category: sn.Category}
			if sn.Impact > 0 {
				cfg.Impact = strconv.Itoa(sn.Impact)
			}
			if sn.Urgency > 0 {
				cfg.Urgency = strconv.Itoa(sn.Urgency)
			}
			s, err := alarms.NewServiceNow(cfg)
			if err != nil {
				return nil, fmt.Errorf("alarms.actions %s: %w", a.Name, err)
			}
			out[a.Name] = s
		}
	}
	return out, nil
}

// startAlarms runs the alarm engine on the sampler's store. Its state file
// carries every alarm's state and undelivered notification across daemon
// restarts: a restart resumes them and fires nothing twice.
func (r *Region) startAlarms(ctx context.Context) error {
	// The store holds what the sampler saw while the region started (no
	// target healthy yet): the alarms judge the region from now on.
	r.alarmsSince = time.Now()
	e, err := r.newAlarmEngine(r.cfg.Ops)
	if err != nil {
		return err
	}
	if err := e.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	r.t.alarms = e
	st := e.Status()
	r.say("alarms: %d alarms evaluated every %s on periods from %s (time_scale %g); %d notifications pending",
		len(st.Alarms), r.cfg.Ops.EvalInterval, shortestPeriod(r.cfg.Ops.Alarms), max(r.spec.TimeScale, 1), len(st.Outbox))
	return nil
}

// newAlarmEngine makes the engine of c's alarms and actions over the
// region's alarm state.
func (r *Region) newAlarmEngine(c OpsConfig) (*alarms.Engine, error) {
	acts, err := r.buildActions(c.Actions)
	if err != nil {
		return nil, err
	}
	return alarms.New(alarms.Config{
		Region: r.spec.Name, Definitions: c.Alarms, Source: r.t.alarmStore, Actions: acts, StateDir: c.StateDir,
		Logger: r.opts.Logger, Interval: c.EvalInterval, OnTransition: r.alarmEvent, NotBefore: r.alarmsSince,
	})
}

// alarmStates is each alarm's state by name, for the deploy's rollback_on
// gate: empty until the alarm step starts, so no alarm is in ALARM before
// the engine judges the region.
func (r *Region) alarmStates() map[string]string {
	out := map[string]string{}
	if e := r.view().alarms; e != nil {
		for _, a := range e.Status().Alarms {
			out[a.Definition.Name] = string(a.State)
		}
	}
	return out
}

// alarmsChanged reports whether the alarm engine must take a new
// configuration: its definitions (a threshold, fleet.min, time_scale, a
// custom alarm), its actions or its interval.
func alarmsChanged(from, to OpsConfig) bool {
	return !reflect.DeepEqual(from.Alarms, to.Alarms) || !reflect.DeepEqual(from.Actions, to.Actions) || from.EvalInterval != to.EvalInterval
}

// applyAlarms gives the running alarm engine a new configuration, as
// PutMetricAlarm updates an existing alarm: the engine stops, and one of
// the new configuration starts over the same state file, so every alarm
// keeps its state and history and the outbox is delivered as before (an
// attempt the stop interrupted is made again, with its idempotency key).
// A configuration that does not build leaves the old engine running.
func (r *Region) applyAlarms(ctx context.Context, c OpsConfig, logf func(string, ...any)) error {
	old := r.t.alarms
	if old == nil {
		return errors.New("the alarm engine is not running")
	}
	if _, err := r.buildActions(c.Actions); err != nil {
		return err
	}
	if err := old.Stop(ctx); err != nil {
		return err
	}
	restart := func(err error) error {
		if serr := old.Start(context.WithoutCancel(ctx)); serr != nil {
			return fmt.Errorf("%w; restarting the old engine failed too: %v", err, serr)
		}
		return err
	}
	e, err := r.newAlarmEngine(c)
	if err != nil {
		return restart(err)
	}
	if err := e.Start(context.WithoutCancel(ctx)); err != nil {
		return restart(err)
	}
	r.t.alarms = e
	r.publish()
	logf("alarms: %d alarms evaluated every %s on periods from %s; states kept, %d notifications pending",
		len(c.Alarms), c.EvalInterval, shortestPeriod(c.Alarms), len(e.Status().Outbox))
	return nil
}

func shortestPeriod(defs []alarms.Definition) time.Duration {
	var p time.Duration
	for _, d := range defs {
		if p == 0 || d.Period < p {
			p = d.Period
		}
	}
	return p
}

func (r *Region) stopAlarms(ctx context.Context) error {
	if r.t.alarms == nil {
		return nil
	}
	return r.t.alarms.Stop(ctx)
}

// alarmEvent records an alarm's state change in the event log, with its
// runbook.
func (r *Region) alarmEvent(t alarms.Transition) {
	attrs := map[string]any{"old_state": string(t.OldState), "new_state": string(t.NewState), "seq": t.Seq,
		"runbook": alarms.RunbookPath(t.Alarm)}
	for _, d := range r.now().cfg.Ops.Alarms {
		if d.Name == t.Alarm {
			if d.Runbook != "" {
				attrs["runbook"] = d.Runbook
			} else {
				delete(attrs, "runbook")
			}
		}
	}
	r.events.Emit(api.Event{Component: "alarms", Kind: "state-" + alarmKind(t.NewState), Subject: t.Alarm,
		Message: fmt.Sprintf("%s: %s → %s: %s", t.Alarm, t.OldState, t.NewState, t.Reason), Attrs: attrs})
}

func alarmKind(s alarms.State) string {
	switch s {
	case alarms.StateAlarm:
		return "alarm"
	case alarms.StateOK:
		return "ok"
	}
	return "insufficient-data"
}

// startConsole serves the web console on its loopback port.
func (r *Region) startConsole(ctx context.Context) error {
	c, err := console.New(console.Config{Listen: r.cfg.Ops.ConsoleListen, Region: consoleRegion{r}, Logger: r.opts.Logger})
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("%w (is another region using this port? set console.listen)", err)
	}
	r.t.console = c
	r.say("console: %s (`haven console` opens it)", c.URL())
	return nil
}

func (r *Region) stopConsole(ctx context.Context) error { return r.t.console.Stop(ctx) }

// consoleRegion is the region as the console reads it: snapshots only.
type consoleRegion struct{ r *Region }

var _ console.Region = consoleRegion{}

func (c consoleRegion) Status() api.Status                  { return c.r.Status() }
func (c consoleRegion) Events(q api.EventQuery) []api.Event { return c.r.events.Query(q) }
func (c consoleRegion) Series() []metrics.Point {
	if s := c.r.view().sampler; s != nil {
		return s.Series()
	}
	return nil
}
func (c consoleRegion) Alarms() *alarms.Status {
	if e := c.r.view().alarms; e != nil {
		return e.Status()
	}
	return nil
}
func (c consoleRegion) AlarmHistory(name string) ([]alarms.HistoryItem, error) {
	e := c.r.view().alarms
	if e == nil {
		return nil, errors.New("the alarms are not running yet")
	}
	return e.History(name)
}
func (c consoleRegion) Reports() drill.ReportStore {
	return drill.ReportStore{Dir: c.r.cfg.Ops.ReportsDir}
}
func (c consoleRegion) DB() (api.DBStatus, bool) {
	d := c.r.view().db
	if d == nil {
		return api.DBStatus{}, false
	}
	st := d.Status()
	out := api.DBStatus{Epoch: int64(st.State.Epoch), EndpointEpoch: int64(st.EndpointEpoch), Primary: st.State.Primary, Standby: st.State.Standby,
		StandbyEligible: st.State.StandbyEligible, SyncEnabled: st.State.SyncEnabled, Endpoint: c.r.spec.Database.Endpoint, SyncState: "none", ReplicationState: "none"}
	if rp := st.Replication; rp != nil {
		out.SyncState, out.ReplicationState, out.LagBytes, out.LagSeconds = rp.Sync, rp.State, int64(rp.LagBytes), rp.LagSeconds
	}
	for _, n := range st.Nodes {
		out.Nodes = append(out.Nodes, api.DBNodeStatus{Name: n.Name, Zone: n.Zone, Address: n.Addr, Role: n.Role, Health: n.Health, PID: n.Pid, InRecovery: n.InRecovery})
		if n.Name == st.State.Primary {
			out.PrimaryZone = n.Zone
		}
		if n.Name == st.State.Standby {
			out.StandbyZone = n.Zone
		}
	}
	return out, true
}

var _ routes.Ops = (*regionAPI)(nil)

// Alarms is the alarm engine, nil before it runs.
func (a *regionAPI) Alarms() routes.Alarms {
	if e := a.r.view().alarms; e != nil {
		return e
	}
	return nil
}

// ConsoleLoginURL mints a one-time console login link.
func (a *regionAPI) ConsoleLoginURL() (string, error) {
	c := a.r.view().console
	if c == nil {
		return "", errors.New("the console is not running (yet): `haven status` shows the region's phase")
	}
	return c.LoginURL()
}

// Reports is where drill reports are kept.
func (a *regionAPI) Reports() drill.ReportStore {
	return drill.ReportStore{Dir: a.r.cfg.Ops.ReportsDir}
}
