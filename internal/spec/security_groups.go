package spec

import (
	"fmt"
	"net/netip"
	"strings"
)

// SecurityGroupNames are the groups haven places its parts in: the load
// balancer in alb-sg, the instances in app-sg, the database nodes in db-sg,
// the interface VPC endpoints in vpce-sg. security_groups may add rules to
// these, and to no other group.
var SecurityGroupNames = []string{"alb-sg", "app-sg", "db-sg", "vpce-sg"}

// SecurityGroup adds rules to one of the seed's security groups. The
// seed's chain is always there (internet → alb-sg on 443 and 80 → app-sg
// on app.port → db-sg on 5432; app-sg → vpce-sg on 443): the Terraform
// module's security.tf holds it, and the local region enforces it with
// nftables. The rules added here are enforced locally too and exported by
// `haven aws tfvars` (extra_security_group_rules), so both worlds keep one
// definition.
type SecurityGroup struct {
	// Name is alb-sg, app-sg, db-sg or vpce-sg. Required.
	Name string `yaml:"name" json:"name"`
	// Ingress lists who else may connect to the group's members. Default none.
	Ingress []SecurityGroupRule `yaml:"ingress" json:"ingress,omitempty"`
	// Egress lists what else the group's members may connect to. Default none.
	Egress []SecurityGroupRule `yaml:"egress" json:"egress,omitempty"`
}

// SecurityGroupRule admits new connections of one protocol to a range of
// ports, from (ingress) or to (egress) one peer: another group or an IPv4
// range.
type SecurityGroupRule struct {
	// Description says what the rule is for (AWS: at most 255 characters,
	// no quotes). Default "".
	Description string `yaml:"description" json:"description,omitempty"`
	// Protocol is tcp or udp. Default tcp.
	Protocol string `yaml:"protocol" json:"protocol,omitempty"`
	// Port is the first destination port, 1–65535. Required.
	Port int `yaml:"port" json:"port"`
	// ToPort is the last destination port. Default: port.
	ToPort int `yaml:"to_port" json:"to_port,omitempty"`
	// Group is the peer group, one of alb-sg, app-sg, db-sg, vpce-sg.
	// Exactly one of group and cidr.
	Group string `yaml:"group" json:"group,omitempty"`
	// CIDR is the peer range, an IPv4 network such as 10.20.0.0/16
	// (0.0.0.0/0 is anywhere). Exactly one of group and cidr.
	CIDR string `yaml:"cidr" json:"cidr,omitempty"`
}

// validateSecurityGroups checks security_groups.
func (s *Spec) validateSecurityGroups(ps *problems) {
	seen := map[string]bool{}
	for i, g := range s.SecurityGroups {
		at := fmt.Sprintf("security_groups[%d]", i)
		if !contains(SecurityGroupNames, g.Name) {
			ps.add(at+".name", "must be one of %s (haven places the load balancer, the instances, the database nodes and the interface endpoints in them), got %q",
				strings.Join(SecurityGroupNames, ", "), g.Name)
		} else if seen[g.Name] {
			ps.add(at+".name", "group %q is listed twice; put all its rules in one entry", g.Name)
		}
		seen[g.Name] = true
		for j, r := range g.Ingress {
			r.validate(ps, fmt.Sprintf("%s.ingress[%d]", at, j))
		}
		for j, r := range g.Egress {
			r.validate(ps, fmt.Sprintf("%s.egress[%d]", at, j))
		}
	}
}

func (r SecurityGroupRule) validate(ps *problems, at string) {
	if r.Protocol != "" && r.Protocol != "tcp" && r.Protocol != "udp" {
		ps.add(at+".protocol", "must be tcp or udp, got %q", r.Protocol)
	}
	if r.Port < 1 || r.Port > 65535 {
		ps.add(at+".port", "must be from 1 to 65535, got %d", r.Port)
	}
	if r.ToPort != 0 && (r.ToPort < r.Port || r.ToPort > 65535) {
		ps.add(at+".to_port", "must be from port (%d) to 65535, got %d", r.Port, r.ToPort)
	}
	switch {
	case (r.Group == "") == (r.CIDR == ""):
		ps.add(at, "must name exactly one peer: group or cidr")
	case r.Group != "" && !contains(SecurityGroupNames, r.Group):
		ps.add(at+".group", "must be one of %s, got %q", strings.Join(SecurityGroupNames, ", "), r.Group)
	case r.CIDR != "":
		p, err := netip.ParsePrefix(r.CIDR)
		if err != nil || !p.Addr().Is4() || p != p.Masked() {
			ps.add(at+".cidr", "must be an IPv4 network with its prefix length, e.g. 10.20.0.0/16, got %q", r.CIDR)
		}
	}
	if len(r.Description) > 255 || strings.ContainsAny(r.Description, "\"\\") || strings.ContainsFunc(r.Description, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		ps.add(at+".description", "must be at most 255 characters without quotes, backslashes or control characters")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
