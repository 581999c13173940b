// Package release rolls new launch template versions out across the fleet: immutable versions, a rolling instance refresh with health gates, and automatic rollback.
package release

import (
	"errors"
	"fmt"
	"time"
)

// Defaults for Policy fields left zero (see Policy.WithDefaults).
const (
	DefaultMinHealthy     = 100
	DefaultMaxHealthy     = 200
	DefaultBake           = 10 * time.Second
	DefaultHealthTimeout  = 60 * time.Second
	DefaultMax5xxIncrease = 1.0 // percentage points
	DefaultMaxP99Increase = 500 * time.Millisecond
	DefaultMinRequests    = 20
)

// Policy is how a rollout proceeds and when it stops: the instance
// refresh's preferences (as on an Auto Scaling Group) and the gates a step
// must pass.
type Policy struct {
	// MinHealthy is the percentage of desired capacity that stays in
	// service throughout (AWS MinHealthyPercentage). Default 100. Range 0–100.
	MinHealthy int
	// MaxHealthy is the most the fleet may grow to, as a percentage of
	// desired capacity, while new instances come up before old ones go
	// (AWS MaxHealthyPercentage). Default 200. Range 100–200, and at least
	// MinHealthy.
	MaxHealthy int
	// Checkpoints are the percentages of the fleet on the new version at
	// which the rollout stops to bake (AWS CheckpointPercentages): strictly
	// increasing, each 1–100, the last 100. Default [50, 100].
	Checkpoints []int
	// Bake is how long each checkpoint is watched before the next step
	// (AWS CheckpointDelay). Default 10s.
	Bake time.Duration
	// Warmup is how long a new instance must have run before it counts
	// toward a step (AWS InstanceWarmup). Default 0.
	Warmup time.Duration
	// HealthTimeout is how long a new instance may take to be healthy
	// behind the load balancer before the health gate fails. Default 60s.
	HealthTimeout time.Duration
	// Max5xxIncrease is how many percentage points the new version's 5xx
	// rate may exceed the old version's by. Default 1.
	Max5xxIncrease float64
	// MaxP99Increase is how much the new version's p99 latency may exceed
	// the old version's by. Default 500ms.
	MaxP99Increase time.Duration
	// MinRequests is how many requests the new version must have served
	// before its 5xx rate and p99 are judged. Default 20.
	MinRequests int
	// RollbackOn names alarms: any of them in ALARM fails the rollout.
	// Default none.
	RollbackOn []string
	// NoAutoRollback leaves a failed rollout where it stopped instead of
	// rolling back (AWS AutoRollback false). Default false: roll back.
	NoAutoRollback bool
}

// WithDefaults fills the zero fields.
func (p Policy) WithDefaults() Policy {
	if p.MinHealthy == 0 && p.MaxHealthy == 0 {
		p.MinHealthy = DefaultMinHealthy
	}
	if p.MaxHealthy == 0 {
		p.MaxHealthy = DefaultMaxHealthy
	}
	if len(p.Checkpoints) == 0 {
		p.Checkpoints = []int{50, 100}
	}
	if p.Bake == 0 {
		p.Bake = DefaultBake
	}
	if p.HealthTimeout == 0 {
		p.HealthTimeout = DefaultHealthTimeout
	}
	if p.Max5xxIncrease == 0 {
		p.Max5xxIncrease = DefaultMax5xxIncrease
	}
	if p.MaxP99Increase == 0 {
		p.MaxP99Increase = DefaultMaxP99Increase
	}
	if p.MinRequests == 0 {
		p.MinRequests = DefaultMinRequests
	}
	return p
}

// Validate checks a policy (after WithDefaults); errors name the field as
// the spec spells it.
func (p Policy) Validate() error {
	var errs []error
	add := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	const pre = "fleet.instance_refresh."
	if p.MinHealthy < 0 || p.MinHealthy > 100 {
		add(pre+"min_healthy_percentage: must be from 0 to 100, got %d", p.MinHealthy)
	}
	if p.MaxHealthy < 100 || p.MaxHealthy > 200 {
		add(pre+"max_healthy_percentage: must be from 100 to 200, got %d", p.MaxHealthy)
	}
	if p.MinHealthy > p.MaxHealthy {
		add(pre+"min_healthy_percentage (%d) must not exceed max_healthy_percentage (%d)", p.MinHealthy, p.MaxHealthy)
	}
	if p.MinHealthy == 100 && p.MaxHealthy == 100 {
		add(pre + "max_healthy_percentage: with min_healthy_percentage 100 it must be above 100, or nothing can be replaced (got 100)")
	}
	if err := ValidateCheckpoints(p.Checkpoints); err != nil {
		add(pre+"checkpoints: %w", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"bake", p.Bake}, {"instance_warmup", p.Warmup}, {"health_timeout", p.HealthTimeout}, {"max_p99_increase", p.MaxP99Increase}} {
		if d.v < 0 {
			add(pre+"%s: must be ≥ 0, got %s", d.name, d.v)
		}
	}
	if p.Max5xxIncrease < 0 || p.Max5xxIncrease > 100 {
		add(pre+"max_5xx_increase: must be from 0 to 100 percentage points, got %g", p.Max5xxIncrease)
	}
	if p.MinRequests < 0 {
		add(pre+"min_requests: must be ≥ 0, got %d", p.MinRequests)
	}
	return errors.Join(errs...)
}

// ValidateCheckpoints checks that cps is strictly increasing, each from 1
// to 100, ending at 100.
func ValidateCheckpoints(cps []int) error {
	if len(cps) == 0 {
		return errors.New("at least one checkpoint is required, the last one 100")
	}
	for i, c := range cps {
		if c < 1 || c > 100 {
			return fmt.Errorf("checkpoint %d is %d%%: each must be from 1 to 100", i+1, c)
		}
		if i > 0 && c <= cps[i-1] {
			return fmt.Errorf("%v is not increasing: %d%% follows %d%%", cps, c, cps[i-1])
		}
	}
	if cps[len(cps)-1] != 100 {
		return fmt.Errorf("%v does not end at 100: the last checkpoint is the whole fleet", cps)
	}
	return nil
}
