package region

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/haven-platform/haven/internal/spec"
)

// TestDerivedStateFollowsTheSpec: everything the region derives from the
// spec (the database secret's host, port and dbname, the app's IAM role
// and its policy's resource, the security groups' rules) is computed from
// the spec each time (configs on every start and every apply; derive
// writes the secret and the policy), never carried over from the last
// spec. Each derived value moves with the field it comes from.
func TestDerivedStateFollowsTheSpec(t *testing.T) {
	layout := Layout{StateDir: "/srv/r/.haven", PGRoot: "/srv/r/.haven/pg", AppCommand: []string{"/bin/courses"}}
	base := spec.Default()
	mustConfigs := func(s spec.Spec, l Layout) Configs {
		t.Helper()
		c, err := configs(s, l)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c0 := mustConfigs(base, layout)

	moved := base
	moved.Database.Endpoint, moved.Database.Name = "127.0.0.1:10432", "lms"
	c1 := mustConfigs(moved, layout)
	if c1.DBSecret.Endpoint != "127.0.0.1:10432" || c1.DBSecret.Database != "lms" || c1.AppEnv["PGPORT"] != "10432" {
		t.Errorf("secret %s/%s, PGPORT %s after the endpoint moved; want 127.0.0.1:10432/lms, 10432",
			c1.DBSecret.Endpoint, c1.DBSecret.Database, c1.AppEnv["PGPORT"])
	}

	renamed := base
	renamed.Name = "lms"
	c2 := mustConfigs(renamed, layout)
	if c2.AppRole == c0.AppRole || c2.AppRole != "lms-app" || c2.DBSecret.Name != "lms/db" {
		t.Errorf("IMDS role %s, secret %s after a rename; want lms-app, lms/db", c2.AppRole, c2.DBSecret.Name)
	}
	if p := appPolicy("arn:aws:secretsmanager:eu-west-1:1:secret:lms/db-x"); !slices.Contains(p.Statement[0].Resource, "arn:aws:secretsmanager:eu-west-1:1:secret:lms/db-x") {
		t.Errorf("the app policy does not name the secret it is derived from: %+v", p)
	}

	// Security groups: a rule the spec adds is in the compiled groups, and
	// gone when the spec drops it.
	vpc := layout
	vpc.VPC = netip.MustParsePrefix("198.18.64.0/19")
	withRule := base
	withRule.SecurityGroups = []spec.SecurityGroup{{Name: "app-sg", Ingress: []spec.SecurityGroupRule{{Protocol: "tcp", Port: 9100, CIDR: "198.18.64.0/19", Description: "metrics"}}}}
	has := func(c Configs) bool {
		for _, g := range c.Network.Groups {
			for _, r := range g.Ingress {
				if r.FromPort == 9100 {
					return true
				}
			}
		}
		return false
	}
	if !has(mustConfigs(withRule, vpc)) || has(mustConfigs(base, vpc)) {
		t.Error("the security groups do not follow the spec's rules")
	}
}
