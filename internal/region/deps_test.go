package region

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/haven-platform/haven/"

// shared are the building blocks any tier may use.
var shared = []string{"internal/api", "internal/atomicfile", "internal/clock", "internal/events", "internal/failpoint",
	"internal/peercred", "internal/proc", "internal/sandbox", "internal/spec", "internal/unixsock"}

// tierDeps lists every tier package and the other tiers whose public API it
// builds on. Anything else a tier imports from haven is a dependency on
// another tier's internals, and fails the test.
var tierDeps = map[string][]string{
	"internal/zone":           nil,
	"internal/secgroup":       nil,
	"internal/vpc":            {"internal/zone", "internal/secgroup"},
	"internal/cgroup":         nil,
	"internal/ca":             nil,
	"internal/fleet":          {"internal/zone", "internal/cgroup"},
	"internal/lb":             nil,
	"internal/pgha":           nil,
	"internal/pgha/endpoint":  nil,
	"internal/pgha/ledger":    nil,
	"internal/backup":         {"internal/pgha"}, // backups are taken from pgha.Nodes
	"internal/iam":            nil,
	"internal/imds":           {"internal/iam"},
	"internal/secrets":        {"internal/iam"},
	"internal/dbsecret":       {"internal/secrets"},
	"internal/idp":            nil,
	"internal/idp/idpsecrets": {"internal/idp", "internal/secrets"},
	"internal/events":         nil,
	"internal/objstore":       {"internal/iam"}, // the store verifies haven's credentials and evaluates its policies
	"internal/edge":           {"internal/iam"}, // iam.Match is the shared wildcard matcher
	"internal/scaling":        nil,
	"internal/release":        nil, // drives the fleet and reads the LB through its own interfaces
}

// TestTiersDoNotDependOnTheWiring is the check anyone can run (go test
// ./internal/region -run Tiers): `go list -deps` of every tier package
// holds no internal/region (nor the API routes region serves), and no tier
// imports another tier's internals.
func TestTiersDoNotDependOnTheWiring(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("go is required on PATH")
	}
	for tier, allowed := range tierDeps {
		deps := goList(t, "-deps", mod+tier)
		for _, d := range deps {
			if d == mod+"internal/region" || strings.HasPrefix(d, mod+"internal/api/routes") || strings.HasPrefix(d, mod+"cmd/") {
				t.Errorf("%s depends on %s: a tier never depends on the wiring", tier, strings.TrimPrefix(d, mod))
			}
		}
		for _, imp := range goList(t, "-f", "{{join .Imports \"\\n\"}}", mod+tier) {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			p := strings.TrimPrefix(imp, mod)
			if !slices.Contains(shared, p) && !slices.Contains(allowed, p) {
				t.Errorf("%s imports %s: not a shared block nor a tier it is declared to build on (tierDeps)", tier, p)
			}
		}
	}
	// Only cmd/ imports the region.
	for _, p := range goList(t, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", mod+"...") {
		f := strings.Fields(p)
		if len(f) > 0 && !strings.HasPrefix(f[0], mod+"cmd/") && f[0] != mod+"internal/region" && slices.Contains(f[1:], mod+"internal/region") {
			t.Errorf("%s imports internal/region: only cmd/ may", strings.TrimPrefix(f[0], mod))
		}
	}
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list %v: %v %s", args, err, stderr)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}
