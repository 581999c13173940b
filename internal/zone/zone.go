// Package zone models a local availability zone, the one place that knows addresses: a zone's ranges (loopback, or its subnets in the region's VPC plan from 198.18.0.0/15), the addresses it hands out, and the lease that keeps two regions' ranges apart.
package zone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"sync"
)

// DefaultBase is the base prefix zones are carved from when Config.Base is empty:
// zone index i gets 127.(i+1).0/24 inside 127.0.0.0/8.
var DefaultBase = netip.MustParsePrefix("127.0.0.0/16")

// ErrExhausted is returned by Allocate when every host address in the zone is taken.
var ErrExhausted = errors.New("zone address range exhausted")

// Zone is one local availability zone. It is the one place that knows which
// addresses belong to a zone. A Zone is safe for concurrent use.
//
// A zone has one address range per tier (Subnet). Built from a loopback base
// (the default, and the fallback without root) every tier shares the zone's
// one /24; built from a VPC range (Config.VPC) each tier has its own /24 of
// the region's Plan.
type Zone struct {
	// Name is the short zone name, e.g. "a".
	Name string
	// AZ is the AWS-style availability zone name, e.g. "eu-west-1a".
	AZ string
	// CIDR is the zone's /24 for app instances (e.g. 127.0.1.0/24, or the
	// app subnet 198.18.10.0/24 in a VPC). .1 is reserved for the zone
	// itself (gateway-like), .2–.254 are handed out.
	CIDR netip.Prefix

	plan *Plan // nil on loopback

	mu    sync.Mutex
	pools map[Tier]*pool // by tier; on loopback every tier maps to one pool
}

// pool hands out the host addresses .2–.254 of one /24.
type pool struct {
	prefix netip.Prefix
	owner  map[netip.Addr]string // allocated address → owner
	next   netip.Addr            // next address to try, for round-robin reuse
}

// Config describes the zones of a region.
type Config struct {
	// Region is the AWS-style region name used to form AZ names. Default "local-1".
	Region string
	// Names are the zone suffixes. Default ["a", "b"].
	Names []string
	// Base is an IPv4 /16 whose third octet is replaced by index+1.
	// Default 127.0.0.0/16, giving 127.0.1.0/24, 127.0.2.0/24, ... Ignored
	// when VPC is set.
	Base netip.Prefix
	// VPC is the region's range in a VPC (a Lease's Prefix, a /19 of
	// Space). When set, zone i gets a /24 per tier laid out by NewPlan, and
	// its CIDR is its app subnet. Default: none (loopback ranges from Base).
	VPC netip.Prefix
}

// New builds zones from cfg. On loopback, zone i gets the /24 with third
// octet i+1 inside cfg.Base; in a VPC, the subnets of NewPlan(cfg.VPC,
// cfg.Names). Zone i's AZ name is Region+Name (e.g. "eu-west-1" + "a").
func New(cfg Config) ([]*Zone, error) {
	if cfg.Region == "" {
		cfg.Region = "local-1"
	}
	if len(cfg.Names) == 0 {
		cfg.Names = []string{"a", "b"}
	}
	if cfg.VPC.IsValid() {
		plan, err := NewPlan(cfg.VPC, cfg.Names)
		if err != nil {
			return nil, err
		}
		zones := make([]*Zone, 0, len(cfg.Names))
		for _, n := range cfg.Names {
			z := &Zone{Name: n, AZ: cfg.Region + n, plan: plan, pools: map[Tier]*pool{}}
			for _, t := range Tiers {
				s, err := plan.Subnet(n, t)
				if err != nil {
					return nil, err
				}
				z.pools[t] = newPool(s)
			}
			z.CIDR = z.pools[App].prefix
			zones = append(zones, z)
		}
		return zones, nil
	}
	if !cfg.Base.IsValid() {
		cfg.Base = DefaultBase
	}
	if !cfg.Base.Addr().Is4() || cfg.Base.Bits() > 16 {
		return nil, fmt.Errorf("zone.base: must be an IPv4 prefix of /16 or wider, got %s", cfg.Base)
	}
	if len(cfg.Names) > 254 {
		return nil, fmt.Errorf("zone.names: at most 254 zones, got %d", len(cfg.Names))
	}
	seen := map[string]bool{}
	zones := make([]*Zone, 0, len(cfg.Names))
	b := cfg.Base.Masked().Addr().As4()
	for i, n := range cfg.Names {
		if n == "" || seen[n] {
			return nil, fmt.Errorf("zone.names[%d]: must be unique and non-empty, got %q", i, n)
		}
		seen[n] = true
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{b[0], b[1], byte(i + 1), 0}), 24)
		z, err := NewZone(n, cfg.Region+n, p)
		if err != nil {
			return nil, err
		}
		zones = append(zones, z)
	}
	return zones, nil
}

// NewZone builds a single loopback-style zone over an IPv4 /24 that every
// tier shares.
func NewZone(name, az string, cidr netip.Prefix) (*Zone, error) {
	if !cidr.Addr().Is4() || cidr.Bits() != 24 {
		return nil, fmt.Errorf("zone %s: cidr must be an IPv4 /24, got %s", name, cidr)
	}
	p := newPool(cidr)
	z := &Zone{Name: name, AZ: az, CIDR: p.prefix, pools: map[Tier]*pool{}}
	for _, t := range Tiers {
		z.pools[t] = p
	}
	return z, nil
}

func newPool(p netip.Prefix) *pool {
	return &pool{prefix: p.Masked(), owner: map[netip.Addr]string{}}
}

// Plan returns the region's VPC plan, or nil for a loopback zone.
func (z *Zone) Plan() *Plan { return z.plan }

// Subnet returns the zone's range for tier t: its own /24 in a VPC, the
// zone's one /24 on loopback. An unknown tier gives the zero Prefix.
func (z *Zone) Subnet(t Tier) netip.Prefix {
	z.mu.Lock()
	defer z.mu.Unlock()
	if p := z.poolFor(t); p != nil {
		return p.prefix
	}
	return netip.Prefix{}
}

// poolFor returns t's pool; a Zone built as a struct literal gets one pool
// over CIDR for every tier. z.mu is held.
func (z *Zone) poolFor(t Tier) *pool {
	if z.pools == nil {
		p := newPool(z.CIDR)
		z.pools = map[Tier]*pool{}
		for _, t := range Tiers {
			z.pools[t] = p
		}
	}
	return z.pools[t]
}

// poolOf returns the pool whose range holds a. z.mu is held.
func (z *Zone) poolOf(a netip.Addr) *pool {
	z.poolFor(App)
	for _, p := range z.pools {
		if p.prefix.Contains(a) {
			return p
		}
	}
	return nil
}

// Gateway returns the .1 address of the zone's CIDR.
func (z *Zone) Gateway() netip.Addr { return SubnetGateway(z.CIDR) }

func (p *pool) first() netip.Addr { return p.prefix.Addr().Next().Next() } // .2

func (p *pool) inRange(a netip.Addr) bool {
	return p.prefix.Contains(a) && a.As4()[3] >= 2 && a.As4()[3] <= 254
}

// Allocate hands out a free address of the app tier (CIDR) in .2–.254 to
// owner (an instance ID, for diagnostics). Addresses are handed out
// round-robin so a just-released address is not immediately reused.
func (z *Zone) Allocate(owner string) (netip.Addr, error) { return z.AllocateIn(App, owner) }

// AllocateIn is Allocate in tier t's subnet.
func (z *Zone) AllocateIn(t Tier, owner string) (netip.Addr, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	p := z.poolFor(t)
	if p == nil {
		return netip.Addr{}, fmt.Errorf("allocate address in zone %s: unknown tier %q (tiers %v)", z.Name, t, Tiers)
	}
	a := p.next
	if !p.inRange(a) {
		a = p.first()
	}
	for range 253 {
		if _, taken := p.owner[a]; !taken {
			p.owner[a] = owner
			p.next = a.Next()
			return a, nil
		}
		a = a.Next()
		if !p.inRange(a) {
			a = p.first()
		}
	}
	return netip.Addr{}, fmt.Errorf("allocate %s address in zone %s: %w", t, z.Name, ErrExhausted)
}

// Reserve hands addr, of one of the zone's subnets, to owner: an address
// that a node a later daemon adopts already holds. Reserving an address
// another owner holds, or one outside the zone's subnets, is an error.
func (z *Zone) Reserve(addr netip.Addr, owner string) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	p := z.poolOf(addr)
	if p == nil || !p.inRange(addr) {
		return fmt.Errorf("reserve %s in zone %s: not an address of its subnets", addr, z.Name)
	}
	if o, taken := p.owner[addr]; taken && o != owner {
		return fmt.Errorf("reserve %s in zone %s for %s: %s holds it", addr, z.Name, owner, o)
	}
	p.owner[addr] = owner
	// Keep handing out round robin after the adopted addresses.
	if !p.next.IsValid() || p.next.Less(addr.Next()) {
		p.next = addr.Next()
	}
	return nil
}

// Release returns addr to the zone. Releasing an address that is not allocated is a no-op.
func (z *Zone) Release(addr netip.Addr) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if p := z.poolOf(addr); p != nil {
		delete(p.owner, addr)
	}
}

// Owner reports who holds addr.
func (z *Zone) Owner(addr netip.Addr) (string, bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	p := z.poolOf(addr)
	if p == nil {
		return "", false
	}
	o, ok := p.owner[addr]
	return o, ok
}

// Allocated returns how many addresses are currently handed out, over every tier.
func (z *Zone) Allocated() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.poolFor(App)
	seen := map[*pool]bool{}
	n := 0
	for _, p := range z.pools {
		if !seen[p] {
			seen[p] = true
			n += len(p.owner)
		}
	}
	return n
}

// Cmd returns a command prepared to run inside the zone. On loopback ranges
// zones share the host network, so this is exec.CommandContext. In a VPC a
// process belongs to a node, not to the whole zone: it is started in the
// node's namespace with vpc.Namespace.Start (package vpc, which imports
// this one). Callers may set SysProcAttr fields afterwards but must keep
// any already set.
func (z *Zone) Cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

// Listen opens a TCP listener on addr:port inside the zone (port 0 picks one).
func (z *Zone) Listen(ctx context.Context, addr netip.Addr, port int) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", net.JoinHostPort(addr.String(), strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen in zone %s on %s:%d: %w", z.Name, addr, port, err)
	}
	return l, nil
}

// String returns the zone's name and range.
func (z *Zone) String() string { return z.Name + "(" + z.CIDR.String() + ")" }

// FreePort returns a TCP port that is free on addr at the time of the call.
// Another process may take it before it is used; prefer passing port 0 where possible.
func FreePort(addr netip.Addr) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr.String(), "0"))
	if err != nil {
		return 0, fmt.Errorf("find free port on %s: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
