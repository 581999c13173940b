package region

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/api/routes"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/scaling"
)

// scalingTier is the running scaler: the sampler that reads the fleet's
// cgroups and the load balancer's counters every second, and the loop that
// decides and sets the fleet's capacity.
type scalingTier struct {
	sampler *scaling.Sampler
	loop    *scaling.Loop
	info    routes.ScalingInfo
}

var _ routes.Scaling = (*scalingTier)(nil)

func (s *scalingTier) Snapshot() *scaling.Snapshot { return s.loop.Snapshot() }
func (s *scalingTier) Readings() scaling.Readings  { return s.sampler.Readings() }
func (s *scalingTier) Info() routes.ScalingInfo    { return s.info }
func (s *scalingTier) SetSuspended(b bool)         { s.loop.SetSuspended(b) }
func (s *scalingTier) PutScheduledAction(a scaling.ScheduledAction) error {
	return s.loop.PutScheduledAction(a)
}
func (s *scalingTier) DeleteScheduledAction(name string) bool {
	return s.loop.DeleteScheduledAction(name)
}

// fleetScaling adapts the fleet to the scaler: it reads the capacity and
// the instances that count toward it, and carries decisions out.
type fleetScaling struct{ f *fleet.Fleet }

func (a fleetScaling) Capacity() scaling.Capacity {
	c := a.f.Capacity()
	return scaling.Capacity{Min: c.Min, Max: c.Max, Desired: c.Desired}
}

func (a fleetScaling) Instances() []scaling.InstanceState {
	var out []scaling.InstanceState
	for _, in := range a.f.Instances() {
		switch in.State {
		case fleet.StatePending:
			out = append(out, scaling.InstanceState{ID: in.ID})
		case fleet.StateInService:
			out = append(out, scaling.InstanceState{ID: in.ID, InService: true, InServiceSince: in.InServiceSince})
		}
	}
	return out
}

func (a fleetScaling) SetCapacity(_ context.Context, c scaling.Capacity) error {
	return a.f.SetCapacity(c.Min, c.Desired, c.Max)
}

// lbCounts reads the load balancer's per-target request counters.
type lbCounts struct{ l *lb.LB }

func (c lbCounts) RequestCounts() map[string]uint64 {
	ts := c.l.Targets()
	out := make(map[string]uint64, len(ts))
	for _, t := range ts {
		out[t.ID] = t.Requests
	}
	return out
}

// startScaling starts the sampler and the scaling loop over the fleet.
// Without cgroup CPU accounting it warns once and leaves the CPU policies
// out: the fleet then scales on request count.
func (r *Region) startScaling(ctx context.Context) error {
	cfg := r.cfg.Scaling
	info := routes.ScalingInfo{Warmup: r.cfg.ScalingWarmup, TimeScale: r.cfg.TimeScale}
	var cpu scaling.CPUReader
	acctErr := errors.New("no usable cgroup hierarchy")
	if r.t.cgroups != nil {
		acctErr = r.t.cgroups.CPUAccounting()
	}
	if acctErr == nil {
		cpu, info.CPUAccounting = r.t.cgroups, true
	} else {
		var msg string
		cfg, msg = withoutCPUAccounting(cfg, acctErr)
		r.warn(msg)
		info.Notes = append(info.Notes, msg)
	}
	sampler, err := scaling.NewSampler(scaling.SamplerConfig{
		Fleet: fleetScaling{r.t.fleet}, CPU: cpu, Cores: r.cfg.Fleet.Template.CPU, Requests: lbCounts{r.t.lb},
		Period: cfg.Period, Warmup: r.cfg.ScalingWarmup, Logger: r.opts.Logger,
	})
	if err != nil {
		return err
	}
	var loop *scaling.Loop // set before Start, so the loop's goroutine sees it
	loop, err = scaling.NewLoop(scaling.LoopConfig{
		Scaling: cfg, Source: sampler, Actuator: fleetScaling{r.t.fleet}, Logger: r.opts.Logger,
		OnDecision: func(d scaling.Decision) { r.scalingDecision(loop, d) },
	})
	if err != nil {
		return fmt.Errorf("fleet.scaling: %w", err)
	}
	if err := sampler.Start(ctx); err != nil {
		return err
	}
	if err := loop.Start(ctx); err != nil {
		_ = sampler.Stop(ctx)
		return err
	}
	r.t.scaling = &scalingTier{sampler: sampler, loop: loop, info: info}
	if len(cfg.Policies) == 0 && len(cfg.Scheduled) == 0 {
		r.say("scaling: no policy or scheduled action in fleet.scaling; capacity changes only by hand (haven fleet scale)")
		return nil
	}
	r.say("scaling: %s; metric period %s, instance warmup %s (time_scale %g)",
		describePolicies(cfg), cfg.Period, r.cfg.ScalingWarmup, r.cfg.TimeScale)
	for _, run := range firstRuns(loop.Snapshot().NextRuns) {
		r.events.Emit(api.Event{Component: "scaling", Kind: "next-run", Subject: run.Action,
			Message: fmt.Sprintf("scheduled action %s runs next at %s", run.Action, run.At.UTC().Format(time.RFC3339))})
	}
	return nil
}

// withoutCPUAccounting is the scaler's configuration when no per-instance
// CPU time can be read (why says so): the CPU policies are left out, since a
// policy without data never agrees to scale in and would hold every other
// policy's scale-in too, and the one warning to give says what remains.
func withoutCPUAccounting(cfg scaling.Config, why error) (scaling.Config, string) {
	cfg, dropped := cfg.Without(scaling.CPUUtilization)
	msg := fmt.Sprintf("scaling: no per-instance CPU accounting (%v): CPUUtilization has no data", why)
	switch {
	case len(dropped) > 0 && len(cfg.Policies) > 0:
		msg += fmt.Sprintf("; target tracking %s is left out and the fleet scales on request count (%s)", strings.Join(dropped, ", "), policyNames(cfg.Policies))
	case len(dropped) > 0:
		msg += fmt.Sprintf("; target tracking %s is left out, so only scheduled actions change capacity: add a request_count policy to fleet.scaling to scale on request count", strings.Join(dropped, ", "))
	default:
		msg += "; the fleet scales on request count"
	}
	return cfg, msg
}

// applyScaling gives the running scaler the policies and scheduled actions
// of an applied spec (without CPU policies when there is no CPU
// accounting, as at start). The metric period and the instance warmup keep
// the values the scaler started with until the next haven up.
func (r *Region) applyScaling(v *tiers, nc Configs, logf func(string, ...any)) error {
	if v.scaling == nil {
		return errors.New("the scaler is not running")
	}
	cfg := nc.Scaling
	if !v.scaling.info.CPUAccounting {
		cfg, _ = withoutCPUAccounting(cfg, errors.New("no per-instance CPU accounting"))
	}
	if err := v.scaling.loop.SetPolicies(cfg.Policies, cfg.Scheduled); err != nil {
		return err
	}
	logf("scaling: %s; metric period %s and instance warmup %s kept until the next haven up",
		describePolicies(cfg), v.scaling.loop.Snapshot().Period, v.scaling.info.Warmup)
	return nil
}

func (r *Region) stopScaling(ctx context.Context) error {
	if r.t.scaling == nil {
		return nil
	}
	return errors.Join(r.t.scaling.loop.Stop(ctx), r.t.scaling.sampler.Stop(ctx))
}

// scalingDecision records a carried-out decision in the event log: each
// capacity change with its cause, each scheduled run, and the next run of
// each action that ran.
func (r *Region) scalingDecision(loop *scaling.Loop, d scaling.Decision) {
	for _, a := range d.Activities {
		kind := string(a.Kind)
		if a.Kind == scaling.KindTargetTracking {
			kind = "scale-out"
			if a.To < a.From {
				kind = "scale-in"
			}
		}
		r.events.Emit(api.Event{Component: "scaling", Kind: kind, Subject: a.Source, Message: a.Cause,
			Attrs: map[string]any{"from": a.From, "to": a.To, "activity": a.ID}})
	}
	ran := map[string]bool{}
	for _, run := range d.Runs {
		ran[run.Action] = true
		if run.Failed != "" {
			r.events.Emit(api.Event{Component: "scaling", Kind: "scheduled-action-refused", Subject: run.Action,
				Message: fmt.Sprintf("scheduled action %s refused: %s", run.Action, run.Failed)})
			continue
		}
		r.events.Emit(api.Event{Component: "scaling", Kind: "scheduled-action", Subject: run.Action,
			Message: fmt.Sprintf("scheduled action %s ran: %s → %s", run.Action, run.Before, run.After)})
	}
	if len(ran) == 0 {
		return
	}
	for _, run := range firstRuns(loop.NextRuns(scaling.SnapshotRuns)) {
		if ran[run.Action] {
			r.events.Emit(api.Event{Component: "scaling", Kind: "next-run", Subject: run.Action,
				Message: fmt.Sprintf("scheduled action %s runs next at %s", run.Action, run.At.UTC().Format(time.RFC3339))})
		}
	}
}

// firstRuns keeps the first run of each action.
func firstRuns(runs []scaling.Run) []scaling.Run {
	seen := map[string]bool{}
	var out []scaling.Run
	for _, r := range runs {
		if !seen[r.Action] {
			seen[r.Action] = true
			out = append(out, r)
		}
	}
	return out
}

func policyNames(ps []scaling.Policy) string {
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

func describePolicies(c scaling.Config) string {
	var parts []string
	for _, p := range c.Policies {
		parts = append(parts, fmt.Sprintf("target tracking %s at %g", p.Metric, p.Target))
	}
	if n := len(c.Scheduled); n > 0 {
		parts = append(parts, fmt.Sprintf("%d scheduled action(s)", n))
	}
	return strings.Join(parts, ", ")
}
