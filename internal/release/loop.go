package release

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// FleetInstance is one instance as the fleet lists it.
type FleetInstance struct {
	ID, Zone, Version string
	// State is pending, in-service, draining, terminating or terminated.
	State string
	// Health is the fleet's view: initial, healthy or unhealthy.
	Health string
	// Reason is why it is stopping or stopped ("exited: exit status 1").
	Reason     string
	LaunchedAt time.Time
}

// Fleet is what a rollout drives: the Auto Scaling Group.
type Fleet interface {
	// Instances lists the fleet's instances, including those stopping.
	Instances() []FleetInstance
	// Desired is the desired capacity.
	Desired() int
	// Launch starts one instance of v in zone now.
	Launch(ctx context.Context, v Version, zone string) (string, error)
	// Terminate drains and stops instance id without replacing it; it
	// returns once the instance is gone.
	Terminate(ctx context.Context, id string) error
	// Use makes v the version later capacity launches run.
	Use(v Version) error
	// SetRefresh hands launches and terminations to the rollout (on) or
	// back to the fleet (off).
	SetRefresh(on bool)
}

// TargetCounts are the load balancer's cumulative counts for one target.
type TargetCounts struct {
	ID        string
	Requests  uint64
	Errors5xx uint64
	// Latency counts responses per bucket of Config.LatencyBounds, then above.
	Latency []uint64
}

// Config configures a Controller.
type Config struct {
	// Store keeps versions and rollouts. Required.
	Store *Store
	// Fleet is driven by rollouts. Required.
	Fleet Fleet
	// Zones are the fleet's zone names, in the fleet's order. Required.
	Zones []string
	// Targets returns the load balancer's per-target counts. Default nil:
	// the errors and latency gates see no traffic.
	Targets func() []TargetCounts
	// LatencyBounds are the upper bounds of TargetCounts.Latency's buckets.
	LatencyBounds []time.Duration
	// Alarms returns each alarm's state by name ("ALARM", "OK", ...).
	// Default nil: no alarms, and a rollback_on list is refused.
	Alarms func() map[string]string
	// Policy is the instance refresh's preferences and gates.
	Policy Policy
	// Breaking says whether version next carries a migration that breaks
	// current, the version still serving while it rolls out (see
	// docs/deploys.md), and which. It is called while Deploy holds the
	// controller. Default nil: no check.
	Breaking func(ctx context.Context, next, current Version) (string, error)
	// Interval is the loop's period. Default 250ms.
	Interval time.Duration
	// OnEvent receives rollout events (kind, rollout ID, message).
	OnEvent func(kind, subject, msg string)
	// Logger and Clock default to slog.Default() and real time.
	Logger *slog.Logger
	Clock  clock.Clock
}

// DeployRequest is a new version and its rollout. Fields left empty keep
// the current version's.
type DeployRequest struct {
	// Command replaces the command; ${ARTIFACT} names the artifact.
	Command []string `json:"command,omitempty"`
	// Env sets variables over the current version's; an empty value removes one.
	Env map[string]string `json:"env,omitempty"`
	// Artifact is the path of an app build on the daemon's machine. Without
	// Command, it runs in place of the current command's program.
	Artifact string `json:"artifact,omitempty"`
	// AllowBreaking lets a version with a breaking migration roll out.
	AllowBreaking bool `json:"allow_breaking,omitempty"`
}

// Status is the release tier at one instant.
type Status struct {
	Current  Version  `json:"current"`
	Active   *Rollout `json:"active,omitempty"`
	Last     *Rollout `json:"last,omitempty"`
	Policy   Policy   `json:"policy"`
	Versions int      `json:"versions"`
	// Instances counts live instances by version.
	Instances map[string]int `json:"instances"`
}

// ErrInProgress is returned (wrapped) for a deploy while a rollout runs.
var ErrInProgress = errors.New("a rollout is in progress")

// ErrBreaking is returned (wrapped) for a breaking migration without AllowBreaking.
var ErrBreaking = errors.New("breaking migration")

// Controller runs rollouts: Deploy and Rollback start one, a loop carries
// it out with Decide, the Store records every step before it is acted on.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	clock clock.Clock

	// pol is the instance refresh's policy (cfg.Policy until SetPolicy).
	pol atomic.Pointer[Policy]

	mu     sync.Mutex
	active *Rollout
	abort  string // an operator asked to roll the active rollout back

	// loop-only state
	base     map[string]TargetCounts // counts when the rollout began
	seen     map[string]TargetCounts // last counts of every target seen since
	hashOf   map[string]string       // instance → its version's hash
	reasons  map[string]string       // instance → why it stopped
	stopping map[string]bool         // terminations under way
	launchEr string
	stops    sync.WaitGroup

	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Controller; Start runs its loop.
func New(cfg Config) (*Controller, error) {
	cfg.Policy = cfg.Policy.WithDefaults()
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("configure releases: %w", err)
	}
	if cfg.Store == nil || cfg.Fleet == nil || len(cfg.Zones) == 0 {
		return nil, errors.New("configure releases: a store, a fleet and its zones are required")
	}
	if len(cfg.Policy.RollbackOn) > 0 && cfg.Alarms == nil {
		return nil, fmt.Errorf("configure releases: fleet.instance_refresh.rollback_on names alarms %v, but the region has no alarms to watch", cfg.Policy.RollbackOn)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Controller{cfg: cfg, log: cfg.Logger.With("component", "release"), clock: clock.Or(cfg.Clock),
		base: map[string]TargetCounts{}, seen: map[string]TargetCounts{}, hashOf: map[string]string{},
		reasons: map[string]string{}, stopping: map[string]bool{}}
	c.pol.Store(&cfg.Policy)
	return c, nil
}

// Ensure records the spec's template as a version and returns the version
// the fleet should launch: the current one, or the spec's when there is
// none yet. A spec that changed since is a new version, rolled out by
// `haven deploy`, never silently.
func (c *Controller) Ensure(spec Template) (Version, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, _, err := c.cfg.Store.Add(spec, "", "spec", c.clock.Now())
	if err != nil {
		return Version{}, fmt.Errorf("record the spec's launch template: %w", err)
	}
	cur, ok := c.cfg.Store.Current()
	if !ok {
		if err := c.cfg.Store.SetCurrent(v.ID); err != nil {
			return Version{}, err
		}
		return v, nil
	}
	if cur.Hash != v.Hash {
		c.log.Warn("haven.yaml's app differs from the current version; `haven deploy` rolls it out", "current", cur.ID, "spec", v.ID)
	}
	return cur, nil
}

// Start resumes a rollout a previous daemon left unfinished, then runs the
// loop until Stop. A resumed rollout keeps its step and the instances of
// its version the fleet still has; its bake starts again, because the
// traffic figures died with the old daemon.
func (c *Controller) Start(ctx context.Context) error {
	c.mu.Lock()
	rs := c.cfg.Store.Rollouts()
	if n := len(rs); n > 0 && !rs[n-1].Phase.Final() {
		r := rs[n-1]
		have := map[string]bool{}
		for _, in := range c.cfg.Fleet.Instances() {
			have[in.ID] = true
		}
		r.Launched = slices.DeleteFunc(r.Launched, func(id string) bool { return !have[id] })
		r.StepReachedAt = time.Time{}
		r.Resumed = append(r.Resumed, c.clock.Now())
		if r.Phase == PhaseBaking {
			r.Phase = PhaseRolling
		}
		if err := c.cfg.Store.PutRollout(r); err != nil {
			c.mu.Unlock()
			return err
		}
		c.active = &r
		c.cfg.Fleet.SetRefresh(true)
		c.resetTraffic()
		c.emit("resumed", r.ID, fmt.Sprintf("rollout %s (%s → %s, %s) resumed after a daemon restart at step %d of %v with %d of its instances",
			r.ID, r.From, r.Target, r.Phase, r.Step+1, r.Checkpoints, len(r.Launched)))
	}
	c.mu.Unlock()
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel, c.done = cancel, make(chan struct{})
	go c.run(loopCtx)
	return nil
}

// Stop ends the loop (a rollout stays recorded where it is) and waits for
// terminations under way.
func (c *Controller) Stop(ctx context.Context) error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	<-c.done
	done := make(chan struct{})
	go func() { c.stops.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop releases: %w", ctx.Err())
	}
}

func (c *Controller) run(ctx context.Context) {
	defer close(c.done)
	t := c.clock.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.safeTick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

func (c *Controller) safeTick(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("rollout tick panicked", "panic", r)
		}
	}()
	c.tick(ctx)
}

// tick observes, decides, records and acts once.
func (c *Controller) tick(ctx context.Context) {
	c.mu.Lock()
	if c.active == nil {
		c.mu.Unlock()
		return
	}
	r := *c.active
	abort := c.abort
	c.abort = ""
	c.mu.Unlock()

	o := c.observe(r)
	var pl Plan
	if abort != "" && (r.Phase == PhaseRolling || r.Phase == PhaseBaking) {
		pl = fail(c.policy(), r, o, "manual", abort)
	} else {
		pl = Decide(c.policy(), r, o)
	}
	if err := c.record(pl.Next); err != nil {
		c.log.Error("record rollout", "rollout", r.ID, "err", err)
		return // act only on what is recorded
	}
	if pl.Event != "" {
		c.emit(pl.Kind, r.ID, pl.Event)
	}
	for _, id := range pl.Terminate {
		if c.stopping[id] {
			continue
		}
		c.stopping[id] = true
		c.stops.Add(1)
		go func() {
			defer c.stops.Done()
			if err := c.cfg.Fleet.Terminate(context.WithoutCancel(ctx), id); err != nil {
				c.log.Warn("terminate for rollout", "instance", id, "err", err)
			}
		}()
	}
	if len(pl.Launch) > 0 {
		v, _ := c.version(pl.Next.Target)
		next := pl.Next
		for _, z := range pl.Launch {
			id, err := c.cfg.Fleet.Launch(ctx, v, c.cfg.Zones[z])
			if err != nil {
				c.launchEr = fmt.Sprintf("launch of %s in zone %s failed: %v", v.ID, c.cfg.Zones[z], err)
				break
			}
			next.Launched = append(next.Launched, id)
			c.hashOf[id] = v.Hash
		}
		if err := c.record(next); err != nil {
			c.log.Error("record rollout", "rollout", r.ID, "err", err)
		}
	}
}

func (c *Controller) record(r Rollout) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.cfg.Store.PutRollout(r); err != nil {
		return err
	}
	if r.Phase.Final() {
		c.finishLocked(r) // in the same critical section: no reader sees one without the other
	} else {
		c.active = &r
	}
	return nil
}

// finish makes the fleet launch the version the rollout ended on and hands
// it back its plan.
func (c *Controller) finishLocked(r Rollout) {
	end := r.Target // succeeded on it, or rolled back to it
	if r.Phase == PhaseFailed {
		end = r.From // a failed rollout: the last good version
		if r.RolledBackFrom != "" {
			end = r.Target // a failed rollback: its target was the good one
		}
	}
	if v, ok := c.cfg.Store.Version(end); ok {
		if err := c.cfg.Fleet.Use(v); err != nil {
			c.log.Error("use version", "version", end, "err", err)
		}
		if err := c.cfg.Store.SetCurrent(end); err != nil {
			c.log.Error("record current version", "version", end, "err", err)
		}
	}
	c.cfg.Fleet.SetRefresh(false)
	c.active = nil
}

func (c *Controller) version(id string) (Version, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg.Store.Version(id)
}

// observe builds the observation of r from the fleet, the load balancer and the alarms.
func (c *Controller) observe(r Rollout) Observation {
	o := Observation{Now: c.clock.Now(), Zones: len(c.cfg.Zones), Desired: c.cfg.Fleet.Desired(), Lost: map[string]string{}}
	zoneIdx := map[string]int{}
	for i, z := range c.cfg.Zones {
		zoneIdx[z] = i
	}
	hashes := map[string]string{}
	c.mu.Lock()
	for _, v := range c.cfg.Store.Versions() {
		hashes[v.ID] = v.Hash
	}
	c.mu.Unlock()
	live := map[string]bool{}
	for _, in := range c.cfg.Fleet.Instances() {
		h := hashes[in.Version]
		c.hashOf[in.ID] = h
		if in.Reason != "" {
			c.reasons[in.ID] = in.Reason
		}
		if in.State != "pending" && in.State != "in-service" {
			continue
		}
		live[in.ID] = true
		o.Instances = append(o.Instances, Instance{ID: in.ID, Zone: zoneIdx[in.Zone], Hash: h,
			InService: in.State == "in-service" && in.Health == "healthy", Health: in.Health, LaunchedAt: in.LaunchedAt})
	}
	for _, id := range r.Launched {
		if !live[id] {
			o.Lost[id] = c.reasons[id]
			if o.Lost[id] == "" {
				o.Lost[id] = "gone"
			}
		}
	}
	o.LaunchError, c.launchEr = c.launchEr, ""
	if c.cfg.Targets != nil {
		for _, t := range c.cfg.Targets() {
			c.seen[t.ID] = t
		}
	}
	newLat, oldLat := make([]uint64, len(c.cfg.LatencyBounds)+1), make([]uint64, len(c.cfg.LatencyBounds)+1)
	for id, t := range c.seen {
		b := c.base[id]
		tr, lat := &o.Old, oldLat
		if c.hashOf[id] == r.TargetHash {
			tr, lat = &o.New, newLat
		}
		tr.Requests += t.Requests - min(b.Requests, t.Requests)
		tr.Errors5xx += t.Errors5xx - min(b.Errors5xx, t.Errors5xx)
		for i := range min(len(t.Latency), len(lat)) {
			var bi uint64
			if i < len(b.Latency) {
				bi = min(b.Latency[i], t.Latency[i])
			}
			lat[i] += t.Latency[i] - bi
		}
	}
	o.New.P99, o.Old.P99 = quantile(newLat, c.cfg.LatencyBounds, 0.99), quantile(oldLat, c.cfg.LatencyBounds, 0.99)
	if c.cfg.Alarms != nil && len(c.policy().RollbackOn) > 0 {
		st := c.cfg.Alarms()
		for _, a := range c.policy().RollbackOn {
			if st[a] == "ALARM" {
				o.InAlarm = append(o.InAlarm, a)
			}
		}
	}
	return o
}

// quantile returns the upper bound of the bucket holding quantile q (the
// last bound, doubled, for the open bucket); 0 with no counts.
func quantile(counts []uint64, bounds []time.Duration, q float64) time.Duration {
	var total uint64
	for _, n := range counts {
		total += n
	}
	if total == 0 || len(bounds) == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.999999)
	var acc uint64
	for i, n := range counts {
		acc += n
		if acc >= rank {
			if i < len(bounds) {
				return bounds[i]
			}
			break
		}
	}
	return 2 * bounds[len(bounds)-1]
}

// resetTraffic takes the load balancer's counts now as the rollout's baseline.
func (c *Controller) resetTraffic() {
	c.base, c.seen = map[string]TargetCounts{}, map[string]TargetCounts{}
	c.reasons, c.stopping = map[string]string{}, map[string]bool{}
	if c.cfg.Targets != nil {
		for _, t := range c.cfg.Targets() {
			c.base[t.ID], c.seen[t.ID] = t, t
		}
	}
}

// Deploy records a version from req over the current one and starts its
// rollout. It refuses while another rollout runs, and a template equal to
// the current version's.
func (c *Controller) Deploy(ctx context.Context, req DeployRequest) (Rollout, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.busyLocked(); err != nil {
		return Rollout{}, err
	}
	cur, ok := c.cfg.Store.Current()
	if !ok {
		return Rollout{}, errors.New("deploy: no current version yet; wait for the region to be ready")
	}
	t := Template{Command: slices.Clone(cur.Command), Env: maps.Clone(cur.Env), Artifact: cur.Artifact}
	if len(req.Command) > 0 {
		t.Command = slices.Clone(req.Command)
	}
	if req.Artifact != "" {
		t.Artifact = nil
		if len(req.Command) == 0 {
			if cur.Artifact != nil && len(t.Command) > 0 && t.Command[0] == cur.Artifact.Path {
				t.Command[0] = "${ARTIFACT}"
			} else if len(t.Command) > 0 {
				t.Command[0] = "${ARTIFACT}"
			}
		}
	}
	for k, v := range req.Env {
		if t.Env == nil {
			t.Env = map[string]string{}
		}
		if v == "" {
			delete(t.Env, k)
		} else {
			t.Env[k] = v
		}
	}
	v, _, err := c.cfg.Store.Add(t, req.Artifact, "deploy", c.clock.Now())
	if err != nil {
		return Rollout{}, fmt.Errorf("deploy: %w", err)
	}
	if v.Hash == cur.Hash {
		return Rollout{}, fmt.Errorf("deploy: nothing to deploy: the template is the same as the current %s (%s); change the command, the environment or the artifact", cur.ID, cur.Hash)
	}
	if c.cfg.Breaking != nil {
		which, err := c.cfg.Breaking(ctx, v, cur)
		if err != nil {
			return Rollout{}, fmt.Errorf("deploy %s: check its migrations: %w", v.ID, err)
		}
		if which != "" && !req.AllowBreaking {
			return Rollout{}, fmt.Errorf("deploy %s: %w: %s would break %s, which keeps serving during the rollout; "+
				"split it into expand and contract migrations (docs/deploys.md), or give --allow-breaking to accept errors from the old version while both run: %w",
				v.ID, ErrBreaking, which, cur.ID, ErrBreaking)
		}
		return c.startLocked(v, cur, "deploy", which)
	}
	return c.startLocked(v, cur, "deploy", "")
}

// Rollback rolls the fleet back to version to (default: the version the
// current one replaced) with a rollout under the same rules and gates. While
// a rollout runs, with no version or that rollout's previous version, it
// turns that rollout around at once.
func (c *Controller) Rollback(_ context.Context, to string) (Rollout, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.active; a != nil {
		if (to == "" || to == a.From) && (a.Phase == PhaseRolling || a.Phase == PhaseBaking) {
			c.abort = "rollback requested by an operator"
			return *a, nil
		}
		return Rollout{}, c.busyLocked()
	}
	cur, ok := c.cfg.Store.Current()
	if !ok {
		return Rollout{}, errors.New("rollback: no current version yet")
	}
	if to == "" {
		rs := c.cfg.Store.Rollouts()
		for i := len(rs) - 1; i >= 0; i-- {
			if rs[i].Phase == PhaseSucceeded && rs[i].Target == cur.ID {
				to = rs[i].From
				break
			}
		}
		if to == "" {
			return Rollout{}, fmt.Errorf("rollback: %s did not replace an earlier version by a rollout; name one (haven deploy history lists them)", cur.ID)
		}
	}
	v, ok := c.cfg.Store.Version(to)
	if !ok {
		return Rollout{}, fmt.Errorf("rollback: no version %q; haven deploy history --versions lists them", to)
	}
	if v.Hash == cur.Hash {
		return Rollout{}, fmt.Errorf("rollback: %s runs the same template as the current %s", v.ID, cur.ID)
	}
	return c.startLocked(v, cur, "rollback", "")
}

// policy is the policy in effect.
func (c *Controller) policy() Policy { return *c.pol.Load() }

// SetPolicy replaces the instance refresh's preferences and gates (haven
// apply of fleet.instance_refresh). Rollouts started from now on take all
// of it; a rollout under way keeps the checkpoints and bake it started
// with and is judged by the new gates from its next tick.
func (c *Controller) SetPolicy(p Policy) error {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("set instance refresh policy: %w", err)
	}
	if len(p.RollbackOn) > 0 && c.cfg.Alarms == nil {
		return fmt.Errorf("set instance refresh policy: fleet.instance_refresh.rollback_on names alarms %v, but the region has no alarms to watch", p.RollbackOn)
	}
	c.pol.Store(&p)
	return nil
}

func (c *Controller) busyLocked() error {
	if a := c.active; a != nil {
		return fmt.Errorf("rollout %s (%s → %s) is %s since %s: %w; wait for it to finish (haven deploy status) or roll it back (haven deploy rollback)",
			a.ID, a.From, a.Target, a.Phase, a.StartedAt.Format(time.RFC3339), ErrInProgress)
	}
	return nil
}

func (c *Controller) startLocked(v, cur Version, requested, allowedBreaking string) (Rollout, error) {
	p := c.policy()
	r := Rollout{ID: c.cfg.Store.NextRolloutID(), Target: v.ID, TargetHash: v.Hash, From: cur.ID, FromHash: cur.Hash,
		Phase: PhaseRolling, Checkpoints: slices.Clone(p.Checkpoints), Bake: p.Bake, StartedAt: c.clock.Now(), Requested: requested,
		AllowedBreaking: allowedBreaking}
	if err := c.cfg.Store.PutRollout(r); err != nil {
		return Rollout{}, err
	}
	c.cfg.Fleet.SetRefresh(true)
	c.resetTraffic()
	c.active = &r
	c.emit("started", r.ID, fmt.Sprintf("rollout %s started (%s): %s → %s, checkpoints %v, bake %s, healthy %d–%d%%",
		r.ID, requested, cur.ID, v.ID, r.Checkpoints, r.Bake, p.MinHealthy, p.MaxHealthy))
	if allowedBreaking != "" {
		c.emit("allowed-breaking", r.ID, fmt.Sprintf("rollout %s carries breaking migrations, allowed by --allow-breaking: %s", r.ID, allowedBreaking))
	}
	return r, nil
}

// Status reports the current version, the active or last rollout, and
// the live instances per version.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Policy: c.policy(), Versions: len(c.cfg.Store.Versions()), Instances: map[string]int{}}
	st.Current, _ = c.cfg.Store.Current()
	if c.active != nil {
		a := *c.active
		st.Active = &a
	}
	if rs := c.cfg.Store.Rollouts(); len(rs) > 0 {
		l := rs[len(rs)-1]
		st.Last = &l
	}
	for _, in := range c.cfg.Fleet.Instances() {
		if in.State == "pending" || in.State == "in-service" {
			st.Instances[in.Version]++
		}
	}
	return st
}

// History lists rollouts, newest first.
func (c *Controller) History() []Rollout {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.cfg.Store.Rollouts()
	slices.Reverse(rs)
	return rs
}

// Versions lists versions, newest first.
func (c *Controller) Versions() []Version {
	c.mu.Lock()
	defer c.mu.Unlock()
	vs := c.cfg.Store.Versions()
	slices.Reverse(vs)
	return vs
}

func (c *Controller) emit(kind, subject, msg string) {
	c.log.Info(msg, "kind", kind, "rollout", subject)
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(kind, subject, msg)
	}
}
