package zone

import (
	"fmt"
	"net/netip"
	"slices"
)

// Space is the range every VPC address comes from: 198.18.0.0/15, which
// RFC 2544 reserves for benchmarking, so it is never routed on the internet.
// haven uses it only inside the network namespaces it creates, and on the
// one host link into a region's router namespace.
var Space = netip.MustParsePrefix("198.18.0.0/15")

// RegionBits is the prefix length of one region's range: a /19, that is
// 32 /24 subnets, carved from Space in Slots slots.
const RegionBits = 19

// Slots is how many regions fit in Space at once: 2^(RegionBits-15) = 16.
const Slots = 1 << (RegionBits - 15)

// MaxVPCZones is the most zones a VPC plan holds: the tiers' subnets start
// 10 apart, as in deploy/terraform/network.tf.
const MaxVPCZones = 10

// Tier is a kind of subnet. Every zone has one subnet of each tier.
type Tier string

// The tiers, as in deploy/terraform/network.tf.
const (
	// Public holds the load balancer's address in each zone (aws_subnet.public).
	Public Tier = "public"
	// App holds app instances (aws_subnet.app).
	App Tier = "app"
	// DB holds database nodes (aws_subnet.db).
	DB Tier = "db"
)

// Tiers lists the tiers in plan order.
var Tiers = []Tier{Public, App, DB}

// tierOffset is the netnum of a tier's subnet in the first zone; zone i adds
// i. These are deploy/terraform/network.tf's offsets:
// cidrsubnet(var.vpc_cidr, 8, 0+i), (…, 10+i) and (…, 20+i).
var tierOffset = map[Tier]int{Public: 0, App: 10, DB: 20}

// infraNetnum is the /24 of a region that holds no zone: the router's host
// link and the endpoints' virtual addresses.
const infraNetnum = 31

// firstEndpointHost is the host number of the first endpoint address in the
// infrastructure subnet; .0/30 is the host link.
const firstEndpointHost = 16

// Valid reports whether t is one of Tiers.
func (t Tier) Valid() bool { _, ok := tierOffset[t]; return ok }

// SlotPrefix returns region slot slot's range: the slot-th /19 of Space
// (slot 0 is 198.18.0.0/19, slot 1 198.18.32.0/19, …, slot 15 198.19.224.0/19).
func SlotPrefix(slot int) (netip.Prefix, error) {
	if slot < 0 || slot >= Slots {
		return netip.Prefix{}, fmt.Errorf("region slot: must be 0-%d, got %d", Slots-1, slot)
	}
	return nthSubnet(Space, RegionBits, slot), nil
}

// nthSubnet is Terraform's cidrsubnet(p, bits-p.Bits(), n) for IPv4.
func nthSubnet(p netip.Prefix, bits, n int) netip.Prefix {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n) << (32 - bits)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
}

// SubnetGateway returns a subnet's first host address (.1 of a /24): the
// router's address on that subnet.
func SubnetGateway(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// Plan is the address plan of one region's VPC: for each zone a /24 per
// tier, laid out like the Terraform module's VPC (public i, app 10+i, db
// 20+i), and one infrastructure /24 (netnum 31) for the host link and the
// endpoints. For slot 0 (198.18.0.0/19) with zones a and b:
//
//	public a 198.18.0.0/24    app a 198.18.10.0/24    db a 198.18.20.0/24
//	public b 198.18.1.0/24    app b 198.18.11.0/24    db b 198.18.21.0/24
//	infrastructure 198.18.31.0/24: router .1/30, host .2/30, endpoints from .16
//
// so the third octet reads as in the Terraform module's 10.0.0.0/16. A Plan
// is immutable.
type Plan struct {
	region netip.Prefix
	zones  []string
}

// NewPlan returns the plan of region (an IPv4 prefix of /16 to /19: at
// least 32 /24s; a region's lease gives a /19 of Space) for zones, in order.
func NewPlan(region netip.Prefix, zones []string) (*Plan, error) {
	if !region.IsValid() || !region.Addr().Is4() || region.Bits() < 16 || region.Bits() > RegionBits {
		return nil, fmt.Errorf("vpc range: must be an IPv4 prefix of /16 to /19, got %s", region)
	}
	if len(zones) == 0 || len(zones) > MaxVPCZones {
		return nil, fmt.Errorf("zones: a VPC plan holds 1 to %d zones, got %d", MaxVPCZones, len(zones))
	}
	for i, z := range zones {
		if z == "" || slices.Index(zones, z) != i {
			return nil, fmt.Errorf("zones[%d]: must be unique and non-empty, got %q", i, z)
		}
	}
	return &Plan{region: region.Masked(), zones: slices.Clone(zones)}, nil
}

// Region returns the whole range of the plan.
func (p *Plan) Region() netip.Prefix { return p.region }

// Zones returns the zone names, in order.
func (p *Plan) Zones() []string { return slices.Clone(p.zones) }

// Subnet returns zone's subnet of tier t.
func (p *Plan) Subnet(zone string, t Tier) (netip.Prefix, error) {
	i := slices.Index(p.zones, zone)
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("subnet: no zone %q in the plan (zones %v)", zone, p.zones)
	}
	off, ok := tierOffset[t]
	if !ok {
		return netip.Prefix{}, fmt.Errorf("subnet: unknown tier %q (tiers %v)", t, Tiers)
	}
	return nthSubnet(p.region, 24, off+i), nil
}

// Subnet is one zone's subnet of one tier.
type Subnet struct {
	Zone   string
	Tier   Tier
	Prefix netip.Prefix
}

// Subnets returns every zone subnet, zone by zone, in tier order.
func (p *Plan) Subnets() []Subnet {
	var out []Subnet
	for _, z := range p.zones {
		for _, t := range Tiers {
			s, _ := p.Subnet(z, t)
			out = append(out, Subnet{Zone: z, Tier: t, Prefix: s})
		}
	}
	return out
}

// Infra returns the infrastructure /24: no zone's, it holds the host link
// and the endpoints' addresses.
func (p *Plan) Infra() netip.Prefix { return nthSubnet(p.region, 24, infraNetnum) }

// RouterLink returns the router namespace's address on the host link
// (.1/30 of the infrastructure subnet).
func (p *Plan) RouterLink() netip.Prefix {
	return netip.PrefixFrom(p.Infra().Addr().Next(), 30)
}

// HostLink returns the host's address on its link into the router
// namespace (.2/30 of the infrastructure subnet). Traffic from the host to
// the VPC comes from this address.
func (p *Plan) HostLink() netip.Prefix {
	return netip.PrefixFrom(p.Infra().Addr().Next().Next(), 30)
}

// MaxEndpoints is how many endpoint addresses the infrastructure subnet holds.
const MaxEndpoints = 255 - firstEndpointHost

// EndpointAddr returns the virtual address of endpoint i (0-based): .16+i of
// the infrastructure subnet. Nothing holds it; the router rewrites
// connections to it towards the endpoint's current target.
func (p *Plan) EndpointAddr(i int) (netip.Addr, error) {
	if i < 0 || i >= MaxEndpoints {
		return netip.Addr{}, fmt.Errorf("endpoint address: index must be 0-%d, got %d", MaxEndpoints-1, i)
	}
	b := p.Infra().Addr().As4()
	b[3] = byte(firstEndpointHost + i)
	return netip.AddrFrom4(b), nil
}
