package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/objstore"
	"github.com/haven-platform/haven/internal/pgha/endpoint"
	"github.com/haven-platform/haven/internal/vpc"
)

// CgroupPattern matches the name of the cgroup root of stateDir's region.
func CgroupPattern(stateDir string) string { return cgroup.RegionPattern(stateDir) }

// Leftovers is what CleanUp found and removed.
type Leftovers struct {
	Processes []int    `json:"processes,omitempty"` // killed (PostgreSQL servers and tools)
	Table     string   `json:"nft_table,omitempty"` // the database endpoint's nftables table
	Cgroups   []string `json:"cgroups,omitempty"`   // cgroup roots removed, with any process in them
	ObjStore  int      `json:"objstore,omitempty"`  // the object store's pid, stopped
	// Network is what was left of the region's VPC: namespaces (with the
	// processes still in them), host links, tables, the address lease.
	Network *vpc.Swept `json:"network,omitempty"`
}

// Empty reports whether nothing was left.
func (l Leftovers) Empty() bool {
	return len(l.Processes) == 0 && l.Table == "" && len(l.Cgroups) == 0 && l.ObjStore == 0 && (l.Network == nil || l.Network.Empty())
}

// CleanUp removes what a daemon of stateDir left behind when it died
// without stopping (SIGKILL, a crash, the machine's OOM killer): PostgreSQL
// processes working on its files, the cgroups of its instances with
// whatever still runs in them, and the endpoint's nftables table, which
// would otherwise keep diverting the endpoint's port on this host. It takes
// the state dir's lock first, so it never touches a live daemon's region.
// A state dir that does not exist has nothing to clean. Cgroups are looked
// for next to this process's own cgroup, where a daemon started from the
// same session put them.
func CleanUp(ctx context.Context, stateDir string, logger *slog.Logger) (Leftovers, error) {
	var l Leftovers
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "haven.lock")); errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	unlock, err := lockStateDir(stateDir)
	if err != nil {
		return l, err
	}
	defer unlock()
	var errs []error
	// The processes of their own the region's tiers run, found by their
	// records (identity-checked: a pid another program reuses now is not
	// touched): instances, the load balancer, the endpoint's proxy, the
	// object store's relays.
	for _, sweep := range []func() ([]int, error){
		func() ([]int, error) { return fleet.SweepRecorded(ctx, filepath.Join(stateDir, "fleet.json")) },
		func() ([]int, error) { return lb.SweepProcesses(ctx, filepath.Join(stateDir, "lb")) },
		func() ([]int, error) { return endpoint.SweepProcesses(ctx, filepath.Join(stateDir, "endpoint")) },
		func() ([]int, error) {
			// The object store's interface endpoint relays, one per zone.
			dirs, _ := filepath.Glob(filepath.Join(stateDir, "s3-relay", "*"))
			var pids []int
			var errs []error
			for _, d := range dirs {
				p, err := endpoint.SweepProcesses(ctx, d)
				pids, errs = append(pids, p...), append(errs, err)
			}
			return pids, errors.Join(errs...)
		},
	} {
		pids, err := sweep()
		l.Processes = append(l.Processes, pids...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(stateDir, "pg")); err == nil {
		l.Processes = append(l.Processes, sweepLeftovers(target, nil)...)
	} else if _, err := os.Stat(filepath.Join(stateDir, "pg")); err == nil {
		l.Processes = append(l.Processes, sweepLeftovers(filepath.Join(stateDir, "pg"), nil)...)
	}
	roots, err := cgroup.Roots(CgroupPattern(stateDir))
	if err != nil {
		errs = append(errs, err)
	}
	for _, root := range roots {
		m, err := cgroup.NewManager(root, logger)
		if err == nil && !m.Enabled() {
			err = errors.New("cgroups are not usable from this process")
		}
		if err == nil {
			err = m.Remove(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", root, err))
			continue
		}
		l.Cgroups = append(l.Cgroups, root)
	}
	// The VPC: every namespace of the region (and whatever still runs in
	// one: instances, database servers), the host link and route, any
	// table, the lease. From names alone, as the daemon is gone.
	if sw, err := vpc.Sweep(ctx, vpc.SweepConfig{Key: stateDir, Logger: logger, StateFile: filepath.Join(stateDir, "vpc.json")}); err != nil {
		errs = append(errs, fmt.Errorf("remove the region's network: %w", err))
	} else if !sw.Empty() {
		l.Network = &sw
	}
	table := endpoint.NATTableName(stateDir)
	if removed, err := endpoint.RemoveNAT(ctx, table); err != nil {
		errs = append(errs, err)
	} else if removed {
		l.Table = table
	}
	// The object store outlives a daemon by design (the next one adopts
	// it); down stops it.
	store := &objstore.Process{Dir: filepath.Join(stateDir, "objstore"), Logger: logger}
	if _, err := store.Adopt(ctx); err != nil {
		logger.Warn("object store does not answer; stopping it", "err", err)
	}
	pid := store.PID()
	if err := store.Stop(ctx); err != nil {
		errs = append(errs, err)
	} else if pid != 0 {
		l.ObjStore = pid
	}
	for _, f := range []string{"haven.sock", "daemon.pid", "endpoint.json"} {
		_ = os.Remove(filepath.Join(stateDir, f))
	}
	return l, errors.Join(errs...)
}
