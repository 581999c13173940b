package vpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/haven-platform/haven/internal/atomicfile"
)

// savedState is the VPC's record (Config.StateFile): what a later daemon
// needs to adopt the running VPC. The kernel holds the rest (namespaces,
// links, addresses, routes, rules).
type savedState struct {
	Prefix    string           `json:"prefix"`
	Region    netip.Prefix     `json:"region"`
	Nodes     []savedNode      `json:"nodes"`
	Endpoints []savedEndpoint  `json:"endpoints"`
	Faults    map[string]Fault `json:"faults,omitempty"`
}

type savedNode struct {
	Name       string      `json:"name"`
	Interfaces []Interface `json:"interfaces"`
	Groups     []string    `json:"groups,omitempty"`
	Metadata   bool        `json:"metadata,omitempty"`
}

type savedEndpoint struct {
	Name   string         `json:"name"`
	Target netip.AddrPort `json:"target"`
	Gen    uint32         `json:"generation"`
	Paused bool           `json:"paused,omitempty"`
}

// saveLocked writes the record (v.mu held). Without a StateFile it does
// nothing.
func (v *VPC) saveLocked() error {
	if v.cfg.StateFile == "" {
		return nil
	}
	st := savedState{Prefix: v.prefix, Region: v.plan.Region(), Faults: v.faults}
	for _, n := range v.nodes {
		st.Nodes = append(st.Nodes, savedNode{Name: n.Name, Interfaces: n.Interfaces, Groups: n.Groups, Metadata: n.Metadata})
	}
	for _, e := range v.endpoints {
		st.Endpoints = append(st.Endpoints, savedEndpoint{Name: e.name, Target: e.target, Gen: e.gen, Paused: e.paused})
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(v.cfg.StateFile, append(b, '\n'), 0o600)
}

// adoptLocked takes over the VPC an earlier daemon of the region left
// running, from its record: the router namespace, the host link and the
// rule tables must all be there, for the same range. Each recorded node
// whose namespace is there is adopted with its addresses (reserved in the
// zones again); one whose namespace is gone is dropped, with its router
// ports. A namespace of the region that the record does not name is swept
// with whatever runs in it (a daemon died between creating it and
// recording it). It returns false, with the reason, when there is nothing
// to adopt; the caller then sweeps and builds afresh.
func (v *VPC) adoptLocked(ctx context.Context) (bool, error) {
	b, err := os.ReadFile(v.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the VPC's record: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return false, fmt.Errorf("read the VPC's record %s: %w", v.cfg.StateFile, err)
	}
	if st.Prefix != v.prefix || st.Region != v.plan.Region() {
		return false, fmt.Errorf("the record is of %s on %s, this region is %s on %s", st.Prefix, st.Region, v.prefix, v.plan.Region())
	}
	if !v.router.Exists() {
		return false, fmt.Errorf("its router namespace %s is gone", v.router.Name())
	}
	if _, err := netlink.LinkByName(hostLinkName(v.prefix)); err != nil {
		return false, fmt.Errorf("its host link %s is gone: %w", hostLinkName(v.prefix), err)
	}
	if err := v.checkTables(ctx); err != nil {
		return false, err
	}
	// Adopt the nodes whose namespace is there.
	adopted := map[string]*Node{}
	var dropped []savedNode
	for _, sn := range st.Nodes {
		n := &Node{Namespace: Namespace{name: nodeNSName(v.prefix, sn.Name)}, Name: sn.Name, Interfaces: sn.Interfaces, Groups: sn.Groups, Metadata: sn.Metadata}
		ok := n.Exists() && len(n.Interfaces) > 0
		for _, ifc := range n.Interfaces {
			z := v.zones[ifc.Zone]
			if z == nil || z.Reserve(ifc.Addr, sn.Name) != nil {
				ok = false
			}
		}
		if !ok {
			for _, ifc := range n.Interfaces {
				if z := v.zones[ifc.Zone]; z != nil {
					if o, held := z.Owner(ifc.Addr); held && o == sn.Name {
						z.Release(ifc.Addr)
					}
				}
			}
			dropped = append(dropped, sn)
			continue
		}
		adopted[sn.Name] = n
	}
	v.nodes = adopted
	for _, e := range st.Endpoints {
		if cur := v.endpoints[e.Name]; cur != nil {
			cur.target, cur.gen, cur.paused = e.Target, e.Gen, e.Paused
		}
	}
	v.faults = map[string]Fault{}
	for z, f := range st.Faults {
		if v.zones[z] != nil {
			v.faults[z] = f
		}
	}
	// What the record does not name, or names without its namespace, goes.
	for _, sn := range dropped {
		n := &Node{Namespace: Namespace{name: nodeNSName(v.prefix, sn.Name)}, Name: sn.Name, Interfaces: sn.Interfaces}
		_ = v.unplumb(ctx, n)
		v.log.Warn("dropped a recorded node whose namespace is gone", "node", sn.Name)
	}
	ents, _ := os.ReadDir(NetnsDir)
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, v.prefix+"-") || name == v.router.Name() {
			continue
		}
		if adopted[strings.TrimPrefix(name, v.prefix+"-")] != nil {
			continue
		}
		ns := Namespace{name: name}
		pids, _ := killIn(ctx, ns)
		_ = deleteNamespace(ns)
		v.log.Warn("swept a namespace the VPC's record does not name", "namespace", name, "killed", pids)
	}
	if len(dropped) > 0 {
		// Membership changed: the port bindings and groups follow.
		sg, err := v.sgScript()
		if err == nil {
			err = v.applyLocked(ctx, v.portScript(), sg)
		}
		if err != nil {
			return false, fmt.Errorf("update the adopted VPC's rules: %w", err)
		}
	} else if err := v.saveLocked(); err != nil {
		v.log.Warn("record the VPC's state", "err", err)
	}
	return true, nil
}

// checkTables checks that the router holds every table of the VPC.
func (v *VPC) checkTables(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, v.cfg.NFT, "list", "tables")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := v.router.Start(cmd); err != nil {
		return fmt.Errorf("list the router's tables: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("list the router's tables: %w: %s", err, strings.TrimSpace(out.String()))
	}
	have := map[string]bool{}
	for _, f := range strings.Fields(out.String()) {
		have[f] = true
	}
	for _, t := range []string{"router", "ports", "endpoints", "sg", "faults"} {
		if !have[tableName(v.prefix, t)] {
			return fmt.Errorf("the router has no table %s", tableName(v.prefix, t))
		}
	}
	return nil
}
