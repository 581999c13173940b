package fleet

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/zone"
)

// ErrNotFound is returned (wrapped) for an unknown instance ID.
var ErrNotFound = errors.New("instance not found")

// InstanceStatus is one instance as shown by Instances.
type InstanceStatus struct {
	ID      string `json:"id"`
	Zone    string `json:"zone"`
	AZ      string `json:"az"`
	Address string `json:"address"`
	// Subnet is the range the address is in: the zone's app subnet.
	Subnet string `json:"subnet"`
	Port   int    `json:"port"`
	PID    int    `json:"pid"`
	State  State  `json:"state"`
	Health Health `json:"health"`
	// LaunchedAt is when the process started.
	LaunchedAt time.Time `json:"launched_at"`
	// InServiceSince is when the instance entered service (zero while
	// pending): the instance warmup counts from it.
	InServiceSince time.Time `json:"in_service_since,omitzero"`
	// TemplateVersion is the version of the launch template the instance
	// was launched from: 1 at start, one more on each SetLaunchTemplate.
	TemplateVersion int `json:"template_version"`
	// LogPath is the instance's stdout/stderr file ("" when discarded).
	LogPath string `json:"log_path,omitempty"`
	// Reason is why the instance is stopping or stopped, if it is.
	Reason string `json:"reason,omitempty"`
	// Version is the launch template version it runs ("" when unversioned).
	Version string `json:"version,omitempty"`
}

// Capacity is the fleet's current min, desired and max.
type Capacity struct {
	Min, Desired, Max int
}

// Fleet is a local Auto Scaling Group. Construct with New, then Start and Stop.
type Fleet struct {
	cfg   Config
	log   *slog.Logger
	clock clock.Clock

	// snap is what readers (Instances, Capacity) see: published under mu
	// after every change, read without it.
	snap atomic.Pointer[fleetSnapshot]

	mu sync.Mutex
	// version is the launch template's version (cfg.Template, which
	// SetLaunchTemplate replaces under mu, as it does cfg.HealthCheckType
	// and cfg.GracePeriod).
	version    int
	capacity   Capacity
	refresh    bool // an instance refresh owns launches and terminations (SetRefresh)
	insts      map[string]*instance
	impaired   map[string]bool // zones nothing is launched into (ImpairZone)
	failures   int             // consecutive launch failures
	nextLaunch time.Time       // launches wait until then after failures
	running    bool
	cancel     context.CancelFunc // cancels the loop
	bgCancel   context.CancelFunc // cancels background stops (forces SIGKILL)
	bg         context.Context
	loopDone   chan struct{}
	stops      sync.WaitGroup // in-flight instance stops
	wake       chan struct{}

	activity activity // launches and terminations, for Activity
}

type instance struct {
	id      string
	zoneIdx int
	zone    *zone.Zone
	addr    netip.Addr
	port    int
	pid     int
	group   *cgroup.Group
	// start starts a process inside the instance's network (Network), or
	// on the host's.
	start      func(*exec.Cmd) error
	release    string // the launch template's Version (a release version)
	networked  bool   // the address is the Network's, not the zone's
	logf       *os.File
	logPath    string
	launchedAt time.Time
	version    int           // the launch template's version
	exited     chan struct{} // closed when cmd.Wait returns
	exitErr    error         // set before exited is closed

	// guarded by Fleet.mu
	state       State
	health      Health
	reason      string
	inServiceAt time.Time
}

// New validates cfg and returns a Fleet that is not yet started.
func New(cfg Config) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configure fleet: %w", err)
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger.With("component", "fleet", "fleet", cfg.Name)
	return &Fleet{
		cfg:      cfg,
		log:      log,
		clock:    cfg.Clock,
		capacity: Capacity{Min: cfg.Min, Desired: cfg.Desired, Max: cfg.Max},
		version:  1,
		insts:    map[string]*instance{},
		impaired: map[string]bool{},
		wake:     make(chan struct{}, 1),
	}, nil
}

// Start launches the control loop, which brings the fleet to its desired
// capacity. ctx bounds only the start; the loop runs until Stop.
func (f *Fleet) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start fleet %s: %w", f.cfg.Name, err)
	}
	if f.cfg.LogDir != "" {
		if err := os.MkdirAll(f.cfg.LogDir, 0o750); err != nil {
			return fmt.Errorf("start fleet %s: %w", f.cfg.Name, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running || f.loopDone != nil {
		return fmt.Errorf("start fleet %s: already started", f.cfg.Name)
	}
	base := context.WithoutCancel(ctx)
	loopCtx, cancel := context.WithCancel(base)
	f.bg, f.bgCancel = context.WithCancel(base)
	f.cancel = cancel
	f.loopDone = make(chan struct{})
	f.running = true
	go f.run(loopCtx)
	return nil
}

// Stop ends the control loop, then drains and stops every instance concurrently:
// Deregister (the LB drains), SIGTERM to the process group, SIGKILL after
// StopTimeout. When ctx ends first, remaining processes are killed at once; Stop
// still returns only after every process is gone, with ctx's error.
func (f *Fleet) Stop(ctx context.Context) error {
	f.mu.Lock()
	if !f.running {
		f.mu.Unlock()
		return nil
	}
	f.running = false
	f.cancel()
	f.mu.Unlock()
	<-f.loopDone

	f.mu.Lock()
	for _, in := range f.insts {
		if in.state.Live() {
			in.state, in.reason = StateDraining, "fleet stopped"
			f.stops.Add(1)
			go f.stopInstance(ctx, in)
		}
	}
	f.publishLocked()
	f.mu.Unlock()

	done := make(chan struct{})
	go func() { f.stops.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		f.bgCancel() // loop-initiated stops still in flight: kill now
		<-done
	}
	f.bgCancel()
	if err != nil {
		return fmt.Errorf("stop fleet %s: %w", f.cfg.Name, err)
	}
	return nil
}

// SetCapacity changes min, desired and max; it needs 0 ≤ min ≤ desired ≤ max.
// The loop acts on it at its next tick (it is woken at once).
func (f *Fleet) SetCapacity(minC, desired, maxC int) error {
	if err := validateCapacity(minC, desired, maxC); err != nil {
		return fmt.Errorf("set capacity of fleet %s: %w", f.cfg.Name, err)
	}
	f.mu.Lock()
	f.capacity = Capacity{Min: minC, Desired: desired, Max: maxC}
	f.publishLocked()
	f.mu.Unlock()
	f.poke()
	return nil
}

// fleetSnapshot is the fleet as readers see it.
type fleetSnapshot struct {
	capacity  Capacity
	instances []InstanceStatus
}

// publishLocked stores a snapshot of the capacity and instances (f.mu held).
func (f *Fleet) publishLocked() {
	f.snap.Store(&fleetSnapshot{capacity: f.capacity, instances: f.instancesLocked()})
}

// Capacity returns the current min, desired and max.
func (f *Fleet) Capacity() Capacity {
	if s := f.snap.Load(); s != nil {
		return s.capacity
	}
	return Capacity{Min: f.cfg.Min, Desired: f.cfg.Desired, Max: f.cfg.Max}
}

// Instances lists every instance the fleet holds (including those still
// stopping), oldest first, from the latest snapshot: it never waits on the
// fleet's lock.
func (f *Fleet) Instances() []InstanceStatus {
	if s := f.snap.Load(); s != nil {
		return slices.Clone(s.instances)
	}
	return []InstanceStatus{}
}

func (f *Fleet) instancesLocked() []InstanceStatus {
	out := make([]InstanceStatus, 0, len(f.insts))
	for _, in := range f.insts {
		out = append(out, InstanceStatus{
			ID: in.id, Zone: in.zone.Name, AZ: in.zone.AZ, Address: in.addr.String(), Subnet: in.zone.CIDR.String(), Port: in.port,
			PID: in.pid, State: in.state, Health: in.health, LaunchedAt: in.launchedAt, TemplateVersion: in.version,
			InServiceSince: in.inServiceAt, LogPath: in.logPath, Reason: in.reason, Version: in.release,
		})
	}
	slices.SortFunc(out, func(a, b InstanceStatus) int {
		return cmp.Or(a.LaunchedAt.Compare(b.LaunchedAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Terminate drains and stops one instance and returns when it is gone. With
// decrementDesired the desired capacity drops by one (refused below min);
// otherwise the loop launches a replacement.
func (f *Fleet) Terminate(ctx context.Context, id string, decrementDesired bool) error {
	f.mu.Lock()
	in, ok := f.insts[id]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("terminate %s: %w", id, ErrNotFound)
	}
	if !in.state.Live() {
		f.mu.Unlock()
		return fmt.Errorf("terminate %s: already %s", id, in.state)
	}
	if decrementDesired {
		if f.capacity.Desired-1 < f.capacity.Min {
			f.mu.Unlock()
			return fmt.Errorf("terminate %s: desired capacity %d would drop below min %d: %w",
				id, f.capacity.Desired-1, f.capacity.Min, ErrInvalidCapacity)
		}
		f.capacity.Desired--
	}
	in.state, in.reason = StateDraining, "terminated by request"
	ev := f.event(EventTerminate, in, in.reason)
	f.stops.Add(1)
	f.publishLocked()
	f.mu.Unlock()
	// Record the terminate before waking the loop, so the events read in the
	// order things happened (the loop may launch a replacement at once).
	f.emit(ev)
	f.poke()
	f.drainAndStop(ctx, in)
	return ctx.Err()
}

// Signal sends sig to the instance's whole process group (for drills:
// SIGKILL, SIGSTOP, SIGCONT).
func (f *Fleet) Signal(id string, sig syscall.Signal) error {
	f.mu.Lock()
	in, ok := f.insts[id]
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("signal %s: %w", id, ErrNotFound)
	}
	select {
	case <-in.exited:
		return fmt.Errorf("signal %s: process %d already exited", id, in.pid)
	default:
	}
	if err := syscall.Kill(-in.pid, sig); err != nil {
		return fmt.Errorf("signal %s (pgid %d): %w", id, in.pid, err)
	}
	return nil
}

// ImpairZone marks zone name impaired (a power loss, a network partition)
// or, with impaired false, healthy again. Nothing is launched into an
// impaired zone: replacements and new capacity go to the healthy zones, and
// once the zone returns, rebalancing moves capacity back (see Plan).
// Instances already in the zone are left to their health checks; a caller
// that cut their power signals them (Signal).
func (f *Fleet) ImpairZone(name string, impaired bool) error {
	if !slices.ContainsFunc(f.cfg.Zones, func(z *zone.Zone) bool { return z.Name == name }) {
		return fmt.Errorf("impair zone %s: the fleet has no such zone", name)
	}
	f.mu.Lock()
	if impaired {
		f.impaired[name] = true
	} else {
		delete(f.impaired, name)
	}
	f.mu.Unlock()
	f.poke()
	return nil
}

// ImpairedZones lists the impaired zones.
func (f *Fleet) ImpairedZones() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for z := range f.impaired {
		out = append(out, z)
	}
	slices.Sort(out)
	return out
}

func (f *Fleet) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *Fleet) emit(evs ...Event) {
	for _, e := range evs {
		f.activity.count(e)
		f.log.Info("instance "+e.Type, "instance", e.Instance, "zone", e.Zone, "reason", e.Reason)
		if f.cfg.OnEvent != nil {
			f.cfg.OnEvent(e)
		}
	}
}

func (f *Fleet) event(typ string, in *instance, reason string) Event {
	return Event{Time: f.clock.Now(), Fleet: f.cfg.Name, Type: typ, Instance: in.id, Zone: in.zone.Name, Reason: reason}
}

func (f *Fleet) run(ctx context.Context) {
	defer close(f.loopDone)
	for {
		f.safeReconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-f.clock.After(f.cfg.ReconcileInterval):
		case <-f.wake:
		}
	}
}

func (f *Fleet) safeReconcile(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			f.log.Error("reconcile panicked", "panic", r)
		}
	}()
	f.reconcile(ctx)
}

// reconcile observes, plans and acts once. Only the loop goroutine calls it.
func (f *Fleet) reconcile(ctx context.Context) {
	now := f.clock.Now()
	var evs []Event
	// Stops start after evs are recorded, so an instance's replace event
	// always comes before the terminate event its stop records.
	var stops []*instance
	f.mu.Lock()
	for _, in := range f.insts {
		select {
		case <-in.exited:
			if in.state.Live() {
				reason := exitReason(in.exitErr)
				in.state, in.health, in.reason = StateTerminated, HealthUnhealthy, reason
				evs = append(evs, f.event(EventReplace, in, reason))
				f.stops.Add(1)
				stops = append(stops, in)
			}
			continue
		default:
		}
		if !in.state.Live() {
			continue
		}
		h := f.observeHealth(in)
		if h != in.health {
			if h == HealthUnhealthy {
				evs = append(evs, f.event(EventUnhealthy, in, "health check"))
			}
			in.health = h
		}
		if in.state == StatePending && (f.cfg.HealthCheckType == HealthCheckEC2 || h == HealthHealthy) {
			in.state, in.inServiceAt = StateInService, now
			evs = append(evs, f.event(EventInService, in, ""))
		}
	}
	snap := Snapshot{Now: now, Zones: len(f.cfg.Zones), GracePeriod: f.cfg.GracePeriod, Impaired: make([]bool, len(f.cfg.Zones))}
	for i, z := range f.cfg.Zones {
		snap.Impaired[i] = f.impaired[z.Name]
	}
	for _, in := range f.insts {
		if in.state.Live() {
			snap.Instances = append(snap.Instances, Observed{ID: in.id, Zone: in.zoneIdx, State: in.state, Health: in.health, LaunchedAt: in.launchedAt})
		}
	}
	c := f.capacity
	acts := Plan(snap, Desired{Min: c.Min, Max: c.Max, Desired: c.Desired})
	if f.refresh {
		// The instance refresh launches and terminates; the fleet still
		// stops what is unhealthy past its grace period.
		acts.Launch = nil
		acts.Terminate = slices.DeleteFunc(acts.Terminate, func(t Termination) bool { return t.Reason != ReasonUnhealthy })
	}
	tpl := f.cfg.Template // SetLaunchTemplate changes it under mu
	for _, t := range acts.Terminate {
		in := f.insts[t.ID]
		in.state, in.reason = StateDraining, t.Reason
		if t.Reason == ReasonUnhealthy {
			evs = append(evs, f.event(EventReplace, in, t.Reason))
		}
		f.stops.Add(1)
		stops = append(stops, in)
	}
	launches := acts.Launch
	if len(launches) > 0 && now.Before(f.nextLaunch) {
		launches = nil
	}
	f.publishLocked()
	f.mu.Unlock()
	f.emit(evs...)
	for _, in := range stops {
		go f.stopInstance(f.bg, in)
	}

	for _, l := range launches {
		if ctx.Err() != nil {
			return
		}
		if _, err := f.launch(ctx, tpl, l.Zone, l.Reason); err != nil {
			f.mu.Lock()
			f.failures++
			d := backoff(f.cfg.ReconcileInterval, f.failures)
			f.nextLaunch = f.clock.Now().Add(d)
			f.mu.Unlock()
			f.log.Warn("launch failed", "zone", f.cfg.Zones[l.Zone].Name, "err", err, "retry_in", d)
			failed := Event{Time: f.clock.Now(), Fleet: f.cfg.Name, Type: EventLaunchFailed, Zone: f.cfg.Zones[l.Zone].Name, Reason: err.Error()}
			f.activity.count(failed)
			if f.cfg.OnEvent != nil {
				f.cfg.OnEvent(failed)
			}
			return
		}
		f.mu.Lock()
		f.failures = 0
		f.mu.Unlock()
	}
}

// backoff is base·2^(n-1), capped at maxLaunchBackoff, jittered by ±20%.
func backoff(base time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < maxLaunchBackoff; i++ {
		d *= 2
	}
	d = min(d, maxLaunchBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

func (f *Fleet) observeHealth(in *instance) Health {
	if f.cfg.HealthCheckType == HealthCheckEC2 || f.cfg.Balancer == nil {
		return HealthHealthy // the process is running: exits are handled before this
	}
	st, ok := f.cfg.Balancer.TargetHealth(in.id)
	switch {
	case !ok:
		return HealthInitial
	case st == "healthy":
		return HealthHealthy
	case st == "unhealthy":
		return HealthUnhealthy
	default:
		return HealthInitial
	}
}

func exitReason(err error) string {
	if err == nil {
		return "exited: exit status 0"
	}
	return "exited: " + err.Error()
}

// newID returns an EC2-style instance ID: "i-0" and 16 hex digits.
func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "i-0" + hex.EncodeToString(b)
}

// passEnv are the daemon variables an instance inherits.
var passEnv = []string{"PATH", "HOME", "LANG", "TZ", "TMPDIR"}

func (f *Fleet) launch(ctx context.Context, tpl LaunchTemplate, zi int, reason string) (_ string, err error) {
	z := f.cfg.Zones[zi]
	f.mu.Lock()
	version := f.version // SetLaunchTemplate changes it under mu
	f.mu.Unlock()
	id := newID()
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	// The instance's network: its own (a namespace in its zone's subnet),
	// or the host's with an address of the zone.
	var addr netip.Addr
	start := (*exec.Cmd).Start
	if f.cfg.Network != nil {
		att, err := f.cfg.Network.Attach(ctx, id, z)
		if err != nil {
			return "", fmt.Errorf("launch in zone %s: %w", z.Name, err)
		}
		cleanup = append(cleanup, func() {
			if err := f.cfg.Network.Detach(context.WithoutCancel(ctx), id); err != nil {
				f.log.Warn("detach network of a failed launch", "instance", id, "err", err)
			}
		})
		addr, start = att.Addr, att.Start
	} else {
		if addr, err = z.Allocate(id); err != nil {
			return "", fmt.Errorf("launch in zone %s: %w", z.Name, err)
		}
		cleanup = append(cleanup, func() { z.Release(addr) })
	}
	port := tpl.Port
	if port == 0 {
		if port, err = zone.FreePort(addr); err != nil {
			return "", fmt.Errorf("launch %s: %w", id, err)
		}
	}
	host := addr.String()
	vars := map[string]string{}
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			vars[k] = v
		}
	}
	for k, v := range tpl.Env {
		vars[k] = v
	}
	if f.cfg.EnvFunc != nil {
		for k, v := range f.cfg.EnvFunc(InstanceInfo{ID: id, Zone: z, Host: host, Port: port}) {
			vars[k] = v
		}
	}
	vars["HOST"], vars["PORT"] = host, strconv.Itoa(port)
	vars["HAVEN_INSTANCE_ID"], vars["HAVEN_ZONE"] = id, z.Name
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	rep := strings.NewReplacer("${HOST}", host, "${PORT}", strconv.Itoa(port), "${INSTANCE_ID}", id, "${ZONE}", z.Name)
	args := make([]string, len(tpl.Command))
	for i, a := range tpl.Command {
		args[i] = rep.Replace(a)
	}

	// The process outlives this call: its lifetime is managed by the fleet, not ctx.
	cmd := z.Cmd(context.WithoutCancel(ctx), args[0], args[1:]...)
	cmd.Env, cmd.Dir = env, tpl.Dir
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Own process group (stop and signal the whole tree); SIGKILL when the daemon
	// dies. Pdeathsig fires when the forking OS thread exits; Go keeps its threads
	// for the life of the process unless a goroutine exits while locked to one, so
	// in practice this means "when the daemon dies". cgroup.Manager.Sweep at the
	// next start reaps anything that still escaped.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.WaitDelay = time.Second
	if err := dropPrivileges(cmd, f.cfg.Sandbox); err != nil {
		return "", fmt.Errorf("launch %s: %w", id, err)
	}

	in := &instance{id: id, zoneIdx: zi, zone: z, addr: addr, port: port, start: start, networked: f.cfg.Network != nil,
		exited: make(chan struct{}), state: StatePending, health: HealthInitial, version: version, release: tpl.Version}
	if f.cfg.LogDir != "" {
		in.logPath = filepath.Join(f.cfg.LogDir, id+".log")
		lf, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return "", fmt.Errorf("launch %s: %w", id, err)
		}
		in.logf = lf
		cleanup = append(cleanup, func() { lf.Close() })
		cmd.Stdout, cmd.Stderr = lf, lf
	}
	if f.cfg.Cgroups != nil {
		g, err := f.cfg.Cgroups.Create(id, cgroup.Limits{CPU: tpl.CPU, MemoryBytes: tpl.MemoryBytes})
		if err != nil {
			return "", fmt.Errorf("launch %s: %w", id, err)
		}
		in.group = g
		cleanup = append(cleanup, func() { _ = g.Delete(context.WithoutCancel(ctx)) })
		if err := g.StartWith(cmd, start); err != nil {
			return "", fmt.Errorf("launch %s: %w", id, err)
		}
	} else if err := start(cmd); err != nil {
		return "", fmt.Errorf("launch %s: %w", id, err)
	}
	in.pid = cmd.Process.Pid
	in.launchedAt = f.clock.Now()
	go func() {
		in.exitErr = cmd.Wait()
		close(in.exited)
		f.poke()
	}()
	cleanup = append(cleanup, func() {
		_ = syscall.Kill(-in.pid, syscall.SIGKILL)
		<-in.exited
	})

	if b := f.cfg.Balancer; b != nil {
		t := Target{ID: id, Zone: z.Name, AZ: z.AZ, Addr: net.JoinHostPort(host, strconv.Itoa(port))}
		if err := b.Register(t); err != nil {
			return "", fmt.Errorf("launch %s: register with balancer: %w", id, err)
		}
	}
	evs := []Event{f.event(EventLaunch, in, reason)}
	f.mu.Lock()
	if f.cfg.HealthCheckType == HealthCheckEC2 {
		in.state, in.health, in.inServiceAt = StateInService, HealthHealthy, in.launchedAt
		evs = append(evs, f.event(EventInService, in, ""))
	}
	f.insts[id] = in
	f.publishLocked()
	f.mu.Unlock()
	f.emit(evs...)
	return id, nil
}

// stopInstance drains and stops in (already marked draining or terminated by the
// caller, which also did f.stops.Add(1)), then forgets it.
func (f *Fleet) stopInstance(ctx context.Context, in *instance) {
	f.mu.Lock()
	reason := in.reason
	f.mu.Unlock()
	f.emit(f.event(EventTerminate, in, reason))
	f.drainAndStop(ctx, in)
}

// drainAndStop deregisters in, then SIGTERMs and, after StopTimeout, SIGKILLs
// its process group. The caller has recorded the terminate event.
func (f *Fleet) drainAndStop(ctx context.Context, in *instance) {
	defer f.stops.Done()
	if b := f.cfg.Balancer; b != nil {
		if err := b.Deregister(ctx, in.id); err != nil {
			f.log.Warn("deregister failed", "instance", in.id, "err", err)
		}
	}
	f.mu.Lock()
	if in.state == StateDraining {
		in.state = StateTerminating
	}
	f.publishLocked()
	f.mu.Unlock()

	select {
	case <-in.exited:
	default:
		_ = syscall.Kill(-in.pid, syscall.SIGTERM)
		select {
		case <-in.exited:
		case <-f.clock.After(f.cfg.StopTimeout):
			f.log.Warn("instance ignored SIGTERM; killing", "instance", in.id, "stop_timeout", f.cfg.StopTimeout)
		case <-ctx.Done():
		}
	}
	f.log.Debug("stop: process exited", "instance", in.id)
	// Kill whatever is left: the leader if it ignored SIGTERM, and any children
	// still in its process group or cgroup.
	_ = syscall.Kill(-in.pid, syscall.SIGKILL)
	<-in.exited
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := killGroup(kctx, in.pid); err != nil {
		f.log.Warn("process group outlived SIGKILL", "instance", in.id, "pgid", in.pid, "err", err)
	}
	if in.group != nil {
		if err := in.group.Delete(kctx); err != nil {
			f.log.Warn("delete cgroup failed", "instance", in.id, "err", err)
		}
	}
	if in.logf != nil {
		in.logf.Close()
	}
	f.log.Debug("stop: cleaned", "instance", in.id)
	if in.networked {
		if err := f.cfg.Network.Detach(kctx, in.id); err != nil {
			f.log.Warn("detach network", "instance", in.id, "err", err)
		}
	} else {
		in.zone.Release(in.addr)
	}
	f.mu.Lock()
	in.state = StateTerminated
	reason := in.reason
	delete(f.insts, in.id)
	f.publishLocked()
	f.mu.Unlock()
	f.emit(f.event(EventTerminated, in, reason))
	f.poke()
}

// killGroup SIGKILLs process group pgid until no live member is left (or ctx
// ends). SIGKILL is asynchronous, and killed orphans stay zombies until init
// reaps them; zombies do not count.
func killGroup(ctx context.Context, pgid int) error {
	for {
		if err := syscall.Kill(-pgid, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) || !groupAlive(pgid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kill process group %d: %w", pgid, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// groupAlive reports whether process group pgid has a member that is not a zombie.
func groupAlive(pgid int) bool {
	for _, pid := range proc.Group(pgid) {
		if proc.Alive(pid) {
			return true
		}
	}
	return false
}
