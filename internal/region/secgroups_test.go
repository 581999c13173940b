package region

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/spec"
	"github.com/haven-platform/haven/internal/tfvars"
)

const specWithGroups = `name: courses
security_groups:
  - name: app-sg
    ingress:
      - {port: 9100, cidr: 10.20.0.0/16, description: Metrics from the monitoring network}
    egress:
      - {protocol: udp, port: 8125, group: vpce-sg, description: StatsD to an interface endpoint}
  - name: db-sg
    ingress:
      - {port: 5432, group: alb-sg, description: A second client group}
      - {port: 6000, to_port: 6010, cidr: 0.0.0.0/0}
`

// TestSpecSecurityGroupsMatchTfvars is the parity of spec-defined groups:
// the rules the local region enforces that AWS has too (secgroup.Exported
// of configs' groups) are exactly the seed's chain, which
// deploy/terraform/security.tf holds (secgroup's TestDefaultMatchesTerraform),
// plus the rules `haven aws tfvars` exports (extra_security_group_rules,
// which the module's TestExtraSecurityGroupRules plans). Locally the
// spec's rules are also compiled into the nftables ruleset.
func TestSpecSecurityGroupsMatchTfvars(t *testing.T) {
	s, err := spec.Parse([]byte(specWithGroups), "haven.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := configs(s, Layout{StateDir: "/x", PGRoot: "/x/pg", AppCommand: []string{"/bin/true"}, VPC: netip.MustParsePrefix("198.18.0.0/19")})
	if err != nil {
		t.Fatal(err)
	}
	local := ruleSet(secgroup.Exported(c.Network.Groups))

	vars, _, err := tfvars.Generate(tfvars.FromSpec(s))
	if err != nil {
		t.Fatal(err)
	}
	aws := ruleSet(secgroup.Seed(uint16(s.App.Port)))
	for _, r := range vars.ExtraSecurityGroupRules {
		peer := ""
		if r.PeerGroup != nil {
			peer = *r.PeerGroup
		} else {
			peer = *r.CIDRIPv4
		}
		aws = append(aws, fmt.Sprintf("%s %s %s %d-%d %s", r.Group, r.Direction, r.Protocol, r.FromPort, r.ToPort, peer))
	}
	sort.Strings(aws)
	if strings.Join(local, "\n") != strings.Join(aws, "\n") {
		t.Errorf("local exported rules:\n  %s\nAWS (security.tf's seed + tfvars):\n  %s", strings.Join(local, "\n  "), strings.Join(aws, "\n  "))
	}
	if len(vars.ExtraSecurityGroupRules) != 4 {
		t.Errorf("tfvars export %d extra rules, want 4", len(vars.ExtraSecurityGroupRules))
	}

	// Locally: enforced, and the database's new client goes through the
	// endpoint like app-sg does.
	script, err := secgroup.Compile(secgroup.Input{Table: "t_sg", Groups: c.Network.Groups,
		Endpoints: map[string]netip.AddrPort{secgroup.DBEndpoint: c.Network.DBEndpoint}, Host: c.Network.Host})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tcp dport 9100", "udp dport 8125", "tcp dport 6000-6010", "ip saddr 10.20.0.0/16",
		"ip daddr @g_db_sg ip saddr @g_alb_sg tcp dport 5432 ct original ip daddr " + c.Network.DBEndpoint.Addr().String()} {
		if !strings.Contains(script, want) {
			t.Errorf("the compiled ruleset lacks %q", want)
		}
	}
}

// ruleSet renders groups' rules as "group direction protocol from-to peer", sorted.
func ruleSet(groups []secgroup.Group) []string {
	var out []string
	add := func(g, dir string, r secgroup.Rule) {
		proto := string(r.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		to := r.ToPort
		if to == 0 {
			to = r.FromPort
		}
		peer := r.Group
		if r.CIDR.IsValid() {
			peer = r.CIDR.String()
		}
		out = append(out, fmt.Sprintf("%s %s %s %d-%d %s", g, dir, proto, r.FromPort, to, peer))
	}
	for _, g := range groups {
		for _, r := range g.Ingress {
			add(g.Name, "ingress", r)
		}
		for _, r := range g.Egress {
			add(g.Name, "egress", r)
		}
	}
	sort.Strings(out)
	return out
}

// TestSpecSecurityGroupsRefused: a bad security_groups entry names its field.
func TestSpecSecurityGroupsRefused(t *testing.T) {
	for _, c := range []struct{ yaml, field string }{
		{"security_groups: [{name: web-sg}]", "security_groups[0].name"},
		{"security_groups: [{name: app-sg}, {name: app-sg}]", "security_groups[1].name"},
		{"security_groups: [{name: app-sg, ingress: [{port: 0, cidr: 10.0.0.0/8}]}]", "security_groups[0].ingress[0].port"},
		{"security_groups: [{name: app-sg, ingress: [{port: 80}]}]", "security_groups[0].ingress[0]"},
		{"security_groups: [{name: app-sg, ingress: [{port: 80, cidr: 10.0.0.1/8}]}]", "security_groups[0].ingress[0].cidr"},
		{"security_groups: [{name: app-sg, egress: [{port: 80, group: web-sg}]}]", "security_groups[0].egress[0].group"},
		{"security_groups: [{name: app-sg, egress: [{port: 80, to_port: 70, group: db-sg}]}]", "security_groups[0].egress[0].to_port"},
		{"security_groups: [{name: app-sg, egress: [{port: 80, protocol: icmp, group: db-sg}]}]", "security_groups[0].egress[0].protocol"},
	} {
		_, err := spec.Parse([]byte("name: courses\n"+c.yaml+"\n"), "haven.yaml")
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err = %v, want one naming %s", c.yaml, err, c.field)
		}
	}
}
