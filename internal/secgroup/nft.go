package secgroup

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Input is what Compile turns into a ruleset: the groups, who is in them,
// and the addresses rules refer to.
type Input struct {
	// Table is the nftables table (family inet) the ruleset replaces:
	// letters, digits and '_', starting with a letter, at most 64
	// characters. Required.
	Table string
	// Groups are the security groups. Validated with Validate.
	Groups []Group
	// Members are each group's member addresses (IPv4). A group without an
	// entry is empty; an entry for an unknown group is an error.
	Members map[string][]netip.Addr
	// Endpoints are the endpoints' virtual addresses and ports by name, for
	// Through rules. Default none.
	Endpoints map[string]netip.AddrPort
	// Host is the host's address on its link into the VPC. Required when a
	// rule's peer is the host.
	Host netip.Addr
}

// Compile returns the nft script that atomically replaces table inet
// in.Table with in.Groups enforced for in.Members. Its one base chain
// (forward hook, policy drop) sees every connection the router forwards:
// between subnets, and within a subnet too, because the VPC's bridge ports
// are isolated and forward nothing port to port.
//
// The semantics are AWS's, except where noted:
//   - Stateful: packets of established or related connections pass, so a
//     reply needs no rule, and removing a rule does not cut a connection it
//     admitted. Invalid packets and IPv6 are dropped.
//   - A new connection passes if the source's egress rules allow it (a
//     source in no group, such as the host, has no egress limit) and the
//     destination's ingress rules allow it. A destination in no group (the
//     host, the router) accepts no new connection. A member of several
//     groups has the union of their rules.
//   - Anything else is refused, not silently dropped as on AWS: a TCP
//     connection gets a reset, anything else ICMP administratively
//     prohibited. A blocked path fails at once and never looks like a
//     network partition, which drops.
//   - A new connection to an endpoint's address (a TCP endpoint that the
//     router forwards to a member, DNAT) is checked before it is forwarded
//     (prerouting, ahead of DNAT): its source must be the peer of an
//     ingress rule that goes Through that endpoint, or it is refused from
//     the endpoint's own address. Refused after forwarding, the reset
//     would come from the target's address, which the client never dialled,
//     and the client would hang. Once forwarded, the connection is checked
//     again like any other.
func Compile(in Input) (string, error) {
	if !validTable(in.Table) {
		return "", fmt.Errorf("compile security groups: table: letters, digits and '_', starting with a letter, at most 64 characters, got %q", in.Table)
	}
	epNames := []string{} // not nil: Through must name one of these
	for n := range in.Endpoints {
		epNames = append(epNames, n)
	}
	if err := Validate(in.Groups, epNames); err != nil {
		return "", fmt.Errorf("compile security groups: %w", err)
	}
	known := map[string]bool{}
	for _, g := range in.Groups {
		known[g.Name] = true
	}
	for g, addrs := range in.Members {
		if !known[g] {
			return "", fmt.Errorf("compile security groups: members: no group %q", g)
		}
		for _, a := range addrs {
			if !a.Is4() {
				return "", fmt.Errorf("compile security groups: members of %s: IPv4 addresses only, got %s", g, a)
			}
		}
	}
	for n, ap := range in.Endpoints {
		if !ap.Addr().Is4() || ap.Port() == 0 {
			return "", fmt.Errorf("compile security groups: endpoint %s: an IPv4 address and a non-zero port, got %s", n, ap)
		}
	}
	for _, g := range in.Groups {
		for _, r := range slices.Concat(g.Ingress, g.Egress) {
			if r.Host && !in.Host.Is4() {
				return "", errors.New("compile security groups: host: a rule names the host, so the host's IPv4 address is required")
			}
		}
	}

	var b strings.Builder
	t := in.Table
	fmt.Fprintf(&b, "# Security groups, compiled by haven (secgroup.Compile). Do not edit: it is replaced whole.\n")
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", t, t, t)
	all := map[netip.Addr]bool{}
	for _, g := range in.Groups {
		members := sortedAddrs(in.Members[g.Name])
		for _, a := range members {
			all[a] = true
		}
		writeSet(&b, setName(g.Name), "members of "+g.Name, members)
	}
	var grouped []netip.Addr
	for a := range all {
		grouped = append(grouped, a)
	}
	writeSet(&b, "grouped", "every member of any group", sortedAddrs(grouped))

	b.WriteString(`	chain forward {
		type filter hook forward priority filter; policy drop;
		meta nfproto ipv6 drop
		ct state established,related accept
		ct state invalid drop
		jump sg_egress
		jump sg_ingress
	}

	chain sg_egress {
		ip saddr != @grouped return
`)
	for _, g := range in.Groups {
		for _, r := range g.Egress {
			m := []string{"ip saddr @" + setName(g.Name)}
			if p := peer(r, "daddr", in.Host); p != "" {
				m = append(m, p)
			}
			m = append(m, ports(r))
			fmt.Fprintf(&b, "\t\t%s return comment %s\n", strings.Join(m, " "), comment(g.Name, "egress", r))
		}
	}
	b.WriteString("\t\tjump sg_deny\n\t}\n\n\tchain sg_ingress {\n")
	if hostEgress(in.Groups) {
		// The host is in no group: a connection to it was let through by
		// the source's egress rule naming the host, and that is all.
		fmt.Fprintf(&b, "\t\tip saddr @grouped ip daddr %s accept comment \"host: no security group, the source's egress rules decide\"\n", in.Host)
	}
	for _, g := range in.Groups {
		for _, r := range g.Ingress {
			m := []string{"ip daddr @" + setName(g.Name)}
			if p := peer(r, "saddr", in.Host); p != "" {
				m = append(m, p)
			}
			m = append(m, ports(r))
			if r.Through != "" {
				ep := in.Endpoints[r.Through]
				m = append(m, fmt.Sprintf("ct original ip daddr %s ct original proto-dst %d", ep.Addr(), ep.Port()))
			}
			fmt.Fprintf(&b, "\t\t%s accept comment %s\n", strings.Join(m, " "), comment(g.Name, "ingress", r))
		}
	}
	b.WriteString("\t\tjump sg_deny\n\t}\n")
	writeEndpointChecks(&b, in)
	b.WriteString(`
	chain sg_deny {
		meta l4proto tcp counter reject with tcp reset
		counter reject with icmpx type admin-prohibited
	}
}
`)
	return b.String(), nil
}

// hostEgress reports whether an egress rule of groups names the host.
func hostEgress(groups []Group) bool {
	for _, g := range groups {
		for _, r := range g.Egress {
			if r.Host {
				return true
			}
		}
	}
	return false
}

// writeEndpointChecks writes the pre-forwarding check of each endpoint:
// chain endpoints dispatches on the endpoint's address and port to chain
// epN (endpoints by name), which lets through the sources of the ingress
// rules that go Through the endpoint and refuses the rest.
func writeEndpointChecks(b *strings.Builder, in Input) {
	if len(in.Endpoints) == 0 {
		return
	}
	names := make([]string, 0, len(in.Endpoints))
	for n := range in.Endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	b.WriteString("\n\tchain endpoints {\n\t\ttype filter hook prerouting priority -150; policy accept;\n\t\tct state established,related accept\n")
	for i, n := range names {
		ep := in.Endpoints[n]
		fmt.Fprintf(b, "\t\tip daddr %s tcp dport %d jump ep%d comment %q\n", ep.Addr(), ep.Port(), i, "endpoint "+n)
	}
	b.WriteString("\t}\n")
	for i, n := range names {
		fmt.Fprintf(b, "\n\tchain ep%d {\n", i)
		for _, g := range in.Groups {
			for _, r := range g.Ingress {
				if r.Through != n {
					continue
				}
				m := "meta l4proto " + string(r.protocol())
				if p := peer(r, "saddr", in.Host); p != "" {
					m = p + " " + m
				}
				fmt.Fprintf(b, "\t\t%s return comment %s\n", m, comment(g.Name, "ingress", r))
			}
		}
		b.WriteString("\t\tjump sg_deny\n\t}\n")
	}
}

// setName is the nftables set of a group's members: "g_" and the name
// with '-' as '_' (group names hold no '_', so this is one to one).
func setName(group string) string { return "g_" + strings.ReplaceAll(group, "-", "_") }

func writeSet(b *strings.Builder, name, what string, addrs []netip.Addr) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype ipv4_addr\n\t\tcomment %q\n", name, what)
	if len(addrs) > 0 {
		s := make([]string, len(addrs))
		for i, a := range addrs {
			s[i] = a.String()
		}
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(s, ", "))
	}
	b.WriteString("\t}\n\n")
}

// peer is the match on the rule's peer address as dir ("saddr" or
// "daddr"); "" for anywhere.
func peer(r Rule, dir string, host netip.Addr) string {
	switch {
	case r.Group != "":
		return "ip " + dir + " @" + setName(r.Group)
	case r.Host:
		return "ip " + dir + " " + host.String()
	case r.CIDR.Bits() == 0:
		return ""
	default:
		return "ip " + dir + " " + r.CIDR.String()
	}
}

func ports(r Rule) string {
	if r.toPort() == r.FromPort {
		return fmt.Sprintf("%s dport %d", r.protocol(), r.FromPort)
	}
	return fmt.Sprintf("%s dport %d-%d", r.protocol(), r.FromPort, r.toPort())
}

// comment is the quoted rule comment, cut to nftables' 128 bytes.
func comment(group, dir string, r Rule) string {
	c := group + " " + dir
	if r.Description != "" {
		c += ": " + r.Description
	}
	if len(c) > 120 {
		c = strings.ToValidUTF8(c[:120], "")
	}
	return `"` + c + `"`
}

func sortedAddrs(in []netip.Addr) []netip.Addr {
	out := slices.Clone(in)
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return slices.Compact(out)
}

func validTable(s string) bool {
	if len(s) == 0 || len(s) > 64 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
