// Package fleet runs a local Auto Scaling Group: app processes launched from a template, spread across zones, health-checked and replaced.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"time"

	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/sandbox"
	"github.com/haven-platform/haven/internal/zone"
)

// Health check types for Config.HealthCheckType.
const (
	HealthCheckEC2 = "ec2" // the process is running
	HealthCheckELB = "elb" // the Balancer says healthy
)

// Defaults for Config fields left zero.
const (
	DefaultStopTimeout       = 30 * time.Second
	DefaultReconcileInterval = 250 * time.Millisecond
	maxLaunchBackoff         = 30 * time.Second
)

// LaunchTemplate describes how to start one instance.
//
// The process gets a minimal environment: PATH, HOME, LANG, TZ and TMPDIR from the
// daemon (when set), then Env, then EnvFunc's result, then HOST (the instance's
// zone address), PORT, HAVEN_INSTANCE_ID and HAVEN_ZONE. In Command, the tokens
// ${HOST}, ${PORT}, ${INSTANCE_ID} and ${ZONE} are replaced; nothing else is expanded.
type LaunchTemplate struct {
	// Command is the program and its arguments. Required.
	Command []string
	// Env holds extra, non-secret environment variables. Default none.
	Env map[string]string
	// Port is the TCP port the app listens on, on its own address. Default 0: a
	// free port is picked per instance.
	Port int
	// CPU is the CPU quota in cores (the "instance type"). Default 0: unlimited.
	CPU float64
	// MemoryBytes is the memory limit. Default 0: unlimited.
	MemoryBytes int64
	// Dir is the working directory. Default: the daemon's.
	Dir string
	// Version names the launch template version (a release's "v3").
	// Default "": unversioned.
	Version string
}

// Target is an instance as the Balancer sees it.
type Target struct {
	// ID is the instance ID.
	ID string
	// Zone is the zone name ("a"); AZ its AWS-style name ("eu-west-1a").
	Zone, AZ string
	// Addr is host:port, e.g. "127.0.1.2:8080".
	Addr string
}

// Balancer is the load balancer's target group, driven by the fleet.
type Balancer interface {
	// Register adds a target. The LB keeps it "initial" until it passes checks.
	Register(t Target) error
	// Deregister drains the target and removes it; it blocks while the LB drains
	// (at most its deregistration delay, or until ctx is done).
	Deregister(ctx context.Context, id string) error
	// TargetHealth returns "initial", "healthy", "unhealthy" or "draining";
	// ok is false for an unknown target.
	TargetHealth(id string) (state string, ok bool)
}

// Event types passed to Config.OnEvent.
const (
	EventLaunch       = "launch"        // a process started
	EventLaunchFailed = "launch-failed" // a launch failed; retried with backoff
	EventInService    = "in-service"    // the instance takes traffic
	EventUnhealthy    = "unhealthy"     // health went unhealthy
	EventReplace      = "replace"       // an instance is lost (exited, unhealthy) and will be replaced
	EventTerminate    = "terminate"     // a stop began (draining)
	EventTerminated   = "terminated"    // the process is gone and cleaned up
)

// Event is one entry for the event log.
type Event struct {
	Time     time.Time
	Fleet    string
	Type     string
	Instance string
	Zone     string
	// Reason says why, e.g. "scale-in", "unhealthy", "exit status 1".
	Reason string
}

// InstanceInfo is what EnvFunc gets to compute per-instance settings.
type InstanceInfo struct {
	ID   string
	Zone *zone.Zone
	Host string
	Port int
}

// Network gives each instance a network of its own: in the region's VPC, a
// network namespace with one address in its zone's app subnet (package
// vpc, through the region). Without one, instances share the host's
// network and take an address of their zone.
type Network interface {
	// Attach creates instance id's network in zone z and returns its
	// address and how to start a process inside it. On error nothing of it
	// is left.
	Attach(ctx context.Context, id string, z *zone.Zone) (Attachment, error)
	// Detach removes instance id's network, once its processes are gone,
	// and returns its address to the zone.
	Detach(ctx context.Context, id string) error
}

// Attachment is an instance's network.
type Attachment struct {
	// Addr is the instance's address, its HOST.
	Addr netip.Addr
	// Start starts cmd inside the instance's network: it calls cmd.Start
	// there, keeping cmd's SysProcAttr (process group, credentials,
	// cgroup) as the caller set it. Required.
	Start func(cmd *exec.Cmd) error
}

// Config configures a fleet.
type Config struct {
	// Name identifies the fleet in logs, events and cgroup names. Required.
	Name string
	// Zones the fleet spreads across. Required, at least one.
	Zones []*zone.Zone
	// Template is the launch template.
	Template LaunchTemplate
	// Min, Max and Desired capacity; 0 ≤ Min ≤ Desired ≤ Max.
	Min, Max, Desired int
	// HealthCheckType is "ec2" or "elb". Default "ec2". "elb" needs a Balancer.
	HealthCheckType string
	// GracePeriod after launch during which an unhealthy instance is not
	// replaced (a dead process always is). Default 0.
	GracePeriod time.Duration
	// StopTimeout is how long a process has between SIGTERM and SIGKILL. Default 30s.
	StopTimeout time.Duration
	// ReconcileInterval is the control loop period. Default 250ms.
	ReconcileInterval time.Duration
	// LogDir receives each instance's stdout and stderr in LogDir/<id>.log.
	// Default "": output is discarded.
	LogDir string
	// Balancer is the target group to register instances with. Default nil: none.
	Balancer Balancer
	// Cgroups, if set, puts each instance in its own cgroup with the template's
	// CPU and memory limits. Default nil: no limits.
	Cgroups *cgroup.Manager
	// Sandbox, if set, runs every instance (and every command run in one)
	// as its unprivileged user, with no capabilities, no_new_privs and a
	// private /tmp (package sandbox; the daemon must be root). Default nil:
	// instances run as the daemon's user.
	Sandbox *sandbox.Profile
	// Network, if set, gives each instance its own network (see Network);
	// then every instance listens on Template.Port, which is required.
	// Default nil: the host's network, an address of the zone each.
	Network Network
	// EnvFunc, if set, returns extra environment variables per instance (for
	// example its metadata endpoint). Values must not be secrets.
	EnvFunc func(InstanceInfo) map[string]string
	// OnEvent, if set, is called for every lifecycle event. It must not block
	// long and must not call back into the Fleet.
	OnEvent func(Event)
	// Logger receives operational logs. Default slog.Default().
	Logger *slog.Logger
	// Clock drives the loop, grace periods and stop timeouts. Default: real time.
	Clock clock.Clock
}

func (c Config) withDefaults() Config {
	if c.HealthCheckType == "" {
		c.HealthCheckType = HealthCheckEC2
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	return c
}

// Validate checks the configuration; errors name the field.
func (c Config) Validate() error {
	var errs []error
	add := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.Name == "" {
		add("fleet.name: required")
	}
	if len(c.Zones) == 0 {
		add("fleet.zones: at least one zone required")
	}
	for i, z := range c.Zones {
		if z == nil {
			add("fleet.zones[%d]: nil zone", i)
		}
	}
	if len(c.Template.Command) == 0 || c.Template.Command[0] == "" {
		add("fleet.template.command: required")
	}
	if c.Template.Port < 0 || c.Template.Port > 65535 {
		add("fleet.template.port: must be from 0 to 65535, got %d", c.Template.Port)
	}
	if c.Network != nil && c.Template.Port == 0 {
		add("fleet.template.port: required with a Network (every instance listens on it at its own address)")
	}
	if err := (cgroup.Limits{CPU: c.Template.CPU, MemoryBytes: c.Template.MemoryBytes}).Validate(); err != nil {
		add("fleet.template.%w", err)
	}
	if err := validateCapacity(c.Min, c.Desired, c.Max); err != nil {
		errs = append(errs, err)
	}
	switch c.HealthCheckType {
	case "", HealthCheckEC2:
	case HealthCheckELB:
		if c.Balancer == nil {
			add("fleet.health_check_type: \"elb\" needs a Balancer")
		}
	default:
		add("fleet.health_check_type: must be \"elb\" or \"ec2\", got %q", c.HealthCheckType)
	}
	if c.GracePeriod < 0 {
		add("fleet.grace_period: must be ≥ 0, got %s", c.GracePeriod)
	}
	if c.StopTimeout < 0 {
		add("fleet.stop_timeout: must be ≥ 0, got %s", c.StopTimeout)
	}
	if c.ReconcileInterval < 0 {
		add("fleet.reconcile_interval: must be ≥ 0, got %s", c.ReconcileInterval)
	}
	return errors.Join(errs...)
}

// ErrInvalidCapacity is returned (wrapped) by SetCapacity for bad bounds.
var ErrInvalidCapacity = errors.New("invalid capacity")

func validateCapacity(minC, desired, maxC int) error {
	switch {
	case minC < 0:
		return fmt.Errorf("fleet.min: must be ≥ 0, got %d: %w", minC, ErrInvalidCapacity)
	case maxC < minC:
		return fmt.Errorf("fleet.max: must be ≥ fleet.min (%d), got %d: %w", minC, maxC, ErrInvalidCapacity)
	case desired < minC || desired > maxC:
		return fmt.Errorf("fleet.desired: must be between fleet.min (%d) and fleet.max (%d), got %d: %w", minC, maxC, desired, ErrInvalidCapacity)
	}
	return nil
}
