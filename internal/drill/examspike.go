package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/scaling"
)

// The exam-spike drill's three runs.
const (
	// RunReactive: target tracking alone meets the step.
	RunReactive = "reactive"
	// RunPrescaled: a one-time scheduled action raises min before the step,
	// and a second one lowers it after the drop (the seed's 07:00 pre-scale
	// and evening scale-in).
	RunPrescaled = "prescaled"
	// RunOff: scaling suspended, the fleet stays at min: the control.
	RunOff = "off"
)

// The names of the scheduled actions the prescaled run puts (and removes).
const (
	prescaleAction = "exam-spike-prescale"
	eveningAction  = "exam-spike-evening"
)

// ExamSpikeConfig configures the exam-spike drill. Zero fields take the
// defaults documented in docs/scaling.md, sized for a 2-core machine with
// 0.1-CPU instances.
type ExamSpikeConfig struct {
	// Workload is what the virtual users do. Required.
	Workload Workload
	// Users is how many seeded students log in. Default 50.
	Users int
	// Base and Peak are the request rates (per second) before and after the
	// step. Default 40 and 400 (10×).
	Base, Peak float64
	// Baseline is how long Base runs before the step. Default 60s.
	Baseline time.Duration
	// Ramp, if set, moves from Base to Peak linearly over this long instead
	// of stepping; the CLI's default is 30s. Default 0: a step.
	Ramp time.Duration
	// Hold is how long the peak lasts, the ramp included. Default 120s.
	Hold time.Duration
	// After is how long Base runs after the drop: long enough for the fleet
	// to scale back in (15 metric periods) and rest at min. Default 180s.
	After time.Duration
	// SLOP99 is the latency objective: p99 at most this. Default 500ms.
	SLOP99 time.Duration
	// MaxErrorRate is the error objective, a fraction. Default 0.001 (0.1 %).
	MaxErrorRate float64
	// Window is how long after the step the reactive run's p99 may exceed
	// the SLO. Default ReactionWindow(period, ...) from the region's scaler.
	Window time.Duration
	// PreScale is the min the prescaled run's scheduled action sets before
	// the step. Default: the instances the reactive run had in service at
	// the drop, where target tracking settled for the peak (6 if it did not
	// run).
	PreScale int
	// PreScaleLead is how long before the step the pre-scale runs.
	// Default 30s.
	PreScaleLead time.Duration
	// Runs lists the runs, in order. Default reactive, prescaled, off.
	Runs []string
	// Timeout bounds each request. Default 10s.
	Timeout time.Duration
	// SettleTimeout bounds the wait for the fleet to be back at min before
	// a run. Default 5m.
	SettleTimeout time.Duration
	// Progress, if set, receives the load generator's live line (a
	// terminal only).
	Progress io.Writer
	// Log, if set, receives a line at each phase of the drill.
	Log io.Writer
}

// ExamSpikeReport is the drill's JSON: the common envelope, the profile and
// the scaler it ran against, and one record per run.
type ExamSpikeReport struct {
	Envelope
	Profile ExamSpikeProfile `json:"profile"`
	Scaler  ExamSpikeScaler  `json:"scaler"`
	// Machine is what the drill ran on: it shares the 2 cores with the
	// region, and the load average says how busy it was.
	Machine Machine         `json:"machine"`
	Runs    []*ExamSpikeRun `json:"runs"`
}

// ExamSpikeProfile is the load the runs apply.
type ExamSpikeProfile struct {
	Workload     string  `json:"workload"`
	Users        int     `json:"users"`
	BaseRPS      float64 `json:"base_rps"`
	PeakRPS      float64 `json:"peak_rps"`
	BaselineS    float64 `json:"baseline_s"`
	RampS        float64 `json:"ramp_s"`
	HoldS        float64 `json:"hold_s"`
	AfterS       float64 `json:"after_s"`
	SLOP99MS     float64 `json:"slo_p99_ms"`
	MaxErrorRate float64 `json:"max_error_rate"`
	// WindowS is how long after the step the reactive run's p99 may exceed
	// the SLO, and WindowWhy how it is derived.
	WindowS   float64 `json:"window_s"`
	WindowWhy string  `json:"window_why"`
	TimeoutS  float64 `json:"request_timeout_s"`
}

// ExamSpikeScaler is the region's scaler and fleet as the drill found them.
type ExamSpikeScaler struct {
	Min       int                 `json:"min"`
	Max       int                 `json:"max"`
	PeriodS   float64             `json:"period_s"`
	WarmupS   float64             `json:"warmup_s"`
	TimeScale float64             `json:"time_scale"`
	Policies  []api.ScalingPolicy `json:"policies"`
}

// Machine describes where the drill ran.
type Machine struct {
	CPUs int `json:"cpus"`
	// LoadAvgBefore and LoadAvgAfter are the 1-minute load averages when
	// the drill started and ended (Linux /proc/loadavg; -1 unknown).
	LoadAvgBefore float64 `json:"load_avg_1m_before"`
	LoadAvgAfter  float64 `json:"load_avg_1m_after"`
}

// ExamSpikeRun is one run's record.
type ExamSpikeRun struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Pass        bool      `json:"pass"`
	Reasons     []string  `json:"reasons,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	EndedAt     time.Time `json:"ended_at"`
	// StepS and DropS are when the step and the drop came, from the start.
	StepS float64 `json:"step_s"`
	DropS float64 `json:"drop_s"`
	// Requests, Failed and ErrorRate count every request of the run.
	Requests  int64          `json:"requests"`
	Failed    int64          `json:"failed"`
	ErrorRate float64        `json:"error_rate"`
	Errors    map[string]int `json:"errors,omitempty"`
	// P99MS is the whole run's p99; P99OutsideWindowMS excludes the
	// requests due within the window after the step; P99WindowMS is the
	// window's own; P99HoldMS is the peak's (step to drop).
	P99MS              float64 `json:"p99_ms"`
	P99OutsideWindowMS float64 `json:"p99_outside_window_ms"`
	P99WindowMS        float64 `json:"p99_window_ms"`
	P99HoldMS          float64 `json:"p99_hold_ms"`
	// ErrorRateOutsideWindow counts only requests due outside the window.
	ErrorRateOutsideWindow float64 `json:"error_rate_outside_window"`
	// SLOBrokenS counts the seconds whose p99 exceeded the SLO or that had
	// more than MaxErrorRate errors.
	SLOBrokenS int `json:"slo_broken_s"`
	// RecoveryS is the time from the step until p99 is back inside the SLO
	// for good (to the drop): 0 when it never left it, null when it never
	// came back before the drop.
	RecoveryS *float64 `json:"recovery_s"`
	// InstanceSeconds sums the instances in service or pending, second by
	// second; FixedAtPeak is PeakInstances for the whole run, and Ratio
	// their quotient.
	InstanceSeconds            float64 `json:"instance_seconds"`
	PeakInstances              int     `json:"peak_instances"`
	FixedAtPeakInstanceSeconds float64 `json:"fixed_at_peak_instance_seconds"`
	InstanceSecondsRatio       float64 `json:"instance_seconds_ratio"`
	// InstancesAtDrop is how many instances served the peak's last second:
	// where target tracking settled.
	InstancesAtDrop int `json:"instances_at_drop"`
	// BackAtMinS is the time from the drop until the fleet is back at min
	// for good; null when it was not by the end of the run.
	BackAtMinS *float64 `json:"back_at_min_s"`
	// Activities are the scaling activities during the run.
	Activities []api.ScalingActivity `json:"activities"`
	// Actions are the scheduled actions the run put (prescaled).
	Actions []string `json:"actions,omitempty"`
	// Timeline is the per-second record: rate, errors, latency quantiles,
	// instances in service and pending, average CPU.
	Timeline []load.Second `json:"timeline"`

	res *load.Result
}

// ReactionWindow is how long target tracking needs to meet a step, and so
// how long after the step the reactive run's p99 may exceed the SLO:
//
//   - two scale-out rounds, because CPU utilisation saturates at 100 % of
//     the quota, so one decision can at most double the fleet;
//   - each round needs ScaleOutDatapoints (3) datapoints above the target,
//     plus one period for the datapoint that straddles the step or the
//     previous decision, and one more for the loop's tick (it evaluates
//     once per period, not aligned to the step);
//   - plus settle: the new instances start and pass the health check
//     (healthy × interval) and the queue built meanwhile drains, bounded
//     here by 10 s.
//
// window = 2 × (3 + 2) × period + 10 s; with the 3 s period of time_scale
// 20 that is 40 s, and with AWS's 60 s period about 10 minutes.
func ReactionWindow(period time.Duration) time.Duration {
	return 2*time.Duration(scaling.DefaultScaleOutDatapoints+2)*period + 10*time.Second
}

func (c *ExamSpikeConfig) defaults() {
	if c.Users <= 0 {
		c.Users = 50
	}
	if c.Base <= 0 {
		c.Base = 40
	}
	if c.Peak <= 0 {
		c.Peak = 400
	}
	if c.Baseline <= 0 {
		c.Baseline = 60 * time.Second
	}
	if c.Hold <= 0 {
		c.Hold = 120 * time.Second
	}
	if c.After <= 0 {
		c.After = 180 * time.Second
	}
	if c.SLOP99 <= 0 {
		c.SLOP99 = 500 * time.Millisecond
	}
	if c.MaxErrorRate <= 0 {
		c.MaxErrorRate = 0.001
	}
	if c.PreScaleLead <= 0 {
		c.PreScaleLead = 30 * time.Second
	}
	if len(c.Runs) == 0 {
		c.Runs = []string{RunReactive, RunPrescaled, RunOff}
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = 5 * time.Minute
	}
}

// Validate checks the configuration, naming the flag-like field.
func (c ExamSpikeConfig) Validate() error {
	var errs []error
	if c.Workload == nil {
		errs = append(errs, errors.New("workload: required (the sample app's is courses)"))
	}
	if !(c.Peak > c.Base) || math.IsInf(c.Peak, 0) {
		errs = append(errs, fmt.Errorf("peak: must be above base (%g rps), got %g", c.Base, c.Peak))
	}
	if c.Ramp < 0 || c.Ramp >= c.Hold {
		errs = append(errs, fmt.Errorf("ramp: must be from 0 (a step) to below hold (%s), got %s", c.Hold, c.Ramp))
	}
	if c.PreScaleLead >= c.Baseline {
		errs = append(errs, fmt.Errorf("prescale-lead: must be shorter than baseline (%s), got %s", c.Baseline, c.PreScaleLead))
	}
	seen := map[string]bool{}
	for _, r := range c.Runs {
		if r != RunReactive && r != RunPrescaled && r != RunOff {
			errs = append(errs, fmt.Errorf("runs: %q is not one of %s, %s, %s", r, RunReactive, RunPrescaled, RunOff))
		}
		if seen[r] {
			errs = append(errs, fmt.Errorf("runs: %q is listed twice", r))
		}
		seen[r] = true
	}
	return errors.Join(errs...)
}

// profile is the load of one run: Base, a step (or ramp) to Peak, Hold,
// back to Base for After.
func (c ExamSpikeConfig) profile() load.Profile {
	segs := load.Piecewise{{Duration: c.Baseline, From: c.Base, To: c.Base}}
	marks := []load.Mark{{At: c.Baseline, Label: fmt.Sprintf("step to %g rps", c.Peak)}}
	if c.Ramp > 0 {
		segs = append(segs, load.Segment{Duration: c.Ramp, From: c.Base, To: c.Peak})
		marks[0].Label = fmt.Sprintf("ramp to %g rps", c.Peak)
	}
	segs = append(segs,
		load.Segment{Duration: c.Hold - c.Ramp, From: c.Peak, To: c.Peak},
		load.Segment{Duration: c.After, From: c.Base, To: c.Base})
	marks = append(marks, load.Mark{At: c.Baseline + c.Hold, Label: fmt.Sprintf("drop to %g rps", c.Base)})
	return load.Profile{Name: "exam-spike", Pacer: segs, Duration: c.Baseline + c.Hold + c.After, Marks: marks}
}

// ExamSpike runs the exam-spike drill against the region behind c: for each
// run it brings the fleet to min, applies the profile through the load
// balancer with the workload's logged-in users, and measures what users saw
// and what the fleet did. It leaves scaling as it found it.
func ExamSpike(ctx context.Context, c *api.Client, cfg ExamSpikeConfig) (*ExamSpikeReport, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("exam-spike: %w", err)
	}
	say := func(format string, a ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "exam-spike: "+format+"\n", a...)
		}
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Phase != api.PhaseReady {
		return nil, fmt.Errorf("exam-spike: the region is %s, not ready; `haven status` says why", st.Phase)
	}
	sc, err := c.Scaling(ctx)
	if err != nil {
		return nil, fmt.Errorf("exam-spike: %w", err)
	}
	if len(sc.Policies) == 0 {
		return nil, errors.New("exam-spike: fleet.scaling has no target tracking policy, so nothing would react to the step; add one (e.g. {target_tracking: cpu, target: 50})")
	}
	period := time.Duration(sc.PeriodMS) * time.Millisecond
	if cfg.Window <= 0 {
		cfg.Window = ReactionWindow(period)
	}
	rep := &ExamSpikeReport{
		Envelope: Envelope{Drill: "exam-spike", StartedAt: time.Now().UTC(), Region: st.Region, SpecSHA256: st.SpecSHA256, HavenVersion: HavenVersion()},
		Profile: ExamSpikeProfile{
			Workload: workloadName(cfg.Workload), Users: cfg.Users, BaseRPS: cfg.Base, PeakRPS: cfg.Peak,
			BaselineS: cfg.Baseline.Seconds(), RampS: cfg.Ramp.Seconds(), HoldS: cfg.Hold.Seconds(), AfterS: cfg.After.Seconds(),
			SLOP99MS: ms(cfg.SLOP99), MaxErrorRate: cfg.MaxErrorRate, WindowS: cfg.Window.Seconds(), TimeoutS: cfg.Timeout.Seconds(),
			WindowWhy: fmt.Sprintf("two scale-out rounds (CPU saturates at 100 %%, so one round at most doubles the fleet), each %d datapoints above the target plus 2 periods of lag, at a %s period; plus 10 s for new instances to pass their health checks and the queue to drain", scaling.DefaultScaleOutDatapoints, period),
		},
		Scaler:  ExamSpikeScaler{Min: st.Fleet.Min, Max: st.Fleet.Max, PeriodS: period.Seconds(), WarmupS: float64(sc.WarmupMS) / 1000, TimeScale: sc.TimeScale, Policies: sc.Policies},
		Machine: Machine{CPUs: runtime.NumCPU(), LoadAvgBefore: loadAvg()},
	}
	if cfg.Ramp > 0 {
		rep.Profile.WindowWhy += "; a ramp adds its length"
		if cfg.Window == ReactionWindow(period) {
			cfg.Window += cfg.Ramp
			rep.Profile.WindowS = cfg.Window.Seconds()
		}
	}
	minCap := st.Fleet.Min
	wasSuspended := sc.Suspended
	defer func() {
		// Leave scaling as it was found, whatever happened.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		removeActions(cctx, c)
		_ = c.SetScalingSuspended(cctx, wasSuspended)
	}()

	// Logins are password checks, the costliest requests: scaling waits
	// while they run, so every run starts from the same fleet.
	if err := c.SetScalingSuspended(ctx, true); err != nil {
		return nil, fmt.Errorf("exam-spike: %w", err)
	}
	say("logging in %d users of the %s workload", cfg.Users, rep.Profile.Workload)
	site, users, err := OpenSite(ctx, st, cfg.Users, cfg.Workload)
	if err != nil {
		return nil, err
	}
	defer site.Close()
	journey := LoadJourney{Site: site, Users: users}

	peakReached := 0
	for _, name := range cfg.Runs {
		run := &ExamSpikeRun{Name: name, Description: runDescription(name)}
		rep.Runs = append(rep.Runs, run)
		if err := prepareRun(ctx, c, name, minCap, period, cfg.SettleTimeout, say); err != nil {
			return rep, fmt.Errorf("exam-spike: prepare the %s run: %w", name, err)
		}
		prof := cfg.profile()
		start := time.Now()
		if name == RunPrescaled {
			pre := cfg.PreScale
			if pre <= 0 {
				pre = peakReached
			}
			if pre <= minCap {
				pre = max(6, minCap+1)
			}
			pre = min(pre, st.Fleet.Max)
			stepAt := start.Add(cfg.Baseline)
			dropAt := stepAt.Add(cfg.Hold)
			if err := c.PutScheduledAction(ctx, prescaleAction, api.ScheduledActionRequest{StartTime: stepAt.Add(-cfg.PreScaleLead), Min: &pre}); err != nil {
				return rep, fmt.Errorf("exam-spike: put the pre-scale: %w", err)
			}
			if err := c.PutScheduledAction(ctx, eveningAction, api.ScheduledActionRequest{StartTime: dropAt.Add(period), Min: &minCap}); err != nil {
				return rep, fmt.Errorf("exam-spike: put the evening action: %w", err)
			}
			run.Actions = []string{
				fmt.Sprintf("%s: min %d at the step − %s", prescaleAction, pre, cfg.PreScaleLead),
				fmt.Sprintf("%s: min %d one period after the drop", eveningAction, minCap),
			}
		}
		say("%s run: %g rps for %s, %s to %g rps for %s, %g rps for %s", name, cfg.Base, cfg.Baseline,
			map[bool]string{true: "ramp", false: "step"}[cfg.Ramp > 0], cfg.Peak, cfg.Hold, cfg.Base, cfg.After)
		res, err := load.Run(ctx, load.Config{
			Profile: prof, Journey: journey, Timeout: cfg.Timeout, Progress: cfg.Progress,
			Observe: ObserveFleet(c), Logger: slog.New(slog.DiscardHandler),
		})
		if res != nil {
			run.res = res
		}
		if err != nil {
			return rep, fmt.Errorf("exam-spike: %s run: %w", name, err)
		}
		acts, err := c.FleetActivity(ctx)
		if err != nil {
			return rep, err
		}
		analyse(run, res, acts, cfg, minCap)
		if name == RunReactive {
			peakReached = run.InstancesAtDrop
		}
		say("%s run: p99 %.0f ms (outside the window %.0f ms), errors %.3f %%, instance-seconds %.0f%% of fixed at peak, back at min %s",
			name, run.P99MS, run.P99OutsideWindowMS, 100*run.ErrorRate, 100*run.InstanceSecondsRatio, fmtOptS(run.BackAtMinS))
		removeActions(ctx, c)
	}
	rep.EndedAt = time.Now().UTC()
	rep.Machine.LoadAvgAfter = loadAvg()
	rep.Pass = true
	for _, r := range rep.Runs {
		if !r.Pass {
			rep.Pass = false
			for _, why := range r.Reasons {
				rep.Reasons = append(rep.Reasons, r.Name+": "+why)
			}
		}
	}
	return rep, nil
}

func runDescription(name string) string {
	switch name {
	case RunReactive:
		return "target tracking alone meets the step"
	case RunPrescaled:
		return "a scheduled action raises min before the step and lowers it after the drop; target tracking does the rest"
	}
	return "scaling suspended: the fleet stays at min (the control)"
}

// prepareRun brings the fleet to min with scaling on (suspended for the
// control) and returns once exactly min instances have served, with nothing
// pending or draining and the desired capacity at min, for long enough that
// the scale-out datapoints (and one more period) of any load from before the
// run — the logins — have passed: a decision they trigger meanwhile sets the
// fleet back to min and starts the wait again, so every run starts from min.
func prepareRun(ctx context.Context, c *api.Client, name string, minCap int, period, timeout time.Duration, say func(string, ...any)) error {
	removeActions(ctx, c)
	if err := c.SetScalingSuspended(ctx, name == RunOff); err != nil {
		return err
	}
	idle := time.Duration(scaling.DefaultScaleOutDatapoints+1)*period + time.Second
	deadline := time.Now().Add(timeout)
	var atMinSince time.Time // zero: not at min at the last look
	for {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		routed := 0
		for _, in := range st.Instances {
			if in.Target == "healthy" {
				routed++
			}
		}
		switch {
		case st.Fleet.Desired != minCap || st.Fleet.Min != minCap:
			say("setting the fleet back to min (%d) for the %s run", minCap, name)
			d := minCap
			if err := c.SetCapacity(ctx, api.CapacityRequest{Min: &d, Desired: &d}); err != nil {
				return err
			}
			atMinSince = time.Time{}
		case st.Fleet.InService == minCap && routed == minCap && st.Fleet.Pending == 0 && len(st.Instances) == minCap:
			if atMinSince.IsZero() {
				atMinSince = time.Now()
			}
			if time.Since(atMinSince) >= idle {
				return nil
			}
		default:
			atMinSince = time.Time{}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the fleet did not settle at min %d within %s (%d in service, %d pending, %d instances)", minCap, timeout, st.Fleet.InService, st.Fleet.Pending, len(st.Instances))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// removeActions deletes the drill's scheduled actions, if any.
func removeActions(ctx context.Context, c *api.Client) {
	for _, n := range []string{prescaleAction, eveningAction} {
		_ = c.DeleteScheduledAction(ctx, n) // 404 when the run put none
	}
}

// ObserveFleet reads the fleet's instances in service and pending and their
// average CPU from the daemon, for a load run's per-second timeline.
func ObserveFleet(c *api.Client) func(context.Context) load.Fleet {
	return func(ctx context.Context) load.Fleet {
		ctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
		defer cancel()
		st, err := c.Status(ctx)
		if err != nil {
			return load.Fleet{InService: -1, Pending: -1, AvgCPU: math.NaN()}
		}
		f := load.Fleet{InService: st.Fleet.InService, Pending: st.Fleet.Pending, AvgCPU: math.NaN()}
		if st.Fleet.AvgCPU != nil {
			f.AvgCPU = *st.Fleet.AvgCPU
		}
		return f
	}
}

// analyse computes a run's figures and verdict from its timeline and the
// scaling activities.
func analyse(run *ExamSpikeRun, res *load.Result, acts []api.ScalingActivity, cfg ExamSpikeConfig, minCap int) {
	run.StartedAt, run.EndedAt = res.StartedAt, res.EndedAt
	run.Timeline = res.Timeline
	step, drop := int(cfg.Baseline/time.Second), int((cfg.Baseline+cfg.Hold)/time.Second)
	win := step + int(math.Ceil(cfg.Window.Seconds()))
	run.StepS, run.DropS = float64(step), float64(drop)
	s := res.Summary
	run.Requests, run.Failed, run.ErrorRate, run.Errors = s.Requests, s.Failed, s.ErrorRate, s.Errors
	run.P99MS = s.P99MS
	run.P99WindowMS, _ = res.Quantile(step, win, 0.99)
	run.P99HoldMS, _ = res.Quantile(step, drop, 0.99)
	run.P99OutsideWindowMS, _ = res.QuantileExcept(step, win, 0.99)
	slo := ms(cfg.SLOP99)
	var req, failed int
	lastBad := -1
	for i, sec := range res.Timeline {
		errs := 0
		for _, n := range sec.Errors {
			errs += n
		}
		bad := (sec.RPS > 0 && sec.P99MS > slo) || (sec.RPS > 0 && float64(errs)/float64(sec.RPS) > cfg.MaxErrorRate)
		if bad {
			run.SLOBrokenS++
			if i >= step && i < drop {
				lastBad = i
			}
		}
		if i < step || i >= win {
			req += sec.RPS
			failed += errs
		}
		n := 0
		if sec.InService != nil && *sec.InService >= 0 {
			n = *sec.InService + *sec.Pending
		}
		run.InstanceSeconds += float64(n)
		run.PeakInstances = max(run.PeakInstances, n)
	}
	if req > 0 {
		run.ErrorRateOutsideWindow = float64(failed) / float64(req)
	}
	switch {
	case lastBad < 0:
		zero := 0.0
		run.RecoveryS = &zero
	case lastBad < drop-1:
		r := float64(lastBad + 1 - step)
		run.RecoveryS = &r
	}
	if drop > 0 && drop <= len(res.Timeline) {
		if sec := res.Timeline[drop-1]; sec.InService != nil {
			run.InstancesAtDrop = *sec.InService
		}
	}
	run.FixedAtPeakInstanceSeconds = float64(run.PeakInstances * len(res.Timeline))
	if run.FixedAtPeakInstanceSeconds > 0 {
		run.InstanceSecondsRatio = run.InstanceSeconds / run.FixedAtPeakInstanceSeconds
	}
	// Back at min for good after the drop.
	for i := len(res.Timeline) - 1; i >= drop; i-- {
		sec := res.Timeline[i]
		if sec.InService == nil || *sec.InService != minCap || *sec.Pending != 0 {
			if i < len(res.Timeline)-1 {
				b := float64(i + 1 - drop)
				run.BackAtMinS = &b
			}
			break
		}
		if i == drop {
			b := 0.0
			run.BackAtMinS = &b
		}
	}
	run.Activities = []api.ScalingActivity{}
	for _, a := range acts {
		if !a.At.Before(res.StartedAt.Add(-2*time.Second)) && !a.At.After(res.EndedAt) {
			run.Activities = append(run.Activities, a)
		}
	}

	fail := func(format string, a ...any) { run.Reasons = append(run.Reasons, fmt.Sprintf(format, a...)) }
	switch run.Name {
	case RunReactive:
		if run.ErrorRate > cfg.MaxErrorRate {
			fail("errors %.3f %% > %.3f %%", 100*run.ErrorRate, 100*cfg.MaxErrorRate)
		}
		if run.P99OutsideWindowMS > slo {
			fail("p99 outside the %s window after the step %.0f ms > %.0f ms", cfg.Window, run.P99OutsideWindowMS, slo)
		}
		if run.InstanceSecondsRatio > 0.60 {
			fail("instance-seconds %.0f %% of a fleet fixed at peak, want ≤ 60 %%", 100*run.InstanceSecondsRatio)
		}
		if run.PeakInstances <= minCap {
			fail("the fleet never scaled out (peak %d instances, min %d)", run.PeakInstances, minCap)
		}
		if run.BackAtMinS == nil {
			fail("the fleet was not back at min (%d) by the end of the run", minCap)
		}
	case RunPrescaled:
		if run.ErrorRate > cfg.MaxErrorRate {
			fail("errors %.3f %% > %.3f %%", 100*run.ErrorRate, 100*cfg.MaxErrorRate)
		}
		if run.P99HoldMS > slo || run.P99WindowMS > slo {
			fail("p99 through the step %.0f ms (window %.0f ms) > %.0f ms", run.P99HoldMS, run.P99WindowMS, slo)
		}
		if run.BackAtMinS == nil {
			fail("the fleet was not back at min (%d) by the end of the run", minCap)
		}
	case RunOff:
		if run.P99HoldMS <= slo && run.ErrorRate <= cfg.MaxErrorRate {
			fail("the control kept the SLO (p99 at peak %.0f ms, errors %.3f %%): the peak does not need more than min instances, so the drill proves nothing; raise --peak", run.P99HoldMS, 100*run.ErrorRate)
		}
		if len(run.Activities) > 0 {
			fail("the fleet's desired capacity changed %d times although scaling was suspended", len(run.Activities))
		}
	}
	run.Pass = len(run.Reasons) == 0
}

func fmtOptS(p *float64) string {
	if p == nil {
		return "never"
	}
	return strconv.FormatFloat(*p, 'f', 0, 64) + " s"
}

// loadAvg reads the 1-minute load average (-1 when unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
