package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/load"
)

// InstanceLossConfig configures the instance-loss drill.
type InstanceLossConfig struct {
	// Duration of steady load before the drill waits for recovery. Default 60s.
	Duration time.Duration
	// Rate is journey steps (HTTP requests) per second. Default 50.
	Rate int
	// Users is how many seeded students log in. Default 20.
	Users int
	// Workload is what the users do. Required.
	Workload Workload
	// RecoveryTimeout bounds the wait for the fleet to be back at desired capacity. Default 90s.
	RecoveryTimeout time.Duration
	// Progress receives human-readable progress lines (may be nil).
	Progress io.Writer
}

// FaultResult is what one injected fault did.
type FaultResult struct {
	Kind     string  `json:"kind"` // kill or freeze
	Instance string  `json:"instance"`
	Zone     string  `json:"zone"`
	AtMS     int64   `json:"at_ms"`     // since the drill started
	DetectMS float64 `json:"detect_ms"` // fault → the LB stops routing to the target
	// DetectBoundMS is unhealthy_threshold × interval + timeout: the most an
	// active health check may take to notice a hung target.
	DetectBoundMS float64 `json:"detect_bound_ms"`
	// WithinBound reports DetectMS ≤ DetectBoundMS (for a kill, passive
	// ejection is far faster than the bound).
	WithinBound bool    `json:"within_bound"`
	ReplaceMS   float64 `json:"replace_ms"` // fault → a new instance in service, fleet at desired
	Replacement string  `json:"replacement,omitempty"`
	Detected    bool    `json:"detected"`
	Replaced    bool    `json:"replaced"`
}

// InstanceLossReport is the drill's result.
type InstanceLossReport struct {
	Envelope
	Summary
	DurationS  float64       `json:"duration_s"`
	Rate       int           `json:"rate"`
	Users      int           `json:"users"`
	DetectMS   float64       `json:"detect_ms"`  // the slowest detection
	ReplaceMS  float64       `json:"replace_ms"` // the slowest replacement
	Faults     []FaultResult `json:"faults"`
	Desired    int           `json:"desired"`
	InService  int           `json:"in_service_after"`
	HealthyEnd int           `json:"healthy_after"`
	// Timeline is the load second by second.
	Timeline []load.Second `json:"timeline"`
}

// InstanceLoss drives the workload's logged-in journeys through the load balancer, SIGKILLs
// one in-service instance a third of the way in and freezes (SIGSTOP) another
// two thirds in, and reports what users saw and how fast the region healed.
func InstanceLoss(ctx context.Context, c *api.Client, cfg InstanceLossConfig) (*InstanceLossReport, error) {
	if cfg.Duration <= 0 {
		cfg.Duration = 60 * time.Second
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 50
	}
	if cfg.Users <= 0 {
		cfg.Users = 20
	}
	if cfg.RecoveryTimeout <= 0 {
		cfg.RecoveryTimeout = 90 * time.Second
	}
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Phase != api.PhaseReady {
		return nil, fmt.Errorf("drill instance-loss: region is %s, not ready; wait for `haven status` to say ready", st.Phase)
	}
	if st.Fleet.Desired < 2 {
		return nil, fmt.Errorf("drill instance-loss: the fleet's desired capacity is %d; losing an instance needs at least 2 (haven fleet scale --desired 2)", st.Fleet.Desired)
	}
	say("logging in %d users of the %s workload through %s", cfg.Users, workloadName(cfg.Workload), st.Endpoints.HTTPS)
	site, users, err := OpenSite(ctx, st, cfg.Users, cfg.Workload)
	if err != nil {
		return nil, fmt.Errorf("drill instance-loss: %w", err)
	}
	defer site.Close()
	bound := float64(st.LB.UnhealthyThreshold)*float64(st.LB.IntervalMS) + float64(st.LB.TimeoutMS)

	rec := NewRecorder()
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	start := time.Now()
	go func() { RunLoad(loadCtx, site, users, cfg.Rate, rec); close(loadDone) }()
	say("load: %d requests/s for %s", cfg.Rate, cfg.Duration)

	rep := &InstanceLossReport{Envelope: startEnvelope(ctx, c, "instance-loss"), Rate: cfg.Rate, Users: cfg.Users, Desired: st.Fleet.Desired}
	var victims []string
	for i, kind := range []string{"kill", "freeze"} {
		at := start.Add(cfg.Duration * time.Duration(i+1) / 3)
		if err := sleepUntil(ctx, at); err != nil {
			stopLoad()
			<-loadDone
			return nil, err
		}
		fr, err := injectInstanceFault(ctx, c, kind, victims, start, cfg.RecoveryTimeout, say)
		if err != nil {
			stopLoad()
			<-loadDone
			return nil, err
		}
		fr.DetectBoundMS = bound
		fr.WithinBound = fr.Detected && fr.DetectMS <= bound
		victims = append(victims, fr.Instance)
		rep.Faults = append(rep.Faults, *fr)
	}
	_ = sleepUntil(ctx, start.Add(cfg.Duration))
	stopLoad()
	<-loadDone
	rep.DurationS = time.Since(start).Seconds()
	rep.Summary = rec.Summary()

	end, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	rep.InService, rep.HealthyEnd = end.Fleet.InService, end.Fleet.Healthy
	for _, f := range rep.Faults {
		rep.DetectMS = max(rep.DetectMS, f.DetectMS)
		rep.ReplaceMS = max(rep.ReplaceMS, f.ReplaceMS)
		if !f.Detected {
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("%s of %s was never detected", f.Kind, f.Instance))
		}
		if !f.Replaced {
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("%s was not replaced within %s", f.Instance, cfg.RecoveryTimeout))
		}
	}
	if rep.Failed > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d of %d requests failed", rep.Failed, rep.Requests))
	}
	if rep.HealthyEnd < rep.Desired {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("fleet ended with %d healthy instances, desired %d", rep.HealthyEnd, rep.Desired))
	}
	rep.Timeline = rec.Timeline()
	rep.finish()
	return rep, nil
}

// injectInstanceFault kills or freezes one healthy in-service instance not in
// skip, then watches the region until the target is out of service and a
// replacement is in service with the fleet back at desired capacity.
func injectInstanceFault(ctx context.Context, c *api.Client, kind string, skip []string, start time.Time, timeout time.Duration, say func(string, ...any)) (*FaultResult, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	before := map[string]bool{}
	var victim *api.Instance
	for i := range st.Instances {
		in := &st.Instances[i]
		before[in.ID] = true
		if victim == nil && in.State == "in-service" && in.Health == "healthy" && !slices.Contains(skip, in.ID) {
			victim = in
		}
	}
	if victim == nil {
		return nil, errors.New("drill instance-loss: no healthy in-service instance to fail; is the fleet recovering from the previous fault?")
	}
	sig := map[string]string{"kill": "KILL", "freeze": "STOP"}[kind]
	fr := &FaultResult{Kind: kind, Instance: victim.ID, Zone: victim.Zone}
	t0 := time.Now()
	fr.AtMS = t0.Sub(start).Milliseconds()
	if err := c.SignalInstance(ctx, victim.ID, sig); err != nil {
		return nil, fmt.Errorf("inject %s on %s: %w", kind, victim.ID, err)
	}
	say("fault: SIG%s %s (zone %s)", sig, victim.ID, victim.Zone)
	deadline := t0.Add(timeout)
	for time.Now().Before(deadline) {
		st, err := c.Status(ctx)
		if err == nil {
			var gone = true
			healthyNew, healthy := 0, 0
			newID := ""
			for _, in := range st.Instances {
				// Out of service: the load balancer no longer routes to it.
				if in.ID == victim.ID && in.Target == "healthy" {
					gone = false
				}
				if in.State == "in-service" && in.Health == "healthy" {
					healthy++
					if !before[in.ID] {
						healthyNew++
						newID = in.ID
					}
				}
			}
			if gone && !fr.Detected {
				fr.Detected, fr.DetectMS = true, ms(time.Since(t0))
				say("  %s out of service after %.0f ms", victim.ID, fr.DetectMS)
			}
			if fr.Detected && healthyNew > 0 && healthy >= st.Fleet.Desired {
				fr.Replaced, fr.ReplaceMS, fr.Replacement = true, ms(time.Since(t0)), newID
				say("  replaced by %s after %.0f ms; fleet at %d/%d", newID, fr.ReplaceMS, healthy, st.Fleet.Desired)
				return fr, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
	return fr, nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	return sleepCtx(ctx, d)
}
