package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/zone"
)

// EventAdopt is the event of an instance a restarted daemon adopted.
const EventAdopt = "adopt"

// Adoption is what Start found of the instances an earlier daemon left.
type Adoption struct {
	// Adopted are the instances adopted: same id, same process.
	Adopted []string `json:"adopted,omitempty"`
	// Gone are recorded instances whose process had exited; their network
	// and cgroup were removed, and the fleet replaces them.
	Gone []string `json:"gone,omitempty"`
	// LeftAlone are recorded instances whose pid now runs another program
	// (another start time, cgroup or network namespace), with why: that
	// program is not touched; the instance's own network and cgroup are
	// removed, and the fleet replaces it.
	LeftAlone []string `json:"left_alone,omitempty"`
	// Failed are instances that still ran but could not be taken over
	// (their network or metadata endpoint), with why: they are stopped and
	// replaced.
	Failed []string `json:"failed,omitempty"`
	// SweptCgroups are cgroups of the fleet no adopted instance uses.
	SweptCgroups []string `json:"swept_cgroups,omitempty"`
}

// Adoption reports what Start found.
func (f *Fleet) Adoption() Adoption {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.adoption
	a.Adopted, a.Gone, a.LeftAlone, a.Failed = slices.Clone(a.Adopted), slices.Clone(a.Gone), slices.Clone(a.LeftAlone), slices.Clone(a.Failed)
	return a
}

// fleetRecord is StateFile's content.
type fleetRecord struct {
	Capacity Capacity `json:"capacity"`
	// TemplateVersion is the fleet's launch template version when written.
	TemplateVersion int `json:"template_version,omitempty"`
	// Refresh is true while an instance refresh owned launches and
	// terminations (SetRefresh): the next daemon keeps it so until its
	// release controller, resuming the rollout or not, decides.
	Refresh   bool             `json:"refresh,omitempty"`
	Instances []instanceRecord `json:"instances"`
}

type instanceRecord struct {
	ID         string            `json:"id"`
	Zone       string            `json:"zone"`
	Addr       netip.Addr        `json:"addr"`
	Port       int               `json:"port"`
	Process    proc.Identity     `json:"process"`
	State      State             `json:"state"`
	LaunchedAt time.Time         `json:"launched_at"`
	LogPath    string            `json:"log_path,omitempty"`
	Networked  bool              `json:"networked,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	// TemplateVersion and Release are the launch template version and the
	// release version the instance was launched from: an adopted instance
	// keeps them, so neither Roll nor a rollout takes it for outdated.
	TemplateVersion int    `json:"template_version,omitempty"`
	Release         string `json:"release,omitempty"`
	// InServiceSince is when it entered service (the scaler's warmup
	// counts from it); zero while pending.
	InServiceSince time.Time `json:"in_service_since,omitzero"`
}

// saveLocked writes the record when it changed (f.mu held).
func (f *Fleet) saveLocked() {
	if f.cfg.StateFile == "" {
		return
	}
	rec := fleetRecord{Capacity: f.capacity, TemplateVersion: f.version, Refresh: f.refresh}
	for _, in := range f.insts {
		if in.ident.PID == 0 || in.state == StateTerminated {
			continue
		}
		rec.Instances = append(rec.Instances, instanceRecord{
			ID: in.id, Zone: in.zone.Name, Addr: in.addr, Port: in.port, Process: in.ident, State: in.state,
			LaunchedAt: in.launchedAt, LogPath: in.logPath, Networked: in.networked, Env: in.env,
			TemplateVersion: in.version, Release: in.release, InServiceSince: in.inServiceAt,
		})
	}
	slices.SortFunc(rec.Instances, func(a, b instanceRecord) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return
	}
	sum := sha256.Sum256(b)
	digest := hex.EncodeToString(sum[:])
	if digest == f.savedSum {
		return
	}
	if err := atomicfile.WriteFile(f.cfg.StateFile, append(b, '\n'), 0o600); err != nil {
		f.log.Warn("record the fleet's instances", "err", err)
		return
	}
	f.savedSum = digest
}

// adoptLocked takes over the instances an earlier daemon recorded whose
// process still runs as the one recorded (pid, start time, cgroup,
// network namespace): same id, same process, no relaunch. It restores the
// recorded capacity, so an instance added by scaling is not scaled in.
// What it cannot prove is its own it does not touch; it reports
// everything in Adoption. Then it removes the fleet's cgroups no adopted
// instance uses.
func (f *Fleet) adoptLocked(ctx context.Context) error {
	var rec fleetRecord
	if f.cfg.StateFile != "" {
		b, err := os.ReadFile(f.cfg.StateFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("read the fleet's record: %w", err)
		default:
			if err := json.Unmarshal(b, &rec); err != nil {
				f.log.Warn("the fleet's record is unreadable; adopting nothing", "file", f.cfg.StateFile, "err", err)
				rec = fleetRecord{}
			}
		}
	}
	if len(rec.Instances) > 0 && validateCapacity(rec.Capacity.Min, rec.Capacity.Desired, rec.Capacity.Max) == nil {
		f.capacity = rec.Capacity
	}
	// The template version goes on from the recorded one, so the adopted
	// instances' versions compare with it as they did.
	f.version = max(f.version, rec.TemplateVersion)
	if len(rec.Instances) > 0 && rec.Refresh {
		// A rollout had launched instances beyond desired capacity: the
		// plan must not trim them before the rollout resumes.
		f.refresh = true
	}
	var evs []Event
	kept := map[string]bool{}
	for _, r := range rec.Instances {
		zi := slices.IndexFunc(f.cfg.Zones, func(z *zone.Zone) bool { return z.Name == r.Zone })
		err := r.Process.Check()
		switch {
		case errors.Is(err, proc.ErrNotSame):
			f.adoption.LeftAlone = append(f.adoption.LeftAlone, fmt.Sprintf("%s (pid %d): %v", r.ID, r.Process.PID, err))
			f.log.Warn("instance record names a process that is not ours any more: left alone", "instance", r.ID, "pid", r.Process.PID, "err", err)
			if cur, cerr := proc.IdentityOf(r.Process.PID); cerr == nil && (cur.NetNS == r.Process.NetNS || cur.Cgroup == r.Process.Cgroup) {
				// It lives in the instance's namespace or cgroup: removing
				// those would touch it. They stay, with it.
				kept[r.ID] = true
				continue
			}
			f.releaseRecorded(ctx, r)
			continue
		case err != nil:
			f.adoption.Gone = append(f.adoption.Gone, r.ID)
			f.log.Info("recorded instance is gone", "instance", r.ID, "pid", r.Process.PID)
			f.releaseRecorded(ctx, r)
			continue
		}
		in, err := f.adoptOne(ctx, r, zi)
		if err != nil {
			f.adoption.Failed = append(f.adoption.Failed, fmt.Sprintf("%s (pid %d): %v", r.ID, r.Process.PID, err))
			f.log.Warn("cannot take over a running instance: stopping it", "instance", r.ID, "pid", r.Process.PID, "err", err)
			// Ours by its identity: stop it, and what it had.
			_ = syscall.Kill(-r.Process.PID, syscall.SIGKILL)
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = killGroup(kctx, r.Process.PID)
			cancel()
			f.releaseRecorded(ctx, r)
			continue
		}
		kept[r.ID] = true
		f.insts[r.ID] = in
		f.adoption.Adopted = append(f.adoption.Adopted, r.ID)
		evs = append(evs, f.event(EventAdopt, in, fmt.Sprintf("pid %d, running since %s", in.pid, in.launchedAt.Format(time.RFC3339))))
		if !r.State.Live() {
			// It was being stopped when the daemon died: finish that.
			in.state, in.reason = StateDraining, "stopping when the earlier daemon died"
			f.stops.Add(1)
			go f.stopInstance(context.WithoutCancel(ctx), in)
		}
	}
	if f.cfg.Cgroups != nil && f.cfg.Cgroups.Enabled() {
		swept, err := f.cfg.Cgroups.SweepExcept(ctx, func(name string) bool { return kept[name] })
		f.adoption.SweptCgroups = swept
		if err != nil {
			f.log.Warn("sweep cgroups no adopted instance uses", "err", err)
		}
	}
	f.publishLocked()
	if len(evs) > 0 || len(f.adoption.Gone)+len(f.adoption.LeftAlone)+len(f.adoption.Failed) > 0 {
		f.log.Info("fleet adoption", "adopted", f.adoption.Adopted, "gone", f.adoption.Gone, "left_alone", f.adoption.LeftAlone, "failed", f.adoption.Failed)
	}
	// Events go out after Start returns its lock; the hooks must not wait on it.
	go f.emit(evs...)
	return nil
}

// adoptOne rebuilds an instance from its record, its process still running.
func (f *Fleet) adoptOne(ctx context.Context, r instanceRecord, zi int) (*instance, error) {
	if zi < 0 {
		return nil, fmt.Errorf("zone %q is not one of the fleet's", r.Zone)
	}
	z := f.cfg.Zones[zi]
	in := &instance{
		id: r.ID, zoneIdx: zi, zone: z, addr: r.Addr, port: r.Port, pid: r.Process.PID, ident: r.Process,
		logPath: r.LogPath, launchedAt: r.LaunchedAt, networked: r.Networked, env: r.Env, adopted: true,
		version: r.TemplateVersion, release: r.Release, inServiceAt: r.InServiceSince,
		exited: make(chan struct{}), state: StateInService, health: HealthHealthy,
	}
	if in.inServiceAt.IsZero() {
		in.inServiceAt = r.LaunchedAt // a record written before it was kept
	}
	if f.cfg.HealthCheckType == HealthCheckELB {
		in.health = HealthInitial // the balancer's word decides at the next tick
	}
	if r.Networked {
		if f.cfg.Network == nil {
			return nil, errors.New("it was in a network of its own, this fleet has none")
		}
		att, err := f.cfg.Network.Adopt(ctx, r.ID, z, r.Addr)
		if err != nil {
			return nil, fmt.Errorf("take over its network: %w", err)
		}
		in.start = att.Start
	} else if err := z.Reserve(r.Addr, r.ID); err != nil {
		return nil, err
	}
	if f.cfg.Cgroups != nil {
		g, ok := f.cfg.Cgroups.Adopt(r.ID, r.Process.PID)
		if !ok {
			f.releaseNet(ctx, in)
			return nil, fmt.Errorf("its cgroup %s is gone", r.ID)
		}
		in.group = g
	}
	if f.cfg.AdoptFunc != nil {
		if err := f.cfg.AdoptFunc(InstanceInfo{ID: r.ID, Zone: z, Host: r.Addr.String(), Port: r.Port}, r.Env); err != nil {
			f.releaseNet(ctx, in)
			return nil, err
		}
	}
	gone, err := r.Process.Gone(context.Background())
	if err != nil {
		f.releaseNet(ctx, in)
		return nil, err
	}
	go func() {
		<-gone
		in.exitErr = errors.New("the adopted process exited (its status went to its first parent)")
		close(in.exited)
		f.poke()
	}()
	if b := f.cfg.Balancer; b != nil {
		t := Target{ID: r.ID, Zone: z.Name, AZ: z.AZ, Addr: net.JoinHostPort(r.Addr.String(), strconv.Itoa(r.Port))}
		if err := b.Register(t); err != nil {
			// Registered already, as it is (the load balancer outlived the
			// daemon too): nothing to do. Anything else is a failure.
			f.log.Debug("register adopted instance", "instance", r.ID, "err", err)
		}
	}
	return in, nil
}

func (f *Fleet) releaseNet(ctx context.Context, in *instance) {
	if in.networked {
		_ = f.cfg.Network.Detach(context.WithoutCancel(ctx), in.id)
	} else {
		in.zone.Release(in.addr)
	}
}

// releaseRecorded removes what a recorded instance that is not adopted
// had: its network (with anything still in its namespace: a namespace is
// the fleet's own) and its cgroup (likewise). A process the record names
// that is not ours is in neither, so it is not touched.
func (f *Fleet) releaseRecorded(ctx context.Context, r instanceRecord) {
	if b := f.cfg.Balancer; b != nil {
		// A load balancer that outlived the daemon still has it: it goes
		// (at once: nothing is in flight to a dead target).
		go func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = b.Deregister(dctx, r.ID)
		}()
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if r.Networked && f.cfg.Network != nil {
		if err := f.cfg.Network.Detach(kctx, r.ID); err != nil {
			f.log.Debug("remove the network of a recorded instance", "instance", r.ID, "err", err)
		}
	}
	if f.cfg.Cgroups != nil {
		if g, ok := f.cfg.Cgroups.Adopt(r.ID, 0); ok && f.cfg.Cgroups.Enabled() {
			_ = g.Delete(kctx)
		}
	}
}

// Detach ends the control loop and lets go of every instance without
// stopping it: for a daemon that hands over to another (an upgrade),
// which adopts them. The record stays.
func (f *Fleet) Detach() {
	f.mu.Lock()
	if !f.running {
		f.mu.Unlock()
		return
	}
	f.running = false
	f.cancel()
	f.mu.Unlock()
	<-f.loopDone
	f.mu.Lock()
	f.saveLocked()
	for _, in := range f.insts {
		if in.logf != nil {
			in.logf.Close()
		}
	}
	f.mu.Unlock()
}

// SweepRecorded ends every instance recorded in stateFile whose process
// still runs as recorded (a daemon died and `haven down` cleans up after
// it): SIGKILL to its process group. A record whose pid runs another
// program now is not touched. It removes the record and returns the pids
// it ended.
func SweepRecorded(ctx context.Context, stateFile string) ([]int, error) {
	b, err := os.ReadFile(stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the fleet's record: %w", err)
	}
	var rec fleetRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		_ = os.Remove(stateFile)
		return nil, nil
	}
	var killed []int
	for _, r := range rec.Instances {
		if r.Process.Check() != nil {
			continue
		}
		_ = syscall.Kill(-r.Process.PID, syscall.SIGKILL)
		kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = killGroup(kctx, r.Process.PID)
		cancel()
		killed = append(killed, r.Process.PID)
	}
	if err := os.Remove(stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return killed, err
	}
	return killed, nil
}
