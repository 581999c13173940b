// Package secgroup models security groups as AWS does (named groups with ingress and egress rules whose peers are other groups or address ranges) and compiles them to one nftables ruleset.
//
// The same definitions are meant for both worlds: the local region enforces
// them with nftables in its router namespace (Compile), and `haven aws
// tfvars` can export every rule for which Rule.Exported is true to the
// Terraform module, whose security.tf holds the same chain today (a parity
// test checks it).
package secgroup

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Protocol is a rule's IP protocol.
type Protocol string

// The protocols a rule may name.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// The seed's group names.
const (
	ALB  = "alb-sg"
	App  = "app-sg"
	DB   = "db-sg"
	VPCE = "vpce-sg"
)

// DBEndpoint is the name of the database endpoint the default db-sg rules
// admit connections through.
const DBEndpoint = "db"

// PostgresPort is PostgreSQL's port, as on RDS.
const PostgresPort = 5432

// Group is a named security group. Membership (which addresses are in it)
// is not part of the definition: Compile takes it separately.
type Group struct {
	// Name identifies the group, e.g. "app-sg": 1 to 64 lower-case letters,
	// digits and '-', starting with a letter. Required.
	Name string
	// Description says what the group is for. Default "".
	Description string
	// Ingress lists what may connect to a member. Default none: nothing.
	Ingress []Rule
	// Egress lists what a member may connect to. Default none: nothing (as
	// in the Terraform module, which removes AWS's allow-all egress).
	Egress []Rule
}

// Rule admits new connections of one protocol to a range of ports, from
// (ingress) or to (egress) one peer: exactly one of Group, CIDR and Host.
type Rule struct {
	// Description says what the rule is for; it becomes the nftables comment
	// and the AWS rule's description. No '"', '\' or control characters.
	// Default "".
	Description string
	// Protocol is tcp or udp. Default tcp.
	Protocol Protocol
	// FromPort is the first destination port, 1-65535. Required.
	FromPort uint16
	// ToPort is the last destination port. Default FromPort.
	ToPort uint16
	// Group is the peer group's name (AWS's referenced_security_group_id).
	Group string
	// CIDR is the peer address range (AWS's cidr_ipv4); 0.0.0.0/0 is
	// anywhere.
	CIDR netip.Prefix
	// Host is the peer that is the machine itself: connections from the host
	// through its link into the VPC (ingress), or to the host's address on
	// that link (egress: the host is in no group, so the egress rule alone
	// admits it). Local only: AWS has no such peer.
	Host bool
	// Through, on an ingress rule, names an endpoint: only connections made
	// to that endpoint's address (and forwarded by it to the member) match,
	// not connections straight to the member. On AWS the endpoint is the
	// member's own address, so it exports as a plain rule. Default "": any
	// connection.
	Through string
	// LocalOnly keeps the rule out of the Terraform export, e.g. database
	// replication, which RDS does inside the service. Host rules are always
	// local only. Default false.
	LocalOnly bool
}

// Exported reports whether the rule belongs in the AWS security groups.
func (r Rule) Exported() bool { return !r.LocalOnly && !r.Host }

// Default returns the seed's chain, internet → alb-sg → app-sg → db-sg, with
// the app listening on appPort, as the local region enforces it:
// WithLocal(Seed(appPort)). Its exported rules are
// deploy/terraform/security.tf's (alb-sg, app-sg, db-sg and vpce-sg for
// the interface endpoints); its local-only rules are replication between
// database nodes and the host reaching the database through its endpoint.
func Default(appPort uint16) []Group { return WithLocal(Seed(appPort)) }

// Seed returns the seed's chain as AWS has it (every rule exported), the
// spec's default security_groups: alb-sg takes 443 and 80 from anywhere and
// reaches the app port on app-sg; app-sg takes the app port from alb-sg and
// reaches 5432 on db-sg and 443 on vpce-sg; db-sg takes 5432 from app-sg;
// vpce-sg takes 443 from app-sg.
func Seed(appPort uint16) []Group {
	anywhere := netip.MustParsePrefix("0.0.0.0/0")
	return []Group{
		{
			Name:        ALB,
			Description: "ALB: HTTPS and the HTTP redirect from the internet",
			Ingress: []Rule{
				{Description: "HTTPS from the internet", FromPort: 443, CIDR: anywhere},
				{Description: "HTTP from the internet", FromPort: 80, CIDR: anywhere},
			},
			Egress: []Rule{
				{Description: "To the app port on app-sg", FromPort: appPort, Group: App},
			},
		},
		{
			Name:        App,
			Description: "App instances: the app port from alb-sg only",
			Ingress: []Rule{
				{Description: "App port from alb-sg", FromPort: appPort, Group: ALB},
			},
			Egress: []Rule{
				{Description: "PostgreSQL on db-sg", FromPort: PostgresPort, Group: DB},
				{Description: "HTTPS to interface VPC endpoints", FromPort: 443, Group: VPCE},
			},
		},
		{
			Name:        DB,
			Description: "Database: PostgreSQL from app-sg only",
			Ingress: []Rule{
				{Description: "PostgreSQL from app-sg", FromPort: PostgresPort, Group: App},
			},
		},
		{
			Name:        VPCE,
			Description: "Interface VPC endpoints: HTTPS from app-sg only",
			Ingress: []Rule{
				{Description: "HTTPS from app-sg", FromPort: 443, Group: App},
			},
		},
	}
}

// WithLocal returns groups (AWS's view: every rule exported) as the local
// region enforces them. Locally the database is two nodes behind one
// endpoint, where RDS is one name that resolves to the primary, so:
//   - every ingress rule of db-sg from another peer goes Through the
//     database endpoint (on AWS the endpoint's address is the instance's
//     own, so the exported rule is the same): nothing reaches a node
//     directly;
//   - db-sg gets replication between its members (5432, both ways), which
//     RDS does inside the service;
//   - the host reaches the database through the endpoint (the operator,
//     the drills; AWS has no such peer).
//
// The added rules are LocalOnly (or Host) and never exported. groups is
// not changed.
func WithLocal(groups []Group) []Group {
	out := make([]Group, len(groups))
	for i, g := range groups {
		g.Ingress, g.Egress = slices.Clone(g.Ingress), slices.Clone(g.Egress)
		if g.Name == DB {
			for j, r := range g.Ingress {
				if r.Through == "" && r.Group != DB && !r.Host && r.FromPort <= PostgresPort && r.toPort() >= PostgresPort {
					g.Ingress[j].Through = DBEndpoint
				}
			}
			g.Ingress = append(g.Ingress,
				Rule{Description: "Replication between database nodes", FromPort: PostgresPort, Group: DB, LocalOnly: true},
				Rule{Description: "The host through the database endpoint", FromPort: PostgresPort, Host: true, Through: DBEndpoint})
			g.Egress = append(g.Egress,
				Rule{Description: "Replication to the other database node", FromPort: PostgresPort, Group: DB, LocalOnly: true})
		}
		out[i] = g
	}
	return out
}

// Exported returns the rules of groups that belong in the AWS security
// groups (Rule.Exported), Through dropped: what `haven aws tfvars`
// exports and deploy/terraform/security.tf holds.
func Exported(groups []Group) []Group {
	out := make([]Group, 0, len(groups))
	for _, g := range groups {
		e := Group{Name: g.Name, Description: g.Description}
		for _, r := range g.Ingress {
			if r.Exported() {
				r.Through = ""
				e.Ingress = append(e.Ingress, r)
			}
		}
		for _, r := range g.Egress {
			if r.Exported() {
				e.Egress = append(e.Egress, r)
			}
		}
		out = append(out, e)
	}
	return out
}

// Validate reports the first invalid group or rule, naming it by position
// and name, e.g. `groups[1] (app-sg).ingress[0].group: no group "alb"`.
// endpoints, when not nil, are the endpoint names a rule may go Through.
func Validate(groups []Group, endpoints []string) error {
	names := map[string]bool{}
	for i, g := range groups {
		at := fmt.Sprintf("groups[%d]", i)
		if !validName(g.Name) {
			return fmt.Errorf("%s.name: 1-64 lower-case letters, digits and '-', starting with a letter, got %q", at, g.Name)
		}
		if names[g.Name] {
			return fmt.Errorf("%s.name: duplicate group %q", at, g.Name)
		}
		names[g.Name] = true
	}
	for i, g := range groups {
		at := fmt.Sprintf("groups[%d] (%s)", i, g.Name)
		for j, r := range g.Ingress {
			if err := r.validate(names, endpoints, true); err != nil {
				return fmt.Errorf("%s.ingress[%d].%w", at, j, err)
			}
		}
		for j, r := range g.Egress {
			if err := r.validate(names, endpoints, false); err != nil {
				return fmt.Errorf("%s.egress[%d].%w", at, j, err)
			}
		}
	}
	return nil
}

func (r Rule) validate(groups map[string]bool, endpoints []string, ingress bool) error {
	if r.Protocol != "" && r.Protocol != TCP && r.Protocol != UDP {
		return fmt.Errorf("protocol: tcp or udp, got %q", r.Protocol)
	}
	if r.FromPort == 0 {
		return fmt.Errorf("from_port: 1-65535 required")
	}
	if r.ToPort != 0 && r.ToPort < r.FromPort {
		return fmt.Errorf("to_port: must be ≥ from_port (%d), got %d", r.FromPort, r.ToPort)
	}
	peers := 0
	if r.Group != "" {
		peers++
		if !groups[r.Group] {
			return fmt.Errorf("group: no group %q", r.Group)
		}
	}
	if r.CIDR.IsValid() {
		peers++
		if !r.CIDR.Addr().Is4() || r.CIDR != r.CIDR.Masked() {
			return fmt.Errorf("cidr: an IPv4 network address with its prefix length, got %s", r.CIDR)
		}
	}
	if r.Host {
		peers++
	}
	if peers != 1 {
		return fmt.Errorf("peer: exactly one of group, cidr and host, got %d", peers)
	}
	if r.Through != "" {
		if !ingress {
			return fmt.Errorf("through: only an ingress rule can name an endpoint")
		}
		if endpoints != nil && !slices.Contains(endpoints, r.Through) {
			return fmt.Errorf("through: no endpoint %q (endpoints %v)", r.Through, endpoints)
		}
	}
	if strings.ContainsAny(r.Description, "\"\\") || strings.ContainsFunc(r.Description, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return fmt.Errorf("description: no '\"', '\\' or control characters, got %q", r.Description)
	}
	return nil
}

func (r Rule) protocol() Protocol {
	if r.Protocol == "" {
		return TCP
	}
	return r.Protocol
}

func (r Rule) toPort() uint16 {
	if r.ToPort == 0 {
		return r.FromPort
	}
	return r.ToPort
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
