// Package vpc builds a region's VPC on one machine out of Linux network namespaces: a router namespace with a bridge per zone and subnet, a namespace per node with one address per subnet it joins, security groups enforced by nftables in the router, and zone network faults.
//
// The layout, for a region with prefix P (see Prefix):
//
//	host ── P-h ══ host ┐                      router namespace P-rt
//	                    ├─ br-a-pub ─ a-pub-2 ══ eth0  P-lb      (load balancer, zone a leg)
//	                    ├─ br-a-app ─ a-app-2 ══ eth0  P-i-1     (app instance)
//	                    ├─ br-a-db  ─ a-db-2  ══ eth0  P-db_a    (database node)
//	                    └─ br-b-…   (the same for zone b)
//
// Addresses come from the zones' Plan (package zone). The router forwards
// between subnets (net.ipv4.ip_forward is set in its namespace only); no
// namespace has a route off the machine, and the host reaches the VPC only
// through its link P-h, with no group of its own. docs/vpc.md describes the
// design and what each boundary stops.
package vpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/zone"
)

// MetadataAddr is the instance metadata address, as on EC2. A node with
// NodeSpec.Metadata has it on its loopback, so its metadata endpoint
// listens inside the node's own namespace.
var MetadataAddr = netip.MustParseAddr("169.254.169.254")

// DefaultTimeout bounds each nft run.
const DefaultTimeout = 10 * time.Second

// EndpointConfig declares an endpoint: a virtual address in the
// infrastructure subnet that the router forwards to a target (a node's
// address and port), like the RDS endpoint in front of the primary.
type EndpointConfig struct {
	// Name identifies the endpoint; security group rules name it in
	// Through. Required.
	Name string
	// Port is the TCP port it serves (and forwards to the target's port).
	// Required.
	Port uint16
}

// Config configures a VPC.
type Config struct {
	// Key identifies the region: its absolute state directory. The names
	// (Prefix(Key)) and the address lease derive from it. Required.
	Key string
	// Zones are the region's zones, built by zone.New with Config.VPC set,
	// so they share one Plan; zone names are 1-4 lower-case letters or
	// digits. Required.
	Zones []*zone.Zone
	// Groups are the security groups (secgroup.Default for the seed's
	// chain). Required.
	Groups []secgroup.Group
	// Endpoints are the VPC's endpoints; endpoint i gets the plan's
	// EndpointAddr(i). Default none.
	Endpoints []EndpointConfig
	// LeaseDir is where the region's address lease lives; Stop releases it.
	// Default zone.DefaultLeaseDir.
	LeaseDir string
	// NFT is the nft binary. Default "nft" from PATH.
	NFT string
	// Timeout bounds each nft run. Default DefaultTimeout.
	Timeout time.Duration
	// StateFile is where the VPC records its nodes, endpoints and zone
	// faults after every change, so that a later daemon of the region
	// adopts the running VPC (Start) instead of sweeping and rebuilding it,
	// which would kill everything running in it. Default "": no record;
	// Start always rebuilds.
	StateFile string
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// Attach places a node in one zone's subnet of one tier.
type Attach struct {
	// Zone is the zone's name. Required.
	Zone string
	// Tier is the subnet's tier in the zone. Required.
	Tier zone.Tier
}

// NodeSpec describes a node: an instance, a database node, the load
// balancer, or anything else that lives in its own namespace.
type NodeSpec struct {
	// Name identifies the node in the region (an instance ID, "db_a",
	// "lb"): 1-63 of a-z, 0-9, '_', '.', '-', starting with a letter or
	// digit, not "rt". Its namespace is PREFIX-Name. Required.
	Name string
	// Attach lists the subnets the node joins, one interface and one
	// address each (eth0, eth1, ...), at most one per zone and tier.
	// Required. A node in several zones (the load balancer) reaches each
	// zone's subnets through its interface in that zone, so a partition
	// of one zone leaves its other legs alone.
	Attach []Attach
	// Groups are the security groups the node's addresses are in. Default
	// none: the node can neither be reached nor open connections.
	Groups []string
	// Metadata puts MetadataAddr on the node's loopback, for its metadata
	// endpoint (Namespace.Listen). Default false.
	Metadata bool
}

// Interface is one of a node's interfaces.
type Interface struct {
	// Zone and Tier are the subnet.
	Zone string
	Tier zone.Tier
	// Addr is the node's address in the subnet.
	Addr netip.Addr
	// Name is the interface inside the node: eth0, eth1, ...
	Name string
	// Port is the veth's other end, on the subnet's bridge in the router.
	Port string
}

// Node is a node of the VPC. It is immutable once AddNode returns it.
type Node struct {
	// Namespace is the node's network namespace: start its processes with
	// Start, open its listeners with Listen.
	Namespace
	// Name is NodeSpec.Name.
	Name string
	// Interfaces are the node's interfaces, in NodeSpec.Attach order.
	Interfaces []Interface
	// Groups are the node's security groups.
	Groups []string
	// Metadata is true when MetadataAddr is on the node's loopback.
	Metadata bool
}

// Addr returns the node's first address.
func (n *Node) Addr() netip.Addr { return n.Interfaces[0].Addr }

// VPC is one region's VPC. Its methods are safe for concurrent use; changes
// are applied one at a time.
type VPC struct {
	cfg    Config
	log    *slog.Logger
	plan   *zone.Plan
	prefix string
	zones  map[string]*zone.Zone
	router Namespace

	mu        sync.Mutex
	started   bool
	adopted   bool
	nodes     map[string]*Node
	endpoints map[string]*endpointState
	faults    map[string]Fault
}

var _ interface {
	Start(context.Context) error
	Stop(context.Context) error
} = (*VPC)(nil)

// New checks cfg and returns a VPC that touches nothing until Start.
func New(cfg Config) (*VPC, error) {
	if cfg.Key == "" {
		return nil, errors.New("vpc.key: required (the region's state directory)")
	}
	if len(cfg.Zones) == 0 {
		return nil, errors.New("vpc.zones: required")
	}
	plan := cfg.Zones[0].Plan()
	if plan == nil {
		return nil, fmt.Errorf("vpc.zones: zone %s has loopback ranges; build the zones with zone.Config.VPC", cfg.Zones[0].Name)
	}
	zones := map[string]*zone.Zone{}
	for i, z := range cfg.Zones {
		if z.Plan() != plan {
			return nil, fmt.Errorf("vpc.zones[%d]: zone %s is not of the same plan as zone %s", i, z.Name, cfg.Zones[0].Name)
		}
		if !zoneNameRE.MatchString(z.Name) {
			return nil, fmt.Errorf("vpc.zones[%d]: a zone name in a VPC is 1-4 lower-case letters or digits (it names interfaces), got %q", i, z.Name)
		}
		zones[z.Name] = z
	}
	if len(cfg.Groups) == 0 {
		return nil, errors.New("vpc.groups: required (secgroup.Default(appPort) is the seed's chain)")
	}
	var epNames []string
	eps := map[string]*endpointState{}
	for i, e := range cfg.Endpoints {
		if !nodeNameRE.MatchString(e.Name) || eps[e.Name] != nil {
			return nil, fmt.Errorf("vpc.endpoints[%d].name: unique, 1-63 of a-z, 0-9, '_', '.', '-', got %q", i, e.Name)
		}
		if e.Port == 0 {
			return nil, fmt.Errorf("vpc.endpoints[%d].port: 1-65535 required", i)
		}
		a, err := plan.EndpointAddr(i)
		if err != nil {
			return nil, fmt.Errorf("vpc.endpoints[%d]: %w", i, err)
		}
		eps[e.Name] = &endpointState{name: e.Name, vip: netip.AddrPortFrom(a, e.Port), gen: 1}
		epNames = append(epNames, e.Name)
	}
	if err := secgroup.Validate(cfg.Groups, append([]string{}, epNames...)); err != nil {
		return nil, fmt.Errorf("vpc.groups: %w", err)
	}
	if cfg.LeaseDir == "" {
		cfg.LeaseDir = zone.DefaultLeaseDir
	}
	if cfg.NFT == "" {
		cfg.NFT = "nft"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	prefix := Prefix(cfg.Key)
	return &VPC{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "vpc", "prefix", prefix),
		plan:      plan,
		prefix:    prefix,
		zones:     zones,
		router:    Namespace{name: routerName(prefix)},
		nodes:     map[string]*Node{},
		endpoints: eps,
		faults:    map[string]Fault{},
	}, nil
}

// Prefix returns the region's name prefix.
func (v *VPC) Prefix() string { return v.prefix }

// Plan returns the address plan.
func (v *VPC) Plan() *zone.Plan { return v.plan }

// Router returns the router namespace.
func (v *VPC) Router() Namespace { return v.router }

// HostAddr returns the host's address on its link into the VPC: connections
// from the host come from it.
func (v *VPC) HostAddr() netip.Addr { return v.plan.HostLink().Addr() }

// DialContext connects as the region's control plane: from inside the
// router namespace, from the router's own address on the host link, which
// is in no zone and no security group (the router's own connections are
// not forwarded, so no group applies to them). A zone fault cuts it as it
// cuts everything else on the zone's links: the database controller's
// probes, made this way, see a partitioned primary as dead. It fits
// http.Transport.DialContext; use literal addresses.
func (v *VPC) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := v.router.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: v.plan.RouterLink().Addr().AsSlice()}}
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from the router: %w", address, err)
	}
	return c, nil
}

// NodeNamespace returns the namespace node has, or would have, in the
// region of key (its state directory), for tools outside the daemon that
// run as root: `ip netns exec` does the same by name. Exists says whether
// it is there.
func NodeNamespace(key, node string) Namespace {
	return Namespace{name: nodeNSName(Prefix(key), node)}
}

// Start builds the VPC: it first removes anything a previous daemon of the
// same region left (see Sweep), then creates the router namespace, the
// bridges, the host link and route, and the rules. On error, what was built
// is removed.
func (v *VPC) Start(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.started {
		return errors.New("start vpc: already started")
	}
	if v.cfg.StateFile != "" {
		ok, err := v.adoptLocked(ctx)
		if ok {
			v.started, v.adopted = true, true
			v.log.Info("vpc adopted", "range", v.plan.Region(), "router", v.router.Name(), "nodes", len(v.nodes))
			return nil
		}
		if err != nil {
			v.log.Warn("the VPC an earlier daemon left cannot be adopted; rebuilding it", "err", err)
		}
	}
	if _, err := Sweep(ctx, SweepConfig{Key: v.cfg.Key, NFT: v.cfg.NFT, Logger: v.cfg.Logger, KeepLease: true}); err != nil {
		return fmt.Errorf("start vpc: remove leftovers: %w", err)
	}
	if err := v.checkHostRoutes(); err != nil {
		return err
	}
	if err := v.build(ctx); err != nil {
		if _, serr := Sweep(context.WithoutCancel(ctx), SweepConfig{Key: v.cfg.Key, NFT: v.cfg.NFT, Logger: v.cfg.Logger, KeepLease: true}); serr != nil {
			err = errors.Join(err, fmt.Errorf("and removing it again: %w", serr))
		}
		return fmt.Errorf("start vpc %s: %w", v.plan.Region(), err)
	}
	v.started = true
	v.log.Info("vpc up", "range", v.plan.Region(), "router", v.router.Name(), "host_link", hostLinkName(v.prefix), "host_addr", v.HostAddr())
	return nil
}

// Adopted reports whether Start adopted the VPC an earlier daemon left
// running, rather than building it.
func (v *VPC) Adopted() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.adopted
}

// checkHostRoutes refuses a range the host already routes or holds: another
// program (or another region) uses it.
func (v *VPC) checkHostRoutes() error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("start vpc: list host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		p, ok := prefixOf(r.Dst)
		if ok && p.Bits() > 0 && p.Overlaps(v.plan.Region()) {
			link, _ := netlink.LinkByIndex(r.LinkIndex)
			dev := "?"
			if link != nil {
				dev = link.Attrs().Name
			}
			return fmt.Errorf("start vpc: the host already routes %s (dev %s), which overlaps this region's %s: another program or region uses it; remove that route or stop that region", p, dev, v.plan.Region())
		}
	}
	return nil
}

func (v *VPC) build(ctx context.Context) error {
	r, err := createNamespace(v.router.Name())
	if err != nil {
		return err
	}
	// Namespace-local settings, set before any interface exists so that
	// every interface inherits them from "default".
	for _, s := range []struct {
		key, val string
		optional bool
	}{
		{"net.ipv6.conf.all.disable_ipv6", "1", true},
		{"net.ipv6.conf.default.disable_ipv6", "1", true},
		{"net.ipv4.conf.all.send_redirects", "0", false},
		{"net.ipv4.conf.default.send_redirects", "0", false},
		{"net.ipv4.conf.all.rp_filter", "1", false},
		{"net.ipv4.conf.default.rp_filter", "1", false},
		{"net.ipv4.ip_forward", "1", false},
		// Where br_netfilter is loaded (built in on some kernels), frames
		// a bridge passes up would cross the IP hooks as bridged traffic,
		// and a reset the router sends for a DNATed connection would
		// leave by the port, untranslated. Routed traffic only, as on
		// kernels without it: per namespace, the host's stays as it is.
		{"net.bridge.bridge-nf-call-iptables", "0", true},
		{"net.bridge.bridge-nf-call-ip6tables", "0", true},
		{"net.bridge.bridge-nf-call-arptables", "0", true},
	} {
		if err := r.sysctl(s.key, s.val, s.optional); err != nil {
			return err
		}
	}
	rh, err := r.handle()
	if err != nil {
		return err
	}
	defer rh.Close()
	if err := linkUp(rh, "lo"); err != nil {
		return err
	}
	for _, s := range v.plan.Subnets() {
		name := bridgeName(s.Zone, s.Tier)
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := rh.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge %s: %w", name, err)
		}
		gw := netip.PrefixFrom(zone.SubnetGateway(s.Prefix), s.Prefix.Bits())
		// A bridge whose address was never set takes the lowest of its
		// ports' and changes as nodes join: the router's MAC would move
		// under the subnet's nodes, and their established connections
		// hang until their neighbour entries expire. Set (locally
		// administered, from the gateway address), it stays.
		g := gw.Addr().As4()
		if err := rh.LinkSetHardwareAddr(br, net.HardwareAddr{0x02, 0x00, g[0], g[1], g[2], g[3]}); err != nil {
			return fmt.Errorf("set the address of bridge %s: %w", name, err)
		}
		if err := rh.AddrAdd(br, &netlink.Addr{IPNet: ipNet(gw)}); err != nil {
			return fmt.Errorf("address bridge %s: %w", name, err)
		}
		// Answer ARP for the subnet's other nodes: ports are isolated, so
		// their traffic goes through the router.
		if err := r.sysctl("net.ipv4.conf."+name+".proxy_arp_pvlan", "1", false); err != nil {
			return err
		}
		if err := rh.LinkSetUp(br); err != nil {
			return fmt.Errorf("bring up bridge %s: %w", name, err)
		}
	}
	// The host link, created from inside the router with its peer in the
	// host's namespace (the process's own).
	host, err := hostNamespace()
	if err != nil {
		return err
	}
	defer host.Close()
	hl := hostLinkName(v.prefix)
	if err := rh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host"}, PeerName: hl, PeerNamespace: netlink.NsFd(int(host))}); err != nil {
		return fmt.Errorf("add host link %s: %w", hl, err)
	}
	rl, err := rh.LinkByName("host")
	if err != nil {
		return fmt.Errorf("find host link in router: %w", err)
	}
	if err := rh.AddrAdd(rl, &netlink.Addr{IPNet: ipNet(v.plan.RouterLink())}); err != nil {
		return fmt.Errorf("address host link in router: %w", err)
	}
	if err := rh.LinkSetUp(rl); err != nil {
		return fmt.Errorf("bring up host link in router: %w", err)
	}
	hh, err := netlink.NewHandleAt(host)
	if err != nil {
		return fmt.Errorf("netlink on host: %w", err)
	}
	defer hh.Close()
	hlink, err := hh.LinkByName(hl)
	if err != nil {
		return fmt.Errorf("find host link %s: %w", hl, err)
	}
	if err := hh.AddrAdd(hlink, &netlink.Addr{IPNet: ipNet(v.plan.HostLink())}); err != nil {
		return fmt.Errorf("address host link %s: %w", hl, err)
	}
	if err := hh.LinkSetUp(hlink); err != nil {
		return fmt.Errorf("bring up host link %s: %w", hl, err)
	}
	gw := v.plan.RouterLink().Addr()
	if err := hh.RouteAdd(&netlink.Route{LinkIndex: hlink.Attrs().Index, Dst: ipNet(v.plan.Region()), Gw: gw.AsSlice(), Src: v.HostAddr().AsSlice()}); err != nil {
		return fmt.Errorf("route %s via %s on the host: %w", v.plan.Region(), gw, err)
	}
	sg, err := v.sgScript()
	if err != nil {
		return err
	}
	return v.applyLocked(ctx, v.routerScript(), v.portScript(), v.endpointScript(), sg, v.faultScript())
}

// AddNode creates a node: its namespace, an address in each subnet it
// joins (from the zones), one veth per subnet to the subnet's bridge,
// routes to the rest of the VPC through the router, and its security
// group membership. On error nothing of it is left.
func (v *VPC) AddNode(ctx context.Context, spec NodeSpec) (*Node, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.started {
		return nil, errors.New("add node: vpc not started")
	}
	if err := v.checkSpec(spec); err != nil {
		return nil, fmt.Errorf("add node %s: %w", spec.Name, err)
	}
	n := &Node{
		Namespace: Namespace{name: nodeNSName(v.prefix, spec.Name)},
		Name:      spec.Name,
		Groups:    slices.Clone(spec.Groups),
		Metadata:  spec.Metadata,
	}
	for i, a := range spec.Attach {
		addr, err := v.zones[a.Zone].AllocateIn(a.Tier, spec.Name)
		if err != nil {
			v.releaseAddrs(n)
			return nil, fmt.Errorf("add node %s: %w", spec.Name, err)
		}
		n.Interfaces = append(n.Interfaces, Interface{Zone: a.Zone, Tier: a.Tier, Addr: addr, Name: fmt.Sprintf("eth%d", i), Port: portName(a.Zone, a.Tier, addr)})
	}
	if err := v.plumb(n); err != nil {
		v.unplumb(context.WithoutCancel(ctx), n)
		v.releaseAddrs(n)
		return nil, fmt.Errorf("add node %s: %w", spec.Name, err)
	}
	v.nodes[n.Name] = n
	sg, err := v.sgScript()
	if err == nil {
		err = v.applyLocked(ctx, v.portScript(), sg)
	}
	if err != nil {
		delete(v.nodes, n.Name)
		v.unplumb(context.WithoutCancel(ctx), n)
		v.releaseAddrs(n)
		return nil, fmt.Errorf("add node %s: %w", spec.Name, err)
	}
	v.log.Info("node added", "node", n.Name, "namespace", n.Namespace.Name(), "addrs", n.addrs(), "groups", n.Groups)
	return n, nil
}

func (v *VPC) checkSpec(spec NodeSpec) error {
	if !nodeNameRE.MatchString(spec.Name) || spec.Name == "rt" {
		return fmt.Errorf("name: 1-63 of a-z, 0-9, '_', '.', '-', starting with a letter or digit, not \"rt\", got %q", spec.Name)
	}
	if v.nodes[spec.Name] != nil {
		return fmt.Errorf("name: node %q exists", spec.Name)
	}
	if len(spec.Attach) == 0 {
		return errors.New("attach: at least one subnet required")
	}
	seen := map[Attach]bool{}
	for i, a := range spec.Attach {
		if v.zones[a.Zone] == nil {
			return fmt.Errorf("attach[%d].zone: no zone %q", i, a.Zone)
		}
		if !a.Tier.Valid() {
			return fmt.Errorf("attach[%d].tier: one of %v, got %q", i, zone.Tiers, a.Tier)
		}
		if seen[a] {
			return fmt.Errorf("attach[%d]: the node is in %s %s already", i, a.Zone, a.Tier)
		}
		seen[a] = true
	}
	for i, g := range spec.Groups {
		if !slices.ContainsFunc(v.cfg.Groups, func(x secgroup.Group) bool { return x.Name == g }) {
			return fmt.Errorf("groups[%d]: no security group %q", i, g)
		}
	}
	return nil
}

// plumb creates n's namespace and links.
func (v *VPC) plumb(n *Node) error {
	ns, err := createNamespace(n.Namespace.Name())
	if err != nil {
		return err
	}
	for _, s := range []struct{ key, val string }{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
	} {
		if err := ns.sysctl(s.key, s.val, true); err != nil {
			return err
		}
	}
	nh, err := ns.handle()
	if err != nil {
		return err
	}
	defer nh.Close()
	rh, err := v.router.handle()
	if err != nil {
		return err
	}
	defer rh.Close()
	if err := linkUp(nh, "lo"); err != nil {
		return err
	}
	if n.Metadata {
		lo, err := nh.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		if err := nh.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(MetadataAddr, 32))}); err != nil {
			return fmt.Errorf("add metadata address: %w", err)
		}
	}
	nsh, err := netns.GetFromPath(ns.Path())
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns.Name(), err)
	}
	defer nsh.Close()
	for _, ifc := range n.Interfaces {
		br, err := rh.LinkByName(bridgeName(ifc.Zone, ifc.Tier))
		if err != nil {
			return fmt.Errorf("find bridge %s: %w", bridgeName(ifc.Zone, ifc.Tier), err)
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifc.Port, MasterIndex: br.Attrs().Index}, PeerName: ifc.Name, PeerNamespace: netlink.NsFd(int(nsh))}
		if err := rh.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", ifc.Port, err)
		}
		port, err := rh.LinkByName(ifc.Port)
		if err != nil {
			return fmt.Errorf("find port %s: %w", ifc.Port, err)
		}
		if err := rh.LinkSetIsolated(port, true); err != nil {
			return fmt.Errorf("isolate port %s: %w", ifc.Port, err)
		}
		if err := rh.LinkSetUp(port); err != nil {
			return fmt.Errorf("bring up port %s: %w", ifc.Port, err)
		}
		subnet := v.zones[ifc.Zone].Subnet(ifc.Tier)
		link, err := nh.LinkByName(ifc.Name)
		if err != nil {
			return fmt.Errorf("find %s: %w", ifc.Name, err)
		}
		if err := nh.AddrAdd(link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(ifc.Addr, subnet.Bits()))}); err != nil {
			return fmt.Errorf("address %s: %w", ifc.Name, err)
		}
		if err := nh.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring up %s: %w", ifc.Name, err)
		}
	}
	return v.route(nh, n)
}

// route gives n a route to the VPC's range through its first interface's
// router address and, when n has interfaces in several zones, a route to
// each zone's other subnets through its interface in that zone. No default
// route: nothing leaves the VPC.
func (v *VPC) route(nh *netlink.Handle, n *Node) error {
	add := func(dst netip.Prefix, ifc Interface) error {
		link, err := nh.LinkByName(ifc.Name)
		if err != nil {
			return fmt.Errorf("find %s: %w", ifc.Name, err)
		}
		gw := zone.SubnetGateway(v.zones[ifc.Zone].Subnet(ifc.Tier))
		if err := nh.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(dst), Gw: gw.AsSlice(), Src: ifc.Addr.AsSlice()}); err != nil {
			return fmt.Errorf("route %s via %s: %w", dst, gw, err)
		}
		return nil
	}
	if err := add(v.plan.Region(), n.Interfaces[0]); err != nil {
		return err
	}
	if len(n.Interfaces) == 1 {
		return nil
	}
	own := map[netip.Prefix]bool{}
	for _, ifc := range n.Interfaces {
		own[v.zones[ifc.Zone].Subnet(ifc.Tier)] = true
	}
	done := map[string]bool{}
	for _, ifc := range n.Interfaces {
		if done[ifc.Zone] {
			continue
		}
		done[ifc.Zone] = true
		for _, t := range zone.Tiers {
			s := v.zones[ifc.Zone].Subnet(t)
			if own[s] {
				continue // connected
			}
			if err := add(s, ifc); err != nil {
				return err
			}
		}
	}
	return nil
}

// unplumb removes n's processes, links and namespace.
func (v *VPC) unplumb(ctx context.Context, n *Node) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	if _, err := os.Stat(n.Path()); err == nil {
		if _, err := killIn(ctx, n.Namespace); err != nil {
			errs = append(errs, err)
		}
	}
	// Deleting the router's end of each veth deletes both ends, even if
	// something still holds the node's namespace.
	if rh, err := v.router.handle(); err == nil {
		for _, ifc := range n.Interfaces {
			if l, err := rh.LinkByName(ifc.Port); err == nil {
				if err := rh.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete port %s: %w", ifc.Port, err))
				}
			}
		}
		rh.Close()
	}
	if err := deleteNamespace(n.Namespace); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (v *VPC) releaseAddrs(n *Node) {
	for _, ifc := range n.Interfaces {
		v.zones[ifc.Zone].Release(ifc.Addr)
	}
}

// RemoveNode removes a node: SIGKILLs any process still in its namespace
// (the caller stops them first; this only makes sure the namespace and its
// links go), deletes its links and namespace, returns its addresses to the
// zones and drops it from its security groups.
func (v *VPC) RemoveNode(ctx context.Context, name string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.nodes[name]
	if n == nil {
		return fmt.Errorf("remove node %s: no such node", name)
	}
	delete(v.nodes, name)
	sg, err := v.sgScript()
	if err == nil {
		err = v.applyLocked(ctx, v.portScript(), sg)
	}
	if uerr := v.unplumb(ctx, n); uerr != nil {
		err = errors.Join(err, uerr)
	}
	v.releaseAddrs(n)
	if err != nil {
		return fmt.Errorf("remove node %s: %w", name, err)
	}
	v.log.Info("node removed", "node", name)
	return nil
}

// Node returns the named node.
func (v *VPC) Node(name string) (*Node, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n, ok := v.nodes[name]
	return n, ok
}

// Nodes returns every node, by name.
func (v *VPC) Nodes() []*Node {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]*Node, 0, len(v.nodes))
	for _, n := range v.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Endpoint returns the named endpoint's virtual address and port.
func (v *VPC) Endpoint(name string) (netip.AddrPort, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.endpoints[name]
	if e == nil {
		return netip.AddrPort{}, false
	}
	return e.vip, true
}

// EndpointTarget returns the named endpoint's current target (invalid:
// none) and whether it is paused.
func (v *VPC) EndpointTarget(name string) (target netip.AddrPort, paused, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.endpoints[name]
	if e == nil {
		return netip.AddrPort{}, false, false
	}
	return e.target, e.paused, true
}

// SetEndpoint points the named endpoint at target (a zero AddrPort: no
// target, so new connections are refused) and resumes it if paused. New
// connections go to the new target; connections already made keep theirs
// (conntrack remembers each connection's translation). SwitchEndpoint cuts
// them instead.
func (v *VPC) SetEndpoint(ctx context.Context, name string, target netip.AddrPort) error {
	return v.changeEndpoint(ctx, name, "set", func(e *endpointState) { e.target, e.paused = target, false }, target)
}

// SwitchEndpoint points the named endpoint at target, as SetEndpoint does,
// and cuts every connection made through it before: the next packet a
// client sends on one is answered with a TCP reset, so no client keeps
// talking to the old target (a demoted database primary). Connections
// made after it go to target.
func (v *VPC) SwitchEndpoint(ctx context.Context, name string, target netip.AddrPort) error {
	return v.changeEndpoint(ctx, name, "switch", func(e *endpointState) { e.target, e.paused, e.gen = target, false, nextGen(e.gen) }, target)
}

// PauseEndpoint cuts every connection made through the named endpoint (as
// SwitchEndpoint does) and holds new ones until the next SetEndpoint or
// SwitchEndpoint: their SYNs are dropped, so the client's kernel retries
// them (after 1 s, then 3 s, ...) and they reach the next target.
func (v *VPC) PauseEndpoint(ctx context.Context, name string) error {
	v.mu.Lock()
	e := v.endpoints[name]
	var target netip.AddrPort
	if e != nil {
		target = e.target
	}
	v.mu.Unlock()
	return v.changeEndpoint(ctx, name, "pause", func(e *endpointState) { e.paused, e.gen = true, nextGen(e.gen) }, target)
}

func (v *VPC) changeEndpoint(ctx context.Context, name, verb string, change func(*endpointState), target netip.AddrPort) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.endpoints[name]
	if e == nil {
		return fmt.Errorf("%s endpoint %s: no such endpoint", verb, name)
	}
	if target.IsValid() && (!v.plan.Region().Contains(target.Addr()) || target.Port() == 0) {
		return fmt.Errorf("%s endpoint %s: target must be an address in %s and a non-zero port, got %s", verb, name, v.plan.Region(), target)
	}
	old := *e
	change(e)
	if *e == old {
		return nil // already so: the rules in the kernel say it
	}
	if err := v.applyLocked(ctx, v.endpointScript()); err != nil {
		*e = old
		return fmt.Errorf("%s endpoint %s: %w", verb, name, err)
	}
	v.log.Info("endpoint "+verb, "endpoint", name, "vip", e.vip, "target", e.target, "generation", e.gen, "paused", e.paused)
	return nil
}

// nextGen is the generation after g (never 0: a connection that no rule
// marked has mark 0).
func nextGen(g uint32) uint32 {
	if g++; g == 0 {
		g = 1
	}
	return g
}

// Partition makes every link of zone z drop every IP packet (ARP still passes, see faultRules), until Restore.
func (v *VPC) Partition(ctx context.Context, z string) error {
	return v.setFault(ctx, z, &Fault{Kind: Partition})
}

// Degrade makes every link of zone z drop each IP packet with probability
// lossPercent (1-99), until Restore. There is no latency: this kernel has
// no netem.
func (v *VPC) Degrade(ctx context.Context, z string, lossPercent int) error {
	if lossPercent < 1 || lossPercent > 99 {
		return fmt.Errorf("degrade zone %s: loss must be 1-99 %% (100 is a partition), got %d", z, lossPercent)
	}
	return v.setFault(ctx, z, &Fault{Kind: Degrade, LossPercent: lossPercent})
}

// Restore removes zone z's fault. Connections the fault stalled resume (TCP
// retransmits), unless their ends gave up meanwhile.
func (v *VPC) Restore(ctx context.Context, z string) error { return v.setFault(ctx, z, nil) }

// Faults returns the zones' current faults.
func (v *VPC) Faults() map[string]Fault {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]Fault, len(v.faults))
	for z, f := range v.faults {
		out[z] = f
	}
	return out
}

func (v *VPC) setFault(ctx context.Context, z string, f *Fault) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.zones[z] == nil {
		return fmt.Errorf("zone fault: no zone %q", z)
	}
	if !v.started {
		return errors.New("zone fault: vpc not started")
	}
	old, had := v.faults[z]
	if f == nil {
		delete(v.faults, z)
	} else {
		v.faults[z] = *f
	}
	if err := v.applyLocked(ctx, v.faultScript()); err != nil {
		if had {
			v.faults[z] = old
		} else {
			delete(v.faults, z)
		}
		return fmt.Errorf("zone %s fault: %w", z, err)
	}
	if f == nil {
		v.log.Info("zone restored", "zone", z)
	} else {
		v.log.Warn("zone fault", "zone", z, "fault", f.String())
	}
	return nil
}

// Stop removes the whole VPC (see Sweep: any process still in one of its
// namespaces is SIGKILLed) and releases the region's address lease.
func (v *VPC) Stop(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, err := Sweep(ctx, SweepConfig{Key: v.cfg.Key, LeaseDir: v.cfg.LeaseDir, NFT: v.cfg.NFT, Logger: v.cfg.Logger, StateFile: v.cfg.StateFile})
	for _, n := range v.nodes {
		v.releaseAddrs(n)
	}
	v.nodes = map[string]*Node{}
	v.faults = map[string]Fault{}
	v.started = false
	if err != nil {
		return fmt.Errorf("stop vpc: %w", err)
	}
	v.log.Info("vpc removed")
	return nil
}

// The scripts, from the current state; v.mu is held.

func (v *VPC) routerScript() string { return routerRules(tableName(v.prefix, "router")) }

func (v *VPC) portScript() string {
	var bs []binding
	for _, n := range v.nodes {
		for _, ifc := range n.Interfaces {
			bs = append(bs, binding{port: ifc.Port, addr: ifc.Addr})
		}
	}
	return portRules(tableName(v.prefix, "ports"), bs)
}

func (v *VPC) endpointScript() string {
	var eps []endpointState
	for _, e := range v.endpoints {
		eps = append(eps, *e)
	}
	return endpointRules(tableName(v.prefix, "endpoints"), eps)
}

func (v *VPC) faultScript() string { return faultRules(tableName(v.prefix, "faults"), v.faults) }

// sgScript compiles the groups for the current members.
func (v *VPC) sgScript() (string, error) {
	members := map[string][]netip.Addr{}
	for _, n := range v.nodes {
		for _, g := range n.Groups {
			members[g] = append(members[g], n.addrs()...)
		}
	}
	eps := map[string]netip.AddrPort{}
	for name, e := range v.endpoints {
		eps[name] = e.vip
	}
	return secgroup.Compile(secgroup.Input{
		Table:     tableName(v.prefix, "sg"),
		Groups:    v.cfg.Groups,
		Members:   members,
		Endpoints: eps,
		Host:      v.HostAddr(),
	})
}

// applyLocked runs the scripts as one nft transaction inside the router.
func (v *VPC) applyLocked(ctx context.Context, scripts ...string) error {
	if err := runNFT(ctx, v.router, v.cfg.NFT, v.cfg.Timeout, strings.Join(scripts, "\n")); err != nil {
		return err
	}
	if err := v.saveLocked(); err != nil {
		v.log.Warn("record the VPC's state", "err", err)
	}
	return nil
}

// runNFT runs `nft -f -` with script inside ns: one atomic transaction.
func runNFT(ctx context.Context, ns Namespace, bin string, timeout time.Duration, script string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := ns.Start(cmd); err != nil {
		return fmt.Errorf("run nft: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("run nft in %s: %w: %s", ns.Name(), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (n *Node) addrs() []netip.Addr {
	out := make([]netip.Addr, len(n.Interfaces))
	for i, ifc := range n.Interfaces {
		out[i] = ifc.Addr
	}
	return out
}

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up %s: %w", name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// SetGroups replaces the security groups' rules and applies them in one
// nft transaction: the ruleset is rebuilt from the new groups and the
// current members, and established connections stay (conntrack keeps
// them). Every group a node is in must still exist. On an error the old
// groups stay in force.
func (v *VPC) SetGroups(ctx context.Context, groups []secgroup.Group) error {
	var eps []string
	v.mu.Lock()
	defer v.mu.Unlock()
	for name := range v.endpoints {
		eps = append(eps, name)
	}
	if err := secgroup.Validate(groups, eps); err != nil {
		return fmt.Errorf("set security groups: %w", err)
	}
	var lacking []string // every node whose group would go, in name order
	for _, name := range slices.Sorted(maps.Keys(v.nodes)) {
		for _, g := range v.nodes[name].Groups {
			if !slices.ContainsFunc(groups, func(x secgroup.Group) bool { return x.Name == g }) {
				lacking = append(lacking, fmt.Sprintf("node %s is in group %s", name, g))
			}
		}
	}
	if len(lacking) > 0 {
		return fmt.Errorf("set security groups: %s, which the new groups lack; keep those groups", strings.Join(lacking, ", "))
	}
	old := v.cfg.Groups
	v.cfg.Groups = groups
	sg, err := v.sgScript()
	if err == nil {
		err = v.applyLocked(ctx, sg)
	}
	if err != nil {
		v.cfg.Groups = old
		return fmt.Errorf("set security groups: %w", err)
	}
	return nil
}
