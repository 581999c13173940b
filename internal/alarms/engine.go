package alarms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/backoff"
	"github.com/haven-platform/haven/internal/clock"
)

// Defaults of an engine Config.
const (
	DefaultInterval        = 10 * time.Second
	DefaultHistoryLimit    = 100
	DefaultDeliveryTimeout = 30 * time.Second
	DefaultRetryBase       = 2 * time.Second
	DefaultRetryMax        = 5 * time.Minute
)

// Config configures an Engine. Region, StateDir and Source are required.
type Config struct {
	// Region names the region in correlation ids and idempotency keys
	// (haven/<region>/<alarm>). Required: lower-case letters, digits, '.',
	// '_' and '-'.
	Region string
	// Definitions are the alarms. Default none.
	Definitions []Definition
	// Source supplies datapoints. Required.
	Source Source
	// Actions are the actions definitions may name, by name. Default none.
	Actions map[string]Action
	// StateDir holds StateFile. Required; it must exist.
	StateDir string
	// Clock drives both loops and stamps every record. Default clock.Real.
	Clock clock.Clock
	// Logger receives the engine's logs (component "alarms"). Default
	// slog.Default().
	Logger *slog.Logger
	// Interval is the time between two evaluations of every alarm. Default
	// 10 s (CloudWatch evaluates once a minute; only complete periods are
	// evaluated, so a shorter interval only notices them sooner).
	Interval time.Duration
	// HistoryLimit bounds each alarm's state updates and, separately, its
	// action items. Default 100 each (CloudWatch keeps two weeks).
	HistoryLimit int
	// Retry spaces the attempts of a notification an action failed to
	// deliver. Default base 2 s, doubling, capped at 5 min, ±20 % jitter;
	// attempts never stop.
	Retry backoff.Policy
	// DeliveryTimeout bounds one attempt. Default 30 s.
	DeliveryTimeout time.Duration
	// OnTransition, if set, is called after each state change is persisted
	// (for the region's event log). It must not block.
	OnTransition func(Transition)
	// NotBefore is when the Source began collecting: it has no data from
	// before, which is unknown rather than missing. An alarm is not
	// evaluated (it keeps its state: a new one INSUFFICIENT_DATA, a
	// restored one what it was) until its N evaluated periods all start at
	// or after NotBefore, and datapoints of earlier periods are ignored.
	// CloudWatch's metrics have no beginning; a daemon's store does.
	// Default: zero (the source's history is complete).
	NotBefore time.Time
}

// Transition is one state change of one alarm.
type Transition struct {
	Seq        uint64     `json:"seq"`
	Alarm      string     `json:"alarm"`
	OldState   State      `json:"old_state"`
	NewState   State      `json:"new_state"`
	Reason     string     `json:"reason"`
	ReasonData ReasonData `json:"reason_data"`
	Time       time.Time  `json:"time"`
}

// Status is an immutable snapshot of every alarm and of the outbox, for
// `haven alarms` and the console. Callers must not modify it.
type Status struct {
	Time   time.Time     `json:"time"`
	Region string        `json:"region"`
	Alarms []AlarmStatus `json:"alarms"`
	// Outbox lists the notifications not yet acknowledged, oldest first.
	Outbox []Delivery `json:"outbox"`
	// SaveError is set while the state file cannot be written; deliveries
	// wait until it can.
	SaveError string `json:"save_error,omitempty"`
}

// AlarmStatus is one alarm in a Status.
type AlarmStatus struct {
	Definition Definition  `json:"definition"`
	State      State       `json:"state"`
	Reason     string      `json:"reason"`
	ReasonData *ReasonData `json:"reason_data,omitempty"`
	// StateUpdated is when the alarm entered its state.
	StateUpdated time.Time `json:"state_updated"`
	// LastEvaluated is when the alarm was last evaluated (zero before the
	// first evaluation since start).
	LastEvaluated time.Time `json:"last_evaluated,omitzero"`
	// LastError is the last failure to read its datapoints, cleared by a
	// successful read.
	LastError string `json:"last_error,omitempty"`
	// Pending counts its notifications not yet acknowledged.
	Pending int `json:"pending"`
}

// Engine evaluates alarms on a clock, records every transition with its
// reason, and delivers notifications through actions from a durable outbox.
// Deliveries run apart from evaluation: an endpoint that is down or slow
// never delays an evaluation. It is safe for concurrent use.
type Engine struct {
	cfg  Config
	clk  clock.Clock
	log  *slog.Logger
	defs []Definition // sorted by name, defaults applied

	tickMu sync.Mutex // one evaluation at a time

	mu         sync.Mutex
	st         *fileState
	dirty      bool // a change is not yet in the state file
	saveErr    string
	inflight   map[string]bool // delivery IDs being attempted
	lastEval   map[string]time.Time
	lastErr    map[string]string
	beforeSave func() error // failpoint: an error fails the save as a crash before rename would

	status atomic.Pointer[Status]
	wake   chan struct{}

	runMu      sync.Mutex
	cancel     context.CancelFunc
	done       chan struct{}
	deliveries sync.WaitGroup
}

// New validates cfg, loads the state file (resuming every undelivered
// notification), and returns an engine that is not yet running.
func New(cfg Config) (*Engine, error) {
	var errs []error
	if !nameRE.MatchString(cfg.Region) {
		errs = append(errs, fmt.Errorf("region: must be lower-case letters, digits, '.', '_' or '-', got %q", cfg.Region))
	}
	if cfg.Source == nil {
		errs = append(errs, errors.New("source: must be set"))
	}
	if cfg.StateDir == "" {
		errs = append(errs, errors.New("state_dir: must be set"))
	} else if fi, err := os.Stat(cfg.StateDir); err != nil || !fi.IsDir() {
		errs = append(errs, fmt.Errorf("state_dir: %s must be an existing directory", cfg.StateDir))
	}
	names := []string{}
	for n, a := range cfg.Actions {
		if a == nil {
			errs = append(errs, fmt.Errorf("actions.%s: is nil", n))
		}
		names = append(names, n)
	}
	sort.Strings(names)
	if err := ValidateAll(cfg.Definitions, names); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new alarm engine: %w", err)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.HistoryLimit <= 0 {
		cfg.HistoryLimit = DefaultHistoryLimit
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if cfg.Retry.Base <= 0 {
		cfg.Retry.Base = DefaultRetryBase
	}
	if cfg.Retry.Max <= 0 {
		cfg.Retry.Max = DefaultRetryMax
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Engine{
		cfg: cfg, clk: clock.Or(cfg.Clock), log: cfg.Logger.With("component", "alarms"),
		inflight: map[string]bool{}, lastEval: map[string]time.Time{}, lastErr: map[string]string{},
		wake: make(chan struct{}, 1),
	}
	for _, d := range cfg.Definitions {
		e.defs = append(e.defs, d.WithDefaults())
	}
	slices.SortFunc(e.defs, func(a, b Definition) int { return strings.Compare(a.Name, b.Name) })

	st, fresh, err := load(cfg.StateDir, cfg.Region)
	if err != nil {
		return nil, fmt.Errorf("new alarm engine: %w", err)
	}
	e.st, e.dirty = st, fresh // a fresh file claims the state dir for the region
	now := e.clk.Now().UTC()
	keep := map[string]bool{}
	for _, d := range e.defs {
		keep[d.Name] = true
		if _, ok := st.Alarms[d.Name]; !ok {
			st.Alarms[d.Name] = &alarmRecord{State: StateInsufficientData, Reason: InitialReason, Updated: now,
				States: []HistoryItem{{Time: now, Type: HistoryConfigurationUpdate, Summary: fmt.Sprintf("Alarm %q created", d.Name)}}}
			e.dirty = true
		}
	}
	for name := range st.Alarms {
		if !keep[name] {
			// A removed alarm's state goes; its undelivered notifications
			// stay in the outbox and are still delivered.
			delete(st.Alarms, name)
			e.dirty = true
		}
	}
	if len(st.Outbox) > 0 {
		e.log.Info("resuming undelivered alarm notifications", "count", len(st.Outbox))
	}
	e.mu.Lock()
	e.saveLocked()
	e.publishLocked()
	e.mu.Unlock()
	return e, nil
}

// CorrelationID returns the correlation id of an alarm of a region.
func CorrelationID(region, alarm string) string { return "haven/" + region + "/" + alarm }

// Start runs the evaluation and delivery loops until Stop or ctx ends.
func (e *Engine) Start(ctx context.Context) error {
	e.runMu.Lock()
	defer e.runMu.Unlock()
	if e.done != nil {
		return errors.New("start alarm engine: already started")
	}
	ctx, e.cancel = context.WithCancel(ctx)
	e.done = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.evalLoop(ctx) }()
	go func() { defer wg.Done(); e.deliveryLoop(ctx) }()
	go func(done chan struct{}) { wg.Wait(); e.deliveries.Wait(); close(done) }(e.done)
	return nil
}

// Stop ends both loops and waits for them and for attempts in flight (which
// see their context canceled and are retried after the next start), or for
// ctx.
func (e *Engine) Stop(ctx context.Context) error {
	e.runMu.Lock()
	cancel, done := e.cancel, e.done
	e.runMu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		e.runMu.Lock()
		e.cancel, e.done = nil, nil // Start may run it again
		e.runMu.Unlock()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop alarm engine: %w", ctx.Err())
	}
}

func (e *Engine) evalLoop(ctx context.Context) {
	for {
		e.safely("evaluation", func() { e.Tick(ctx) })
		select {
		case <-ctx.Done():
			return
		case <-e.clk.After(e.cfg.Interval):
		}
	}
}

func (e *Engine) deliveryLoop(ctx context.Context) {
	for {
		var next time.Time
		e.safely("delivery", func() { next, _ = e.dispatch(ctx, nil) })
		var timer <-chan time.Time
		if !next.IsZero() {
			timer = e.clk.After(next.Sub(e.clk.Now()))
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-timer:
		}
	}
}

func (e *Engine) safely(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("alarm "+what+" panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Tick evaluates every alarm once, now, and returns the transitions it
// recorded. They are in the state file, with their notifications in the
// outbox, before Tick returns (unless the file cannot be written: then
// Status().SaveError says so and nothing is delivered until it can).
func (e *Engine) Tick(ctx context.Context) []Transition {
	e.tickMu.Lock()
	defer e.tickMu.Unlock()
	now := e.clk.Now().UTC()
	type result struct {
		ev   Evaluation
		err  error
		skip bool
	}
	results := make([]result, len(e.defs))
	for i, d := range e.defs {
		start, end := Window(d, now)
		if !e.cfg.NotBefore.IsZero() {
			if end.Add(-time.Duration(d.EvaluationPeriods) * d.Period).Before(e.cfg.NotBefore) {
				results[i].skip = true // not enough history yet
				continue
			}
			start = maxTime(start, alignDown(e.cfg.NotBefore.Add(d.Period-1), d.Period))
		}
		pts, err := e.cfg.Source.Datapoints(ctx, Query{Metric: d.Metric, Statistic: d.Statistic, Period: d.Period, Start: start, End: end})
		if err != nil {
			results[i].err = err
			continue
		}
		e.mu.Lock()
		prev := e.st.Alarms[d.Name].State
		e.mu.Unlock()
		results[i].ev = Evaluate(d, pts, prev, now)
	}

	e.mu.Lock()
	var out []Transition
	for i, d := range e.defs {
		r := results[i]
		if r.skip {
			continue
		}
		if r.err != nil {
			if e.lastErr[d.Name] != r.err.Error() {
				e.log.Warn("read alarm datapoints", "alarm", d.Name, "metric", d.Metric, "err", r.err)
			}
			e.lastErr[d.Name] = r.err.Error()
			continue
		}
		delete(e.lastErr, d.Name)
		e.lastEval[d.Name] = now
		if !r.ev.Changed {
			continue
		}
		out = append(out, e.transitionLocked(d, r.ev, now))
	}
	if len(out) > 0 {
		e.dirty = true
	}
	e.saveLocked()
	e.publishLocked()
	saved := !e.dirty
	e.mu.Unlock()

	for _, t := range out {
		e.log.Info("alarm state changed", "alarm", t.Alarm, "from", t.OldState, "to", t.NewState, "seq", t.Seq, "reason", t.Reason)
		if e.cfg.OnTransition != nil {
			e.cfg.OnTransition(t)
		}
	}
	if len(out) > 0 && saved {
		e.poke()
	}
	return out
}

// transitionLocked records a state change and queues its notifications.
func (e *Engine) transitionLocked(d Definition, ev Evaluation, now time.Time) Transition {
	rec := e.st.Alarms[d.Name]
	e.st.Seq++
	t := Transition{Seq: e.st.Seq, Alarm: d.Name, OldState: rec.State, NewState: ev.State, Reason: ev.Reason, ReasonData: ev.ReasonData, Time: now}
	rd := ev.ReasonData
	rec.State, rec.Reason, rec.ReasonData, rec.Updated = ev.State, ev.Reason, &rd, now
	rec.States = appendBounded(rec.States, HistoryItem{Time: now, Type: HistoryStateUpdate, Seq: t.Seq,
		Summary:  fmt.Sprintf("Alarm updated from %s to %s", t.OldState, t.NewState),
		OldState: t.OldState, NewState: t.NewState, Reason: t.Reason, ReasonData: &rd}, e.cfg.HistoryLimit)
	key := fmt.Sprintf("%s/%d", CorrelationID(e.cfg.Region, d.Name), t.Seq)
	n := Notification{
		Version: NotificationVersion, IdempotencyKey: key, CorrelationID: CorrelationID(e.cfg.Region, d.Name),
		Region: e.cfg.Region, AlarmName: d.Name, AlarmDescription: d.Description, Runbook: d.Runbook,
		OldStateValue: t.OldState, NewStateValue: t.NewState, NewStateReason: t.Reason, NewStateReasonData: rd,
		StateChangeTime: now, Trigger: trigger(d),
	}
	for _, a := range d.Actions(t.NewState) {
		e.st.Outbox = append(e.st.Outbox, &Delivery{ID: key + "#" + a, Seq: t.Seq, Alarm: d.Name, Action: a, Notification: n, Created: now, NextAttempt: now})
	}
	return t
}

// saveLocked writes the state file if anything changed since the last
// successful write.
func (e *Engine) saveLocked() {
	if !e.dirty {
		return
	}
	err := e.st.save(e.cfg.StateDir, atomicfile.Options{BeforeRename: e.beforeSave})
	if err != nil {
		if e.saveErr != err.Error() {
			e.log.Error("alarm state not saved; notifications wait until it is", "err", err)
		}
		e.saveErr = err.Error()
		return
	}
	e.dirty, e.saveErr = false, ""
}

// DeliverDue attempts, now, every notification whose next attempt is due
// (at most one per alarm and action at a time, in order), waits for them,
// and returns how many were acknowledged and how many failed. The delivery
// loop does the same in the background without waiting.
func (e *Engine) DeliverDue(ctx context.Context) (delivered, failed int) {
	results := make(chan bool)
	_, started := e.dispatch(ctx, func(ok bool) { results <- ok })
	for range started {
		if <-results {
			delivered++
		} else {
			failed++
		}
	}
	return delivered, failed
}

// dispatch starts an attempt for each due head of an (alarm, action) queue.
// It returns when the earliest head not yet due falls due (zero: none) and
// how many attempts it started; onDone, if set, is called as each ends.
func (e *Engine) dispatch(ctx context.Context, onDone func(ok bool)) (next time.Time, started int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.saveLocked()
	if e.dirty {
		return e.clk.Now().Add(e.cfg.Interval), 0 // the state file first
	}
	now := e.clk.Now()
	heads := map[string]bool{}
	for _, d := range e.st.Outbox {
		q := d.Alarm + "\x00" + d.Action
		if heads[q] {
			continue
		}
		heads[q] = true
		if e.inflight[d.ID] {
			continue
		}
		if d.NextAttempt.After(now) {
			if next.IsZero() || d.NextAttempt.Before(next) {
				next = d.NextAttempt
			}
			continue
		}
		e.inflight[d.ID] = true
		dv := *d
		started++
		e.deliveries.Add(1)
		go func() {
			defer e.deliveries.Done()
			ok := e.attempt(ctx, dv)
			if onDone != nil {
				onDone(ok)
			}
		}()
	}
	return next, started
}

// attempt delivers one notification once and records the outcome.
func (e *Engine) attempt(ctx context.Context, d Delivery) (ok bool) {
	var receipt string
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("action panicked: %v", r)
			}
		}()
		a := e.cfg.Actions[d.Action]
		if a == nil {
			err = fmt.Errorf("action %q is not configured", d.Action)
			return
		}
		actx, cancel := context.WithTimeout(ctx, e.cfg.DeliveryTimeout)
		defer cancel()
		receipt, err = a.Notify(actx, d.Notification)
	}()

	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.inflight, d.ID)
	if err != nil && ctx.Err() != nil {
		// The engine is stopping: not the endpoint's failure. The
		// notification stays due and goes after the next start.
		return false
	}
	i := slices.IndexFunc(e.st.Outbox, func(x *Delivery) bool { return x.ID == d.ID })
	if i < 0 {
		return err == nil
	}
	cur := e.st.Outbox[i]
	now := e.clk.Now().UTC()
	cur.Attempts++
	cur.LastAttempt = now
	item := HistoryItem{Time: now, Type: HistoryAction, Seq: d.Seq, Action: d.Action, Attempt: cur.Attempts}
	if err == nil {
		e.st.Outbox = slices.Delete(e.st.Outbox, i, i+1)
		item.Summary = fmt.Sprintf("Successfully executed action %s for the %s transition", d.Action, d.Notification.NewStateValue)
		item.Receipt = receipt
		e.log.Info("alarm action delivered", "alarm", d.Alarm, "action", d.Action, "key", d.Notification.IdempotencyKey, "attempt", cur.Attempts, "receipt", receipt)
	} else {
		delay := e.cfg.Retry.Delay(cur.Attempts)
		cur.NextAttempt = now.Add(delay)
		cur.LastError = err.Error()
		item.Summary = fmt.Sprintf("Failed to execute action %s for the %s transition; next attempt in %s", d.Action, d.Notification.NewStateValue, delay.Round(time.Millisecond))
		item.Error = err.Error()
		e.log.Warn("alarm action failed; will retry", "alarm", d.Alarm, "action", d.Action, "key", d.Notification.IdempotencyKey, "attempt", cur.Attempts, "retry_in", delay, "err", err)
	}
	if rec := e.st.Alarms[d.Alarm]; rec != nil {
		rec.Actions = appendBounded(rec.Actions, item, e.cfg.HistoryLimit)
	}
	e.dirty = true
	e.saveLocked()
	e.publishLocked()
	// The delivery loop recomputes: the queue's next notification may go
	// now, or this one's retry needs a timer.
	e.poke()
	return err == nil
}

// Status returns the latest snapshot. It never waits on an evaluation or a
// delivery.
func (e *Engine) Status() *Status { return e.status.Load() }

// History returns an alarm's history, newest first: configuration and
// state updates and action outcomes, each kind bounded by HistoryLimit.
func (e *Engine) History(name string) ([]HistoryItem, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, ok := e.st.Alarms[name]
	if !ok {
		var names []string
		for _, d := range e.defs {
			names = append(names, d.Name)
		}
		return nil, fmt.Errorf("alarm history %s: no such alarm; the alarms are %s", name, listOrNone(names))
	}
	out := append(slices.Clone(rec.States), rec.Actions...)
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.After(out[j].Time)
		}
		return out[i].Type == HistoryAction && out[j].Type != HistoryAction
	})
	return out, nil
}

// publishLocked builds and publishes a new snapshot.
func (e *Engine) publishLocked() {
	s := &Status{Time: e.clk.Now().UTC(), Region: e.cfg.Region, SaveError: e.saveErr, Alarms: []AlarmStatus{}, Outbox: []Delivery{}}
	pending := map[string]int{}
	for _, d := range e.st.Outbox {
		s.Outbox = append(s.Outbox, *d)
		pending[d.Alarm]++
	}
	for _, d := range e.defs {
		rec := e.st.Alarms[d.Name]
		as := AlarmStatus{Definition: cloneDef(d), State: rec.State, Reason: rec.Reason, StateUpdated: rec.Updated,
			LastEvaluated: e.lastEval[d.Name], LastError: e.lastErr[d.Name], Pending: pending[d.Name]}
		if rec.ReasonData != nil {
			rd := cloneReasonData(*rec.ReasonData)
			as.ReasonData = &rd
		}
		s.Alarms = append(s.Alarms, as)
	}
	e.status.Store(s)
}

func cloneDef(d Definition) Definition {
	d.AlarmActions = slices.Clone(d.AlarmActions)
	d.OKActions = slices.Clone(d.OKActions)
	d.InsufficientDataActions = slices.Clone(d.InsufficientDataActions)
	if d.AWS != nil {
		a := *d.AWS
		a.EventCategories = slices.Clone(a.EventCategories)
		d.AWS = &a
	}
	return d
}

func cloneReasonData(r ReasonData) ReasonData {
	r.RecentDatapoints = slices.Clone(r.RecentDatapoints)
	r.EvaluatedDatapoints = slices.Clone(r.EvaluatedDatapoints)
	return r
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
