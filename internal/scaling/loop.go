package scaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"runtime/debug"
	"sync"
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
// succeeded, so a failed change is decided again at the next tick.
type Loop struct {
	cfg LoopConfig
	log *slog.Logger

	mu       sync.Mutex
	state    State
	known    bool
	last     Decision
	failures int
	lastErr  string

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
	return &Loop{cfg: cfg, log: cfg.Logger.With("component", "scaling")}, nil
}

// Start runs the loop in the background until Stop or ctx ends.
func (l *Loop) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
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
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
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
// the Actuator failed: the same decision is made again next time).
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
	l.mu.Unlock()

	d := l.cfg.Scaling.Decide(st, obs, now)
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
}

// Status is a snapshot of the loop for status views.
type Status struct {
	State State `json:"state"`
	// LastDecision is the most recent decision carried out.
	LastDecision Decision `json:"last_decision"`
	// Failures counts consecutive failed ticks; LastError is the latest.
	Failures  int    `json:"failures"`
	LastError string `json:"last_error,omitempty"`
}

// Status returns a snapshot of the loop's state.
func (l *Loop) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{State: l.state, LastDecision: l.last, Failures: l.failures, LastError: l.lastErr}
}

// Activities returns the recorded capacity changes, oldest first.
func (l *Loop) Activities() []Activity { return l.cfg.Activities.List() }

// NextRuns lists the next n runs of the scheduled actions.
func (l *Loop) NextRuns(n int) []Run { return l.cfg.Scaling.NextRuns(l.cfg.Clock.Now(), n) }
