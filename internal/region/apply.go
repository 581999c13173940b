package region

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/plan"
	"github.com/haven-platform/haven/internal/secrets"
	"github.com/haven-platform/haven/internal/spec"
)

// running is the spec the region runs and its configuration: the one it
// started with, then the last one applied in full.
type running struct {
	spec spec.Spec
	cfg  Configs
}

// now returns the spec and configuration the region runs.
func (r *Region) now() *running {
	if p := r.cur.Load(); p != nil {
		return p
	}
	return &running{spec: r.spec, cfg: r.cfg}
}

// runningSHA256 is the hex SHA-256 of the spec text the region runs: the
// file it started with, or the last one applied.
func (r *Region) runningSHA256() string {
	if p := r.specSHA256.Load(); p != nil {
		return *p
	}
	return r.opts.SpecSHA256
}

// Roller replaces the fleet's instances with ones of a new launch
// template. fleetRoller (the fleet's own replace path) implements it;
// the releases' instance refresh (health gates, rollback) can replace it.
type Roller interface {
	Roll(ctx context.Context, f *fleet.Fleet, t fleet.LaunchTemplate, progress func(string)) error
}

// fleetRoller rolls through fleet.Roll: launch before terminate, one at a time.
type fleetRoller struct{ timeout time.Duration }

func (fr fleetRoller) Roll(ctx context.Context, f *fleet.Fleet, t fleet.LaunchTemplate, progress func(string)) error {
	v, err := f.SetLaunchTemplate(t)
	if err != nil {
		return err
	}
	progress(fmt.Sprintf("fleet: launch template version %d", v))
	return f.Roll(ctx, fr.timeout, func(old, repl string) { progress(fmt.Sprintf("fleet: %s replaced by %s", old, repl)) })
}

// recordUp records the spec the region came up on, and ends the journal
// of an apply a stopped daemon left unfinished: the region now runs one
// spec in full, and the journal says which.
func (r *Region) recordUp() {
	st := plan.Store{Dir: plan.StoreDir(r.opts.StateDir)}
	hash := plan.Hash(r.spec)
	if j, ok, err := st.Journal(); err != nil {
		r.warn("spec record: " + err.Error())
	} else if ok && j.Unfinished() {
		j.Outcome, j.EndedAt = plan.Resolve(j, hash), time.Now().UTC()
		j.Error = "the daemon stopped in the middle of the apply"
		if err := st.SaveJournal(j); err != nil {
			r.warn("spec record: " + err.Error())
		}
		r.say("spec: the apply %s → %s was interrupted; the region runs %s in full (%s)", j.From, j.To, hash, j.Outcome)
		r.events.Add("region", "apply-"+strings.ReplaceAll(j.Outcome, " ", "-"), j.To, "interrupted apply "+j.From+" → "+j.To+": "+j.Outcome)
	}
	if _, err := st.SaveRecord(r.spec, "up", time.Now()); err != nil {
		r.warn("spec record: " + err.Error())
		return
	}
	r.say("spec: recorded %s", hash)
	r.refreshSpecState()
}

// refreshSpecState publishes the spec record for the status.
func (r *Region) refreshSpecState() {
	ss := r.SpecState()
	r.specState.Store(&ss)
}

// SpecState is the recorded spec's hash and the last apply.
func (r *Region) SpecState() api.SpecState {
	st := plan.Store{Dir: plan.StoreDir(r.opts.StateDir)}
	var out api.SpecState
	if rec, _, ok, err := st.Record(); err == nil && ok {
		out.Hash, out.RecordedAt, out.By = rec.Hash, rec.At, rec.By
	}
	if j, ok, err := st.Journal(); err == nil && ok {
		s := &api.ApplySummary{From: j.From, To: j.To, StartedAt: j.StartedAt, EndedAt: j.EndedAt, Outcome: j.Outcome, Error: j.Error, Changes: len(j.Steps)}
		for _, step := range j.Steps {
			if step.Status == plan.StepApplied {
				s.Applied++
			}
		}
		out.LastApply = s
	}
	return out
}

// Plan compares the running spec and the live fleet with the request's spec.
func (r *Region) Plan(_ context.Context, req api.SpecRequest) (plan.Plan, error) {
	p, _, err := r.plan(req)
	return p, err
}

func (r *Region) plan(req api.SpecRequest) (plan.Plan, spec.Spec, error) {
	next, err := spec.Parse([]byte(req.Spec), req.File)
	if err != nil {
		return plan.Plan{}, spec.Spec{}, err
	}
	var live plan.Live
	if f := r.view().fleet; f != nil {
		c := f.Capacity()
		live.Capacity = &plan.Capacity{Min: c.Min, Desired: c.Desired, Max: c.Max}
	}
	return plan.Diff(r.now().spec, live, next), next, nil
}

// Apply carries out the plan from the running spec to the request's: a
// refused change refuses the whole plan before anything is touched; the
// in-place changes, then the rolling ones, are made component by
// component, each recorded in the journal; the spec record is replaced
// only when every change is made. A change that fails rolls the ones made
// back (the old spec applied the same way) and the record stays.
func (r *Region) Apply(ctx context.Context, req api.SpecRequest) (api.ApplyResult, error) {
	r.mu.Lock()
	phase := r.phase
	r.mu.Unlock()
	if phase != api.PhaseReady {
		return api.ApplyResult{}, &api.Error{Message: fmt.Sprintf("apply: the region is %s, not ready; wait for `haven status` to say ready", phase), Status: http.StatusConflict}
	}
	if !r.applyMu.TryLock() {
		return api.ApplyResult{}, &api.Error{Message: "apply: another apply is running; wait for it (haven status shows it)", Status: http.StatusConflict}
	}
	defer r.applyMu.Unlock()
	p, next, err := r.plan(req)
	if err != nil {
		return api.ApplyResult{}, &api.Error{Message: err.Error(), Status: http.StatusBadRequest}
	}
	res := api.ApplyResult{Plan: p, Log: []string{}}
	if err := p.RefusedError(); err != nil {
		return res, &api.Error{Message: err.Error(), Status: http.StatusConflict}
	}
	if p.Empty() {
		res.Outcome, res.Spec = "no changes", r.SpecState()
		return res, nil
	}
	old := r.now()
	layout := r.layout
	if layout.AppCommand, err = resolveCommand(r.opts.BinDir, next.App.Command); err != nil {
		return res, &api.Error{Message: err.Error(), Status: http.StatusBadRequest}
	}
	cfg, err := configs(next, layout)
	if err != nil {
		return res, &api.Error{Message: err.Error(), Status: http.StatusBadRequest}
	}
	text, err := plan.EncodeSpec(next)
	if err != nil {
		return res, err
	}
	st := plan.Store{Dir: plan.StoreDir(r.opts.StateDir)}
	j := plan.Journal{From: p.From, To: p.To, Spec: text, StartedAt: time.Now().UTC()}
	for _, c := range p.Changes {
		j.Steps = append(j.Steps, plan.Step{Change: c, Status: plan.StepPending})
	}
	if err := st.SaveJournal(j); err != nil {
		return res, err
	}
	defer r.refreshSpecState()
	logf := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		res.Log = append(res.Log, msg)
		r.say("apply: %s", msg)
	}
	logf("%s → %s: %d in place, %d restart, %d rolling", p.From, p.To, p.Summary.InPlace, p.Summary.Restart, p.Summary.Rolling)
	next2 := &running{spec: next, cfg: cfg}
	done, applyErr := r.execute(ctx, p, old, next2, logf, func(component string) error {
		for i, step := range j.Steps {
			rolling := step.Action == plan.Rolling
			if (component == rollingStep && rolling) || (component != rollingStep && !rolling && step.Component == component) {
				j.Steps[i].Status = plan.StepApplied
			}
		}
		if err := st.SaveJournal(j); err != nil {
			return err
		}
		return r.failpoints.Hit(failpoint.ApplyCrashAfterStep)
	})
	if applyErr != nil {
		logf("failed: %v; rolling back", applyErr)
		back := plan.Diff(next, plan.Live{}, old.spec)
		if _, err := r.execute(context.WithoutCancel(ctx), back, next2, old, logf, func(string) error { return nil }); err != nil {
			applyErr = fmt.Errorf("%w; rolling back failed too: %v", applyErr, err)
		}
		j.Outcome, j.Error, j.EndedAt = plan.OutcomeRolledBack, applyErr.Error(), time.Now().UTC()
		_ = st.SaveJournal(j)
		res.Outcome, res.Error, res.Spec = plan.OutcomeRolledBack, applyErr.Error(), r.SpecState()
		r.events.Add("region", "apply-rolled-back", p.To, applyErr.Error())
		return res, &api.Error{Message: fmt.Sprintf("apply %s: %v; the region is back on %s", p.To, applyErr, p.From), Status: http.StatusInternalServerError}
	}
	logf("made: %s", strings.Join(done, ", "))
	r.cur.Store(next2)
	sum := sha256.Sum256([]byte(req.Spec))
	sha := hex.EncodeToString(sum[:])
	r.specSHA256.Store(&sha)
	if _, err := st.SaveRecord(next, "apply", time.Now()); err != nil {
		return res, err
	}
	j.Outcome, j.EndedAt = plan.OutcomeApplied, time.Now().UTC()
	if err := st.SaveJournal(j); err != nil {
		return res, err
	}
	logf("applied: the region runs %s", p.To)
	r.events.Add("region", "apply-applied", p.To, fmt.Sprintf("%s → %s: %d changes", p.From, p.To, len(p.Changes)))
	res.Outcome, res.Spec = plan.OutcomeApplied, r.SpecState()
	return res, nil
}

// rollingStep is the journal's name of the rolling replacement.
const rollingStep = "fleet rolling"

// execute makes the plan's changes, component by component: the in-place
// ones first, then the restarts, then the derived state, then the rolling
// ones. After each component it calls journal. It returns the components
// done.
func (r *Region) execute(ctx context.Context, p plan.Plan, from, to *running, logf func(string, ...any), journal func(component string) error) ([]string, error) {
	v := r.view()
	touched := map[string]bool{}
	for _, c := range p.Changes {
		if c.Action == plan.InPlace || c.Action == plan.Restart {
			touched[c.Component] = true
		}
	}
	var done []string
	step := func(component string, fn func() error) error {
		if !touched[component] {
			return nil
		}
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", component, err)
		}
		done = append(done, component)
		return journal(component)
	}
	ns, nc := to.spec, to.cfg
	steps := []struct {
		component string
		fn        func() error
	}{
		{"fleet", func() error {
			if v.fleet == nil {
				return errors.New("the fleet is not running")
			}
			live := v.fleet.Capacity()
			desired := min(max(live.Desired, ns.Fleet.Min), ns.Fleet.Max)
			if ns.Fleet.Desired != from.spec.Fleet.Desired {
				desired = ns.Fleet.Desired
			}
			if err := v.fleet.SetCapacity(ns.Fleet.Min, desired, ns.Fleet.Max); err != nil {
				return err
			}
			if err := v.fleet.SetHealthCheck(nc.Fleet.HealthCheckType, nc.Fleet.GracePeriod); err != nil {
				return err
			}
			logf("fleet: min %d, desired %d, max %d, health check %s, grace %s", ns.Fleet.Min, desired, ns.Fleet.Max, ns.Fleet.HealthCheckType, ns.Fleet.GracePeriod)
			return nil
		}},
		{"load balancer", func() error {
			if v.lb == nil {
				return errors.New("the load balancer is not running")
			}
			if err := v.lb.SetTargetGroup(nc.LB); err != nil {
				return err
			}
			hc := ns.App.HealthCheck
			logf("load balancer: health check %s every %s (timeout %s, %d/%d), deregistration delay %s, %s",
				hc.Path, hc.Interval, hc.Timeout, hc.Healthy, hc.Unhealthy, ns.LoadBalancer.DeregistrationDelay, ns.LoadBalancer.Algorithm)
			return nil
		}},
		{"secrets", func() error { return r.applySecrets(ctx, v, ns, nc, logf) }},
		{"network", func() error {
			if v.vpc == nil {
				logf("network: no VPC (loopback ranges): security groups are recorded, not enforced")
				return nil
			}
			if err := v.vpc.SetGroups(ctx, nc.Network.Groups); err != nil {
				return err
			}
			logf("network: security groups replaced (%s)", groupNames(nc.Network.Groups))
			return nil
		}},
		{"scaling", func() error { return r.applyScaling(v, nc, logf) }},
		{"releases", func() error {
			if v.releases == nil {
				return errors.New("the release controller is not running")
			}
			if err := v.releases.SetPolicy(nc.Releases); err != nil {
				return err
			}
			ir := ns.Fleet.InstanceRefresh
			logf("releases: instance refresh healthy %d–%d%%, checkpoints %v, bake %s", ir.MinHealthyPercentage, ir.MaxHealthyPercentage, ir.Checkpoints, ir.Bake)
			return nil
		}},
		{"release", func() error { logf("release: recorded; it runs at the next haven up"); return nil }},
		{"edge", func() error { logf("edge: recorded for haven aws tfvars"); return nil }},
		{"aws", func() error { logf("aws: recorded for haven aws tfvars"); return nil }},
		{"database endpoint", func() error { return r.moveEndpoint(ctx, v, from, to, logf) }},
	}
	for _, s := range steps {
		if err := step(s.component, s.fn); err != nil {
			return done, err
		}
	}
	// The alarms: their own fields, and what they derive from others
	// (fleet.min is healthy-hosts-below-min's threshold).
	if alarmsChanged(from.cfg.Ops, nc.Ops) {
		if err := r.applyAlarms(ctx, nc.Ops, logf); err != nil {
			return done, fmt.Errorf("alarms: %w", err)
		}
	}
	if touched["alarms"] {
		done = append(done, "alarms")
		if err := journal("alarms"); err != nil {
			return done, err
		}
	}
	if err := r.derive(ctx, v, nc); err != nil {
		return done, fmt.Errorf("derived state: %w", err)
	}
	if p.Has(plan.Rolling) {
		if v.fleet == nil {
			return done, errors.New("fleet: the fleet is not running")
		}
		t := nc.Fleet.Template
		t.Env = r.appEnvOf(v, nc)
		if err := r.roller.Roll(ctx, v.fleet, t, func(msg string) { logf("%s", msg) }); err != nil {
			return done, fmt.Errorf("fleet: %w", err)
		}
		done = append(done, rollingStep)
		if err := journal(rollingStep); err != nil {
			return done, err
		}
	}
	return done, nil
}

// movable is a database endpoint that can move while it serves (every
// kind the region runs: NAT, Proxy, Routed).
type movable interface {
	AddAddr(ctx context.Context, addr string) error
	RemoveAddr(ctx context.Context, addr string) error
}

// moveEndpoint moves the database endpoint from from's address to to's
// without a moment when the secret names an address nothing serves: the
// endpoint serves both addresses, the secret names the new one (derive),
// then the old address closes and its connections, and every other one
// through the endpoint, are cut as on a failover, so the app reconnects
// and reads the secret again. New instances get the new PGHOST and PGPORT
// (a new launch template version; running instances are not replaced: the
// secret's host and port win over their environment).
func (r *Region) moveEndpoint(ctx context.Context, v *tiers, from, to *running, logf func(string, ...any)) error {
	oldAddr, newAddr := from.spec.Database.Endpoint, to.spec.Database.Endpoint
	if oldAddr == newAddr {
		return nil
	}
	ep, ok := v.dbEP.(movable)
	if !ok || v.dbEP == nil {
		return errors.New("the database endpoint is not running")
	}
	if err := ep.AddAddr(ctx, newAddr); err != nil {
		return err
	}
	if err := r.derive(ctx, v, to.cfg); err != nil {
		return errors.Join(fmt.Errorf("point the database secret at %s: %w", newAddr, err), ep.RemoveAddr(context.WithoutCancel(ctx), newAddr))
	}
	if err := ep.RemoveAddr(ctx, oldAddr); err != nil {
		return err
	}
	if v.fleet != nil {
		t := to.cfg.Fleet.Template
		t.Env = r.appEnvOf(v, to.cfg)
		if _, err := v.fleet.SetLaunchTemplate(t); err != nil {
			return err
		}
	}
	logf("database endpoint: moved %s → %s; the secret names %s; connections through the endpoint were cut and reconnect", oldAddr, newAddr, to.cfg.DBSecret.Endpoint)
	return nil
}

// applySecrets replaces the rotation schedule and the strategy.
func (r *Region) applySecrets(ctx context.Context, v *tiers, ns spec.Spec, nc Configs, logf func(string, ...any)) error {
	if v.cred == nil || v.secrets == nil {
		return errors.New("the secrets service is not running")
	}
	if err := v.cred.SetStrategy(ns.Secrets.DB.Strategy); err != nil {
		return err
	}
	r.schedMu.Lock()
	defer r.schedMu.Unlock()
	if r.sched != nil {
		if err := r.sched.Stop(ctx); err != nil {
			return err
		}
		r.sched = nil
	}
	if nc.Rotation > 0 {
		s := secrets.NewScheduler(secrets.SchedulerConfig{
			Driver: v.secrets.Driver(), Every: map[string]time.Duration{nc.DBSecret.Name: nc.Rotation}, CheckInterval: nc.RotationCheck,
		})
		if err := s.Start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		r.sched = s
	}
	logf("secrets: %s rotates every %s (%s)", nc.DBSecret.Name, ns.Secrets.DB.Rotation, ns.Secrets.DB.Strategy)
	return nil
}

// derive recomputes everything the region derives from the spec rather
// than configures once: the database secret's host, port and dbname, the
// app role's policies (its own secret; its S3 statements and the signing
// key, once the object store and the key are up). It runs on every start
// and on every apply, so nothing derived survives a spec change by
// accident. (The security groups' ruleset is rebuilt from the spec on
// start and by the network step of an apply.)
func (r *Region) derive(ctx context.Context, v *tiers, c Configs) error {
	if v.cred == nil || v.policies == nil {
		return nil
	}
	if err := v.cred.SetEndpoint(c.DBSecret.Endpoint, c.DBSecret.Database); err != nil {
		return err
	}
	if moved, err := v.cred.Follow(ctx); err != nil {
		return err
	} else if moved {
		r.say("secrets: %s now names %s, database %s", c.DBSecret.Name, c.DBSecret.Endpoint, c.DBSecret.Database)
	}
	arns := []string{v.cred.ARN()}
	if v.idpSecretARN != "" {
		arns = append(arns, v.idpSecretARN) // the app's client secret at the identity provider
	}
	return v.policies.Set(c.AppRole, append([]iam.Policy{appPolicy(arns...)}, storagePolicies(v, c)...)...)
}

// appPolicy is the app role's policy: read its own secrets, the database
// credential and, with the identity tier, its client secret.
func appPolicy(secretARNs ...string) iam.Policy {
	return iam.Policy{Version: "2012-10-17", Statement: []iam.Statement{{
		Sid: "ReadOwnDBSecret", Effect: iam.Allow,
		Action:   iam.StringList{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
		Resource: iam.StringList(secretARNs),
	}}}
}
