package vpc

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/haven-platform/haven/internal/zone"
)

// Prefix returns the name prefix of the region identified by key (its
// state directory): "hv" and 8 hex digits of a hash of key, e.g.
// "hv0badf00d". Everything a region creates on the host carries it: its
// namespaces (PREFIX-rt, PREFIX-NODE), its host link (PREFIX-h), and any
// nftables table (PREFIX_...). So a sweep finds what a killed daemon left
// from the key alone, with no state of its own.
func Prefix(key string) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	return fmt.Sprintf("hv%08x", h.Sum32())
}

func routerName(prefix string) string         { return prefix + "-rt" }
func nodeNSName(prefix, node string) string   { return prefix + "-" + node }
func hostLinkName(prefix string) string       { return prefix + "-h" }
func tableName(prefix, what string) string    { return prefix + "_" + what }
func bridgeName(z string, t zone.Tier) string { return "br-" + z + "-" + tierTag(t) }

// portName is the router side of a node's veth: ZONE-TIER-HOST (e.g.
// "a-app-17" for 198.18.10.17). Every link of zone a starts with "a-",
// which is what a fault matches.
func portName(z string, t zone.Tier, a netip.Addr) string {
	return z + "-" + tierTag(t) + "-" + strconv.Itoa(int(a.As4()[3]))
}

// zonePorts is the nftables wildcard for every port of zone z.
func zonePorts(z string) string { return z + "-*" }

func tierTag(t zone.Tier) string {
	if t == zone.Public {
		return "pub"
	}
	return string(t)
}

// Zone names become interface names (at most 15 bytes: "br-ZONE-pub",
// "ZONE-pub-254"), so a VPC zone name is 1 to 4 lower-case letters or digits.
var zoneNameRE = regexp.MustCompile(`^[a-z0-9]{1,4}$`)

// Node names become namespace names; "rt" is the router's.
var nodeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// routerRules: the router runs no service, so nothing may open a connection
// to it, from the host or from a node: refused, like any blocked path.
func routerRules(table string) string {
	return replaceTable("inet", table, `	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname "lo" accept
		meta l4proto tcp counter reject with tcp reset
		counter reject with icmpx type admin-prohibited
	}
`)
}

// binding is a node's port on a bridge and the one address it may send from.
type binding struct {
	port string
	addr netip.Addr
}

// portRules binds each bridge port to its node's address, and forbids
// port-to-port forwarding outright:
//   - a frame from a port must carry that port's address (IP source, ARP
//     sender), so a node cannot send as another one (say, as the load
//     balancer) and pass its security groups;
//   - the ports are isolated (the bridge forwards nothing between them)
//     and this table's forward chain drops anything the bridge would
//     still forward, so even two nodes of one subnet talk only through
//     the router, where the security groups are enforced statefully. The
//     router answers ARP for a subnet's other nodes (proxy_arp_pvlan).
func portRules(table string, bs []binding) string {
	sort.Slice(bs, func(i, j int) bool { return bs[i].port < bs[j].port })
	var b strings.Builder
	b.WriteString("\tset bound {\n\t\ttype ifname . ipv4_addr\n\t\tcomment \"each bridge port and the one address its node sends from\"\n")
	if len(bs) > 0 {
		el := make([]string, len(bs))
		for i, x := range bs {
			el[i] = fmt.Sprintf("%q . %s", x.port, x.addr)
		}
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(el, ", "))
	}
	b.WriteString(`	}

	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		ether type ip iifname . ip saddr != @bound counter drop comment "a node sends only from its own address"
		ether type arp iifname . arp saddr ip != @bound counter drop comment "a node answers ARP only for its own address"
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		counter comment "ports are isolated: nothing goes port to port, everything crosses the router"
	}
`)
	return replaceTable("bridge", table, b.String())
}

// endpointState is an endpoint's virtual address, current target and
// generation.
type endpointState struct {
	name   string
	vip    netip.AddrPort
	target netip.AddrPort // invalid: none
	// gen is the conntrack mark of the connections the current rules
	// admit; a connection of another generation is cut (see endpointRules).
	gen uint32
	// paused: new connections are held (their SYNs dropped, so the client
	// retransmits) until the next SetEndpoint or SwitchEndpoint.
	paused bool
}

// endpointRules forwards each endpoint's virtual address to its target
// (DNAT in the router's prerouting hook), so the security groups see the
// connection with its original source and, in conntrack, its original
// destination (what Rule.Through matches). A connection to an endpoint
// without a target, or to a port an endpoint does not serve, is refused
// with a reset.
//
// Each new connection is marked with the endpoint's generation (conntrack
// mark). A packet from the client of a connection through the endpoint
// whose mark is not the current generation is answered with a TCP reset:
// SwitchEndpoint and PauseEndpoint start a new generation, so every
// connection made before them fails on its next packet instead of reaching
// the old target again (the database endpoint's "close every client
// connection when the epoch changes"). While paused, new connections' SYNs
// are dropped: the client's kernel retransmits them (after 1 s, 3 s, ...),
// and they reach the next target.
func endpointRules(table string, eps []endpointState) string {
	sort.Slice(eps, func(i, j int) bool { return eps[i].name < eps[j].name })
	var b strings.Builder
	b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
	for _, e := range eps {
		if e.target.IsValid() && !e.paused {
			fmt.Fprintf(&b, "\t\tip daddr %s tcp dport %d ct mark set 0x%08x dnat to %s comment %q\n", e.vip.Addr(), e.vip.Port(), e.gen, e.target, "endpoint "+e.name)
		}
	}
	b.WriteString("\t}\n\n\tchain refuse {\n\t\ttype filter hook prerouting priority filter; policy accept;\n")
	for _, e := range eps {
		// Runs after dstnat: a forwarded connection no longer has the
		// virtual address as its destination, but conntrack remembers it.
		if e.paused {
			fmt.Fprintf(&b, "\t\tip daddr %s tcp dport %d ct state new drop comment %q\n", e.vip.Addr(), e.vip.Port(), "endpoint "+e.name+": paused, the client retransmits")
		}
		fmt.Fprintf(&b, "\t\tmeta l4proto tcp ct original ip daddr %s ct original proto-dst %d ct direction original ct mark != 0x%08x counter reject with tcp reset comment %q\n",
			e.vip.Addr(), e.vip.Port(), e.gen, "endpoint "+e.name+": cut, made before the last switch")
		fmt.Fprintf(&b, "\t\tip daddr %s meta l4proto tcp reject with tcp reset comment %q\n", e.vip.Addr(), "endpoint "+e.name+": no target or not its port")
		fmt.Fprintf(&b, "\t\tip daddr %s reject comment %q\n", e.vip.Addr(), "endpoint "+e.name)
	}
	b.WriteString("\t}\n")
	return replaceTable("ip", table, b.String())
}

// FaultKind is a kind of zone network fault.
type FaultKind string

// The network faults a zone can have.
const (
	// Partition drops every IP packet on the zone's links: connections to,
	// from and within the zone hang (time out) rather than being refused.
	Partition FaultKind = "partition"
	// Degrade drops each IP packet on the zone's links with a probability.
	// Only loss: this kernel has no netem, so no latency can be added.
	Degrade FaultKind = "degrade"
)

// Fault is a zone's network fault.
type Fault struct {
	// Kind is partition or degrade.
	Kind FaultKind
	// LossPercent is, for degrade, the chance (1-99 %) that a frame is
	// dropped each time it crosses one of the zone's links.
	LossPercent int
}

// String returns "partition" or "degrade 10%".
func (f Fault) String() string {
	if f.Kind == Degrade {
		return fmt.Sprintf("degrade %d%%", f.LossPercent)
	}
	return string(f.Kind)
}

// faultRules drops IPv4 frames on faulted zones' links, in the bridge
// family: frames coming in from a port (prerouting), and frames going out
// to one (output: routed by the router; forward: from another port). ARP
// still passes, so every neighbour entry stays valid and a connection
// hangs (its packets vanish) instead of failing with "no route to host"
// once a neighbour entry expires; and the router, which still resolves the
// zone's addresses, sends no "host unreachable" back. It runs before every
// other table (priority -300).
func faultRules(table string, faults map[string]Fault) string {
	zones := make([]string, 0, len(faults))
	for z := range faults {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	var b strings.Builder
	for _, c := range []struct{ chain, hook, dir string }{
		{"prerouting", "prerouting", "iifname"},
		{"output", "output", "oifname"},
		{"forward", "forward", "oifname"},
	} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority -300; policy accept;\n", c.chain, c.hook)
		for _, z := range zones {
			f := faults[z]
			match := fmt.Sprintf("ether type ip %s %q", c.dir, zonePorts(z))
			if f.Kind == Degrade {
				match += fmt.Sprintf(" numgen random mod 100 < %d", f.LossPercent)
			}
			fmt.Fprintf(&b, "\t\t%s counter drop comment %q\n", match, "zone "+z+": "+f.String())
		}
		b.WriteString("\t}\n")
		if c.chain != "forward" {
			b.WriteString("\n")
		}
	}
	return replaceTable("bridge", table, b.String())
}

// replaceTable is the nft script that replaces family table with body,
// atomically (nft -f applies a script as one transaction).
func replaceTable(family, table, body string) string {
	return fmt.Sprintf("table %s %s\ndelete table %s %s\ntable %s %s {\n%s}\n", family, table, family, table, family, table, body)
}
