package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SetLaunchTemplate makes t the launch template of every instance launched
// from now on and returns its version (one more than the last). Instances
// already running keep theirs: Roll replaces them.
func (f *Fleet) SetLaunchTemplate(t LaunchTemplate) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cfg
	c.Template = t
	c.Min, c.Desired, c.Max = f.capacity.Min, f.capacity.Desired, f.capacity.Max
	if err := c.Validate(); err != nil {
		return 0, fmt.Errorf("set launch template of fleet %s: %w", f.cfg.Name, err)
	}
	f.cfg.Template = t
	f.version++
	f.log.Info("launch template changed", "version", f.version)
	return f.version, nil
}

// TemplateVersion is the launch template's current version.
func (f *Fleet) TemplateVersion() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version
}

// SetHealthCheck changes the health check type ("ec2" or "elb") and the
// grace period; the loop uses them from its next tick.
func (f *Fleet) SetHealthCheck(typ string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cfg
	c.HealthCheckType, c.GracePeriod = typ, grace
	c.Min, c.Desired, c.Max = f.capacity.Min, f.capacity.Desired, f.capacity.Max
	if err := c.Validate(); err != nil {
		return fmt.Errorf("set health check of fleet %s: %w", f.cfg.Name, err)
	}
	c = c.withDefaults()
	f.cfg.HealthCheckType, f.cfg.GracePeriod = c.HealthCheckType, c.GracePeriod
	return nil
}

// ErrRollStalled means a replacement did not become healthy in time; the
// instance it was to replace is still in service.
var ErrRollStalled = errors.New("replacement not healthy in time")

// Roll replaces every live instance launched from a template older than
// the current one, one at a time, launch before terminate: desired (and
// max, if needed) goes up by one, the new instance is in service and
// healthy, then the old one drains (the load balancer's deregistration
// delay) and stops, and desired comes back. Capacity never drops below
// what it was. Each replacement must be healthy within timeout, or Roll
// stops with ErrRollStalled and leaves the old instance serving. progress,
// if set, is told each replacement.
//
// It is the fleet's own replace-an-instance path; releases with health
// gates and rollback (instance refresh) build on it.
func (f *Fleet) Roll(ctx context.Context, timeout time.Duration, progress func(old, replacement string)) error {
	for {
		ver := f.TemplateVersion()
		var old *InstanceStatus
		for _, in := range f.Instances() {
			if in.State.Live() && in.TemplateVersion < ver {
				old = &in
				break
			}
		}
		if old == nil {
			return nil
		}
		before := map[string]bool{}
		for _, in := range f.Instances() {
			before[in.ID] = true
		}
		c := f.Capacity()
		if err := f.SetCapacity(c.Min, c.Desired+1, max(c.Max, c.Desired+1)); err != nil {
			return fmt.Errorf("roll fleet %s: %w", f.cfg.Name, err)
		}
		restore := func() {
			now := f.Capacity()
			_ = f.SetCapacity(now.Min, max(now.Desired-1, now.Min), c.Max)
		}
		repl, err := f.waitReplacement(ctx, before, ver, timeout)
		if err != nil {
			restore()
			return fmt.Errorf("roll fleet %s: replace %s: %w", f.cfg.Name, old.ID, err)
		}
		// Drain an old instance of the replacement's zone, so the zones
		// stay balanced through the roll.
		for _, in := range f.Instances() {
			if in.State.Live() && in.TemplateVersion < ver && in.Zone == repl.Zone {
				old = &in
				break
			}
		}
		if err := f.Terminate(ctx, old.ID, true); err != nil && !errors.Is(err, ErrNotFound) {
			restore()
			return fmt.Errorf("roll fleet %s: terminate %s: %w", f.cfg.Name, old.ID, err)
		}
		now := f.Capacity()
		if now.Max != c.Max {
			_ = f.SetCapacity(now.Min, min(now.Desired, c.Max), c.Max)
		}
		if progress != nil {
			progress(old.ID, repl.ID)
		}
	}
}

// waitReplacement waits for an instance not in before, of template
// version ver, in service and healthy.
func (f *Fleet) waitReplacement(ctx context.Context, before map[string]bool, ver int, timeout time.Duration) (InstanceStatus, error) {
	deadline := f.clock.Now().Add(timeout)
	for {
		for _, in := range f.Instances() {
			if !before[in.ID] && in.TemplateVersion >= ver && in.State == StateInService && in.Health == HealthHealthy {
				return in, nil
			}
		}
		if f.clock.Now().After(deadline) {
			return InstanceStatus{}, ErrRollStalled
		}
		select {
		case <-ctx.Done():
			return InstanceStatus{}, ctx.Err()
		case <-f.clock.After(100 * time.Millisecond):
		}
	}
}
