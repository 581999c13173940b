package secgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDefaultMatchesTerraform checks that Default's exported rules and
// deploy/terraform/security.tf's rules are the same set: group, direction,
// port and peer (a group or 0.0.0.0/0). The module's AWS-only rules (peers
// that are managed prefix lists: CloudFront in front of the ALB, the S3
// gateway endpoint; and the optional NAT gateway's egress) and the rules of
// AWS-only groups (the db-logins Lambda's) have no local counterpart and are
// left out, each one named here.
func TestDefaultMatchesTerraform(t *testing.T) {
	const appPort = 8080
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "terraform", "security.tf"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)

	// aws_security_group "alb" has tag Name "${var.name}-alb-sg": resource name → group name.
	groupOf := map[string]string{}
	for _, blk := range resources(src, "aws_security_group") {
		m := regexp.MustCompile(`Name = "\$\{var\.name\}-([a-z0-9-]+)"`).FindStringSubmatch(blk.body)
		if m == nil {
			t.Fatalf("aws_security_group.%s: no Name tag", blk.name)
		}
		groupOf[blk.name] = m[1]
	}
	// local.alb_listener_ports, which for_each rules expand.
	listener := map[string]string{}
	if m := regexp.MustCompile(`alb_listener_ports\s*=\s*\{([^}]*)\}`).FindStringSubmatch(src); m != nil {
		for _, kv := range regexp.MustCompile(`(\w+)\s*=\s*(\d+)`).FindAllStringSubmatch(m[1], -1) {
			listener[kv[1]] = kv[2]
		}
	}
	if len(listener) != 2 {
		t.Fatalf("local.alb_listener_ports: got %v, want https and http", listener)
	}

	awsOnly := map[string]string{
		"alb_cloudfront": "CloudFront's prefix list replaces the internet when the edge is CloudFront",
		"app_to_s3":      "the S3 gateway endpoint's prefix list",
		"app_https_nat":  "the optional NAT gateway",
	}
	// Groups of AWS-only parts, with every rule that names them.
	awsOnlyGroups := map[string]string{
		"db-logins-sg": "the db-logins Lambda that creates the app's roles on RDS; locally the daemon does that over PostgreSQL's unix socket",
	}
	seenGroup := map[string]bool{}
	seen := map[string]bool{}
	var tf []string
	for _, kind := range []string{"ingress", "egress"} {
		for _, blk := range resources(src, "aws_vpc_security_group_"+kind+"_rule") {
			if _, skip := awsOnly[blk.name]; skip {
				seen[blk.name] = true
				continue
			}
			if blk.name == "extra" {
				// haven.yaml's own rules (var.extra_security_group_rules):
				// region's TestSpecSecurityGroupsMatchTfvars and the
				// module's plan test check them.
				continue
			}
			attr := func(k string) string {
				m := regexp.MustCompile(`(?m)^\s*` + k + `\s*=\s*(.+)$`).FindStringSubmatch(blk.body)
				if m == nil {
					return ""
				}
				return strings.TrimSpace(m[1])
			}
			sg := groupOf[strings.TrimSuffix(strings.TrimPrefix(attr("security_group_id"), "aws_security_group."), ".id")]
			if sg == "" {
				t.Fatalf("%s: security_group_id %q names no group", blk.name, attr("security_group_id"))
			}
			var peer string
			switch {
			case attr("referenced_security_group_id") != "":
				peer = groupOf[strings.TrimSuffix(strings.TrimPrefix(attr("referenced_security_group_id"), "aws_security_group."), ".id")]
			case attr("cidr_ipv4") != "":
				peer = strings.Trim(attr("cidr_ipv4"), `"`)
			default:
				t.Fatalf("%s: a peer this test does not know; say whether it is AWS-only", blk.name)
			}
			if attr("from_port") != attr("to_port") || attr("ip_protocol") != `"tcp"` {
				t.Fatalf("%s: only single TCP ports are compared, got %s-%s %s", blk.name, attr("from_port"), attr("to_port"), attr("ip_protocol"))
			}
			var ports []string
			switch p := attr("from_port"); p {
			case "var.app_port":
				ports = []string{strconv.Itoa(appPort)}
			case "each.value":
				for _, v := range listener {
					ports = append(ports, v)
				}
			default:
				ports = []string{p}
			}
			if _, skip := awsOnlyGroups[sg]; skip {
				seenGroup[sg] = true
				continue
			}
			if _, skip := awsOnlyGroups[peer]; skip {
				seenGroup[peer] = true
				continue
			}
			for _, p := range ports {
				tf = append(tf, fmt.Sprintf("%s %s %s %s", sg, kind, p, peer))
			}
		}
	}

	for name := range awsOnlyGroups {
		if !seenGroup[name] {
			t.Errorf("AWS-only group %s is no longer in security.tf: update this test", name)
		}
	}
	for name := range awsOnly {
		if !seen[name] {
			t.Errorf("AWS-only rule %s is no longer in security.tf: update this test", name)
		}
	}

	var local []string
	for _, g := range Default(appPort) {
		for kind, rules := range map[string][]Rule{"ingress": g.Ingress, "egress": g.Egress} {
			for _, r := range rules {
				if !r.Exported() {
					continue
				}
				peer := r.Group
				if peer == "" {
					peer = r.CIDR.String()
				}
				local = append(local, fmt.Sprintf("%s %s %d %s", g.Name, kind, r.FromPort, peer))
			}
		}
	}
	slices.Sort(tf)
	slices.Sort(local)
	if len(tf) < 8 {
		t.Fatalf("parsed only %d rules from security.tf: %v", len(tf), tf)
	}
	if !slices.Equal(tf, local) {
		t.Errorf("security.tf and Default differ:\nterraform: %q\nlocal:     %q", tf, local)
	}
}

type block struct{ name, body string }

// resources returns the bodies of `resource "typ" "name" { ... }` blocks
// (brace-matched; the module puts no braces in strings).
func resources(src, typ string) []block {
	var out []block
	re := regexp.MustCompile(`resource "` + regexp.QuoteMeta(typ) + `" "(\w+)" \{`)
	for _, loc := range re.FindAllStringSubmatchIndex(src, -1) {
		depth, i := 1, loc[1]
		for ; i < len(src) && depth > 0; i++ {
			switch src[i] {
			case '{':
				depth++
			case '}':
				depth--
			}
		}
		out = append(out, block{name: src[loc[2]:loc[3]], body: src[loc[1]:i]})
	}
	return out
}
