package scaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// Source is what the loop observes: the group's capacity as the fleet holds
// it, and the metrics and warming instances the scaler decides on.
type Source interface {
	Observe(ctx context.Context, now time.Time) (Capacity, Observed, error)
}

// Actuator carries a decided capacity out (the fleet launches or terminates
// instances to match it).
type Actuator interface {
	SetCapacity(ctx context.Context, c Capacity) error
}

// LoopConfig configures a Loop. Scaling, Source and Actuator are required.
type LoopConfig struct {
	// Scaling holds the policies and scheduled actions.
	Scaling Config
	// Source observes the fleet. Required.
	Source Source
	// Actuator changes the fleet's capacity. Required.
	Actuator Actuator
	// Clock drives the loop. Default clock.Real.
	Clock clock.Clock
	// Logger receives the loop's logs. Default slog.Default().
	Logger *slog.Logger
	// Interval is the time between decisions. Default Scaling.Period (AWS
	// evaluates its alarms once per period).
	Interval time.Duration
	// Activities receives every capacity change. Default a new log of
	// DefaultActivityHistory entries.
	Activities *ActivityLog
	// OnDecision, if set, is called after a decision that changed the group
	// or ran a scheduled action has been carried out (for the event log).
	OnDecision func(Decision)
}

// Loop evaluates Config.Decide every interval and carries the result out
// through the Actuator. It commits a decision only once the Actuator
// succeeded, so a failed change is decided again at the next tick. What it
// holds is published as an immutable Snapshot after every change; readers
// never take its lock.
type Loop struct {
	cfg  LoopConfig
	log  *slog.Logger
	snap atomic.Pointer[Snapshot]

	mu        sync.Mutex
	scaling   Config // the policies and scheduled actions; Scheduled changes at run time
	suspended bool
	state     State
	known     bool
	last      Decision
	failures  int
	lastErr   string

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

var _ interface {
	Start(context.Context) error
	Stop(context.Context) error
} = (*Loop)(nil)

// NewLoop validates cfg and returns a loop that is not yet running.
func NewLoop(cfg LoopConfig) (*Loop, error) {
	var errs []error
	if err := cfg.Scaling.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Source == nil {
		errs = append(errs, errors.New("source: must be set"))
	}
	if cfg.Actuator == nil {
		errs = append(errs, errors.New("actuator: must be set"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new scaling loop: %w", err)
	}
	cfg.Scaling = cfg.Scaling.withDefaults()
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = cfg.Scaling.Period
	}
	if cfg.Activities == nil {
		cfg.Activities = NewActivityLog(0)
	}
	l := &Loop{cfg: cfg, log: cfg.Logger.With("component", "scaling"), scaling: cfg.Scaling}
	l.mu.Lock()
	l.publishLocked()
	l.mu.Unlock()
	return l, nil
}

// Start runs the loop in the background until Stop or ctx ends.
func (l *Loop) Start(ctx context.Context) error {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	if l.done != nil {
		return errors.New("start scaling loop: already started")
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go l.run(ctx, l.done)
	return nil
}

// Stop ends the loop and waits for it (or for ctx).
func (l *Loop) Stop(ctx context.Context) error {
	l.runMu.Lock()
	cancel, done := l.cancel, l.done
	l.runMu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop scaling loop: %w", ctx.Err())
	}
}

func (l *Loop) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		l.safeTick(ctx)
		l.mu.Lock()
		wait := l.cfg.Interval
		for i := 0; i < l.failures && i < 3; i++ {
			wait *= 2 // capped at 8 intervals
		}
		if l.failures > 0 {
			wait = time.Duration(float64(wait) * (0.9 + 0.2*mrand.Float64()))
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-l.cfg.Clock.After(wait):
		}
	}
}

func (l *Loop) safeTick(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			l.mu.Lock()
			l.failures++
			l.lastErr = fmt.Sprint("panic: ", r)
			l.publishLocked()
			l.mu.Unlock()
			l.log.Error("scaling loop panic", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	if _, err := l.Tick(ctx); err != nil && ctx.Err() == nil {
		l.log.Warn("scaling decision not carried out", "err", err)
	}
}

// Tick observes, decides and acts once, now. It returns the decision; an
// error means nothing changed (observation failed: no data, no action; or
// the Actuator failed: the same decision is made again next time). While
// the loop is suspended it observes only: no policy and no scheduled action
// acts, and the runs due meanwhile are skipped, as AWS skips them when its
// AlarmNotification and ScheduledActions processes are suspended.
func (l *Loop) Tick(ctx context.Context) (Decision, error) {
	now := l.cfg.Clock.Now()
	held, obs, err := l.cfg.Source.Observe(ctx, now)
	if err != nil {
		l.fail(err)
		return Decision{}, fmt.Errorf("observe fleet: %w", err)
	}
	l.mu.Lock()
	st := l.state
	if !l.known || held != st.Capacity {
		// First sight, or changed by hand: a new capacity starts a new
		// scale-in run.
		if !l.known || held.Desired != st.Desired {
			st.LastChange = now
		}
		st.Capacity = held
	}
	cfg, suspended := l.scaling, l.suspended
	if suspended {
		st.ScheduledThrough = now
		l.state, l.known = st, true
		l.last = Decision{Next: st, Reason: "scaling suspended: no policy or scheduled action acts"}
		l.failures, l.lastErr = 0, ""
		l.publishLocked()
		l.mu.Unlock()
		return l.last, nil
	}
	l.mu.Unlock()

	d := cfg.Decide(st, obs, now)
	if d.Changed(st) {
		if err := l.cfg.Actuator.SetCapacity(ctx, d.Next.Capacity); err != nil {
			l.fail(err)
			return d, fmt.Errorf("set capacity %s: %w", d.Next.Capacity, err)
		}
	}
	d.Activities = l.cfg.Activities.Add(d.Activities...)
	l.mu.Lock()
	l.state, l.known, l.last = d.Next, true, d
	l.failures, l.lastErr = 0, ""
	l.publishLocked()
	l.mu.Unlock()
	for _, a := range d.Activities {
		l.log.Info("capacity changed", "kind", a.Kind, "source", a.Source, "from", a.From, "to", a.To, "cause", a.Cause)
	}
	for _, r := range d.Runs {
		if r.Failed != "" {
			l.log.Warn("scheduled action refused", "action", r.Action, "reason", r.Failed)
		}
	}
	if l.cfg.OnDecision != nil && (d.Changed(st) || len(d.Runs) > 0) {
		l.cfg.OnDecision(d)
	}
	return d, nil
}

func (l *Loop) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures++
	l.lastErr = err.Error()
	l.publishLocked()
}

// Status is the loop's state for status views.
type Status struct {
	State State `json:"state"`
	// LastDecision is the most recent decision carried out.
	LastDecision Decision `json:"last_decision"`
	// Failures counts consecutive failed ticks; LastError is the latest.
	Failures  int    `json:"failures"`
	LastError string `json:"last_error,omitempty"`
}

// SnapshotRuns is how many upcoming scheduled runs a Snapshot lists.
const SnapshotRuns = 20

// Snapshot is the loop as readers see it, published after every change.
type Snapshot struct {
	Status
	// At is when it was published.
	At time.Time `json:"at"`
	// Suspended is true while scaling is suspended (SetSuspended).
	Suspended bool `json:"suspended"`
	// Policies are the target tracking policies.
	Policies []Policy `json:"policies,omitempty"`
	// Scheduled are the scheduled actions' names, in order.
	Scheduled []string `json:"scheduled,omitempty"`
	// Period is the datapoint period and the time between decisions.
	Period time.Duration `json:"period"`
	// Activities are the recorded capacity changes, oldest first.
	Activities []Activity `json:"activities"`
	// NextRuns are the next SnapshotRuns runs of the scheduled actions.
	NextRuns []Run `json:"next_runs"`
}

// publishLocked stores a new snapshot (l.mu held).
func (l *Loop) publishLocked() {
	now := l.cfg.Clock.Now()
	s := &Snapshot{
		Status: Status{State: l.state, LastDecision: l.last, Failures: l.failures, LastError: l.lastErr},
		At:     now, Suspended: l.suspended, Period: l.scaling.Period,
		Policies:   append([]Policy(nil), l.scaling.Policies...),
		Activities: l.cfg.Activities.List(),
	}
	for _, a := range l.scaling.Scheduled {
		s.Scheduled = append(s.Scheduled, a.Name)
	}
	if !l.suspended {
		s.NextRuns = l.scaling.NextRuns(now, SnapshotRuns)
		if len(s.NextRuns) > SnapshotRuns {
			s.NextRuns = s.NextRuns[:SnapshotRuns]
		}
	}
	l.snap.Store(s)
}

// Snapshot returns the latest published snapshot; it never waits on the loop.
func (l *Loop) Snapshot() *Snapshot { return l.snap.Load() }

// Status returns the loop's state from the latest snapshot.
func (l *Loop) Status() Status { return l.snap.Load().Status }

// Activities returns the recorded capacity changes, oldest first.
func (l *Loop) Activities() []Activity { return l.cfg.Activities.List() }

// NextRuns lists the next n runs of the scheduled actions (none while
// suspended).
func (l *Loop) NextRuns(n int) []Run {
	l.mu.Lock()
	cfg, suspended := l.scaling, l.suspended
	l.mu.Unlock()
	if suspended {
		return nil
	}
	return cfg.NextRuns(l.cfg.Clock.Now(), n)
}

// SetSuspended suspends or resumes scaling (AWS: SuspendProcesses and
// ResumeProcesses of AlarmNotification and ScheduledActions). While
// suspended the group keeps its capacity; scheduled runs due meanwhile are
// skipped, not run on resume. Changing capacity by hand still works.
func (l *Loop) SetSuspended(suspended bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.suspended == suspended {
		return
	}
	l.suspended = suspended
	if !suspended {
		// Nothing that came due while suspended runs now.
		l.state.ScheduledThrough = l.cfg.Clock.Now()
	}
	l.publishLocked()
	l.log.Info("scaling " + map[bool]string{true: "suspended", false: "resumed"}[suspended])
}

// PutScheduledAction adds a scheduled action, or replaces the one of the same
// name (AWS: PutScheduledUpdateGroupAction). Runs due from now on count; an
// action whose time has passed never runs.
func (l *Loop) PutScheduledAction(a ScheduledAction) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.scaling
	next.Scheduled = nil
	replaced := false
	for _, x := range l.scaling.Scheduled {
		if x.Name == a.Name {
			next.Scheduled, replaced = append(next.Scheduled, a), true
			continue
		}
		next.Scheduled = append(next.Scheduled, x)
	}
	if !replaced {
		next.Scheduled = append(next.Scheduled, a)
	}
	if err := next.Validate(); err != nil {
		return fmt.Errorf("put scheduled action %s: %w", a.Name, err)
	}
	l.scaling = next
	l.publishLocked()
	return nil
}

// DeleteScheduledAction removes a scheduled action (AWS:
// DeleteScheduledAction); it reports whether there was one of that name.
func (l *Loop) DeleteScheduledAction(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keep []ScheduledAction
	found := false
	for _, x := range l.scaling.Scheduled {
		if x.Name == name {
			found = true
			continue
		}
		keep = append(keep, x)
	}
	if found {
		l.scaling.Scheduled = keep
		l.publishLocked()
	}
	return found
}

// SetPolicies replaces the target tracking policies and the scheduled
// actions, as applying a changed spec to a running region does (Terraform
// replacing the group's policies and scheduled actions). It keeps the
// period, the datapoint counts and the tolerance, the group's state, the
// activity history and whether the loop is suspended; scheduled actions put
// at run time (PutScheduledAction) are replaced too. The next tick decides
// with the new policies; scheduled runs count from the last tick, never
// retroactively. An invalid set is refused and nothing changes.
func (l *Loop) SetPolicies(policies []Policy, scheduled []ScheduledAction) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.scaling
	next.Policies = append([]Policy(nil), policies...)
	next.Scheduled = append([]ScheduledAction(nil), scheduled...)
	if err := next.Validate(); err != nil {
		return fmt.Errorf("set scaling policies: %w", err)
	}
	l.scaling = next
	l.publishLocked()
	return nil
}
