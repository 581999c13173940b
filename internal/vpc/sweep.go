package vpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/haven-platform/haven/internal/zone"
)

// SweepConfig says which region's leftovers to remove.
type SweepConfig struct {
	// Key identifies the region (Config.Key). Required.
	Key string
	// LeaseDir is where the region's lease lives. Default zone.DefaultLeaseDir.
	LeaseDir string
	// KeepLease keeps the region's address lease (Start sweeps before it
	// builds again on the same range). Default false: the lease is released.
	KeepLease bool
	// NFT is the nft binary. Default "nft" from PATH.
	NFT string
	// StateFile is the VPC's record (Config.StateFile), removed with the
	// rest. Default "": none.
	StateFile string
	// Logger receives what was removed. Default slog.Default().
	Logger *slog.Logger
}

// Swept is what a sweep removed.
type Swept struct {
	// Namespaces are the namespaces deleted.
	Namespaces []string
	// Killed are the pids SIGKILLed because they were still inside one.
	Killed []int
	// Links are the host links deleted.
	Links []string
	// Tables are the host's nftables tables deleted ("family name").
	Tables []string
	// Lease is true when the region's address lease was released.
	Lease bool
}

// Empty reports whether nothing was left.
func (s Swept) Empty() bool {
	return len(s.Namespaces) == 0 && len(s.Killed) == 0 && len(s.Links) == 0 && len(s.Tables) == 0 && !s.Lease
}

// Sweep removes everything the region of cfg.Key has on this machine, from
// names alone, so it works after the daemon was SIGKILLed: every namespace
// named Prefix(key)-* (after SIGKILLing any process still inside it,
// otherwise the namespace and its links would outlive the sweep; the
// router's bridges and ports go with the router namespace, each node's
// veth with its namespace), every host link named Prefix(key)-* (the host
// link, and with it the host route), every host nftables table named
// Prefix(key)_*, and the region's address lease. Sweeping a region that
// left nothing is a no-op.
func Sweep(ctx context.Context, cfg SweepConfig) (Swept, error) {
	if cfg.Key == "" {
		return Swept{}, errors.New("sweep vpc: key required")
	}
	if cfg.NFT == "" {
		cfg.NFT = "nft"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	prefix := Prefix(cfg.Key)
	var sw Swept
	var errs []error

	ents, err := os.ReadDir(NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list namespaces: %w", err))
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix+"-") {
			continue
		}
		ns := Namespace{name: e.Name()}
		pids, err := killIn(kctx, ns)
		sw.Killed = append(sw.Killed, pids...)
		if err != nil {
			errs = append(errs, err)
		}
		if err := deleteNamespace(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		sw.Namespaces = append(sw.Namespaces, ns.name)
	}

	links, err := netlink.LinkList()
	if err != nil {
		errs = append(errs, fmt.Errorf("list host links: %w", err))
	}
	for _, l := range links {
		if !strings.HasPrefix(l.Attrs().Name, prefix+"-") {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("delete host link %s: %w", l.Attrs().Name, err))
			continue
		}
		sw.Links = append(sw.Links, l.Attrs().Name)
	}

	var tables [][2]string
	if os.Geteuid() == 0 { // without root, nothing can have created one, nor list them
		tables, err = hostTables(ctx, cfg.NFT, prefix+"_")
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range tables {
		if out, err := exec.CommandContext(ctx, cfg.NFT, "delete", "table", t[0], t[1]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete table %s %s: %w: %s", t[0], t[1], err, bytes.TrimSpace(out)))
			continue
		}
		sw.Tables = append(sw.Tables, t[0]+" "+t[1])
	}

	if !cfg.KeepLease {
		l, ok, err := zone.FindLease(cfg.LeaseDir, cfg.Key)
		if err != nil {
			errs = append(errs, err)
		} else if ok {
			if err := l.Release(); err != nil {
				errs = append(errs, err)
			} else {
				sw.Lease = true
			}
		}
	}
	if cfg.StateFile != "" {
		if err := os.Remove(cfg.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove the VPC's record: %w", err))
		}
	}
	if !sw.Empty() {
		cfg.Logger.Info("removed a region's network", "component", "vpc", "prefix", prefix, "namespaces", sw.Namespaces, "killed", sw.Killed, "links", sw.Links, "tables", sw.Tables, "lease", sw.Lease)
	}
	return sw, errors.Join(errs...)
}

// hostTables lists the host's nftables tables whose name starts with prefix,
// as [family, name] pairs. Without nft there are none.
func hostTables(ctx context.Context, bin, prefix string) ([][2]string, error) {
	if _, err := exec.LookPath(bin); err != nil {
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, bin, "list", "tables").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("list host nftables tables: %w: %s", err, bytes.TrimSpace(out))
	}
	var tables [][2]string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "table" && strings.HasPrefix(f[2], prefix) {
			tables = append(tables, [2]string{f[1], f[2]})
		}
	}
	return tables, nil
}

// Alive reports whether the region of key has a VPC on this machine (its
// router namespace exists): what zone.LeaseConfig.Alive needs.
func Alive(key string) bool {
	_, err := os.Stat(Namespace{name: routerName(Prefix(key))}.Path())
	return err == nil
}

// Claim claims the address lease of the region of key in dir (default
// zone.DefaultLeaseDir), taking over the slot of a region whose VPC is gone.
func Claim(key, dir string) (zone.Lease, error) {
	return zone.Claim(zone.LeaseConfig{Dir: dir, Key: key, Alive: Alive})
}

// Available reports why this process cannot build a VPC, or nil if it can:
// it must be root (creating namespaces and links needs CAP_SYS_ADMIN and
// CAP_NET_ADMIN), the kernel must have network namespaces, and nft must be
// installed. Without a VPC, a region runs on loopback ranges, and its
// security groups are not enforced.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("network namespaces unavailable: haven runs as uid %d, and creating namespaces needs root; run as root to enforce security groups", os.Geteuid())
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("network namespaces unavailable: this kernel has none (%v)", err)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("network namespaces unavailable: nft is not installed (apt-get install nftables): %w", err)
	}
	return nil
}
