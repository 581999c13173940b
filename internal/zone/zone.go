// Package zone models a local availability zone: a named address range that hands out instance addresses.
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
// addresses belong to a zone; later it also owns the zone's network namespace.
// A Zone is safe for concurrent use.
type Zone struct {
	// Name is the short zone name, e.g. "a".
	Name string
	// AZ is the AWS-style availability zone name, e.g. "eu-west-1a".
	AZ string
	// CIDR is the zone's /24 (e.g. 127.0.1.0/24). .1 is reserved for the zone
	// itself (gateway-like), .2–.254 are handed to instances.
	CIDR netip.Prefix

	mu    sync.Mutex
	owner map[netip.Addr]string // allocated address → owner
	next  netip.Addr            // next address to try, for round-robin reuse
}

// Config describes the zones of a region.
type Config struct {
	// Region is the AWS-style region name used to form AZ names. Default "local-1".
	Region string
	// Names are the zone suffixes. Default ["a", "b"].
	Names []string
	// Base is an IPv4 /16 whose third octet is replaced by index+1.
	// Default 127.0.0.0/16, giving 127.0.1.0/24, 127.0.2.0/24, ...
	Base netip.Prefix
}

// New builds zones from cfg. Zone i gets the /24 with third octet i+1 inside cfg.Base
// and AZ name Region+Name (e.g. "eu-west-1" + "a").
func New(cfg Config) ([]*Zone, error) {
	if cfg.Region == "" {
		cfg.Region = "local-1"
	}
	if len(cfg.Names) == 0 {
		cfg.Names = []string{"a", "b"}
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

// NewZone builds a single zone over an IPv4 /24.
func NewZone(name, az string, cidr netip.Prefix) (*Zone, error) {
	if !cidr.Addr().Is4() || cidr.Bits() != 24 {
		return nil, fmt.Errorf("zone %s: cidr must be an IPv4 /24, got %s", name, cidr)
	}
	cidr = cidr.Masked()
	return &Zone{Name: name, AZ: az, CIDR: cidr, owner: map[netip.Addr]string{}}, nil
}

// Gateway returns the zone's reserved .1 address (used later for the namespace side of a veth pair).
func (z *Zone) Gateway() netip.Addr { return z.CIDR.Addr().Next() }

func (z *Zone) first() netip.Addr { return z.CIDR.Addr().Next().Next() } // .2

func (z *Zone) inRange(a netip.Addr) bool {
	return z.CIDR.Contains(a) && a.As4()[3] >= 2 && a.As4()[3] <= 254
}

// Allocate hands out a free address in .2–.254 to owner (an instance ID, for
// diagnostics). Addresses are handed out round-robin so a just-released address is
// not immediately reused.
func (z *Zone) Allocate(owner string) (netip.Addr, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.owner == nil {
		z.owner = map[netip.Addr]string{}
	}
	a := z.next
	if !z.inRange(a) {
		a = z.first()
	}
	for range 253 {
		if _, taken := z.owner[a]; !taken {
			z.owner[a] = owner
			z.next = a.Next()
			return a, nil
		}
		a = a.Next()
		if !z.inRange(a) {
			a = z.first()
		}
	}
	return netip.Addr{}, fmt.Errorf("allocate address in zone %s: %w", z.Name, ErrExhausted)
}

// Release returns addr to the zone. Releasing an address that is not allocated is a no-op.
func (z *Zone) Release(addr netip.Addr) {
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.owner, addr)
}

// Owner reports who holds addr.
func (z *Zone) Owner(addr netip.Addr) (string, bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	o, ok := z.owner[addr]
	return o, ok
}

// Allocated returns how many addresses are currently handed out.
func (z *Zone) Allocated() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return len(z.owner)
}

// Cmd returns a command prepared to run inside the zone. Today zones share the
// host network (loopback ranges), so this is exec.CommandContext; when zones move
// into network namespaces this is where the process is placed in the namespace.
// Callers may set SysProcAttr fields afterwards but must keep any already set.
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
