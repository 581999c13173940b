package vpc

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/zone"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, got)
	}
}

// TestRouterTables: the router's own tables, as one script, golden.
func TestRouterTables(t *testing.T) {
	a := netip.MustParseAddr
	script := strings.Join([]string{
		routerRules("hv0badf00d_router"),
		portRules("hv0badf00d_ports", []binding{
			{port: "b-app-2", addr: a("198.18.11.2")},
			{port: "a-app-2", addr: a("198.18.10.2")},
			{port: "a-pub-2", addr: a("198.18.0.2")},
		}),
		endpointRules("hv0badf00d_endpoints", []endpointState{
			{name: "db", vip: netip.MustParseAddrPort("198.18.31.16:5432"), target: netip.MustParseAddrPort("198.18.20.2:5432"), gen: 3},
			{name: "cache", vip: netip.MustParseAddrPort("198.18.31.17:6379"), gen: 1},
			{name: "queue", vip: netip.MustParseAddrPort("198.18.31.18:5672"), target: netip.MustParseAddrPort("198.18.21.2:5672"), gen: 9, paused: true},
		}),
		faultRules("hv0badf00d_faults", map[string]Fault{"b": {Kind: Degrade, LossPercent: 20}, "a": {Kind: Partition}}),
	}, "\n")
	golden(t, "router.nft", script)
}

// TestEmptyTables: no nodes, no endpoints, no faults still make valid tables.
func TestEmptyTables(t *testing.T) {
	golden(t, "empty.nft", strings.Join([]string{
		portRules("t_ports", nil),
		endpointRules("t_endpoints", nil),
		faultRules("t_faults", nil),
	}, "\n"))
}

func TestNames(t *testing.T) {
	if got := Prefix("/var/lib/haven"); got != Prefix("/var/lib/haven") || len(got) != 10 || !strings.HasPrefix(got, "hv") {
		t.Errorf("Prefix = %q, want hv and 8 hex digits, stable", got)
	}
	if Prefix("/a") == Prefix("/b") {
		t.Error("two keys, one prefix")
	}
	// The longest interface names fit IFNAMSIZ (15 bytes).
	for _, name := range []string{
		bridgeName("abcd", zone.Public),
		portName("abcd", zone.Public, netip.MustParseAddr("198.18.0.254")),
		hostLinkName(Prefix("x")),
	} {
		if len(name) > 15 {
			t.Errorf("interface name %q is %d bytes, more than 15", name, len(name))
		}
	}
	if got := portName("a", zone.App, netip.MustParseAddr("198.18.10.17")); got != "a-app-17" {
		t.Errorf("portName = %q", got)
	}
	if !strings.HasPrefix(portName("a", zone.DB, netip.MustParseAddr("198.18.20.3")), strings.TrimSuffix(zonePorts("a"), "*")) {
		t.Error("a zone's port does not match its fault wildcard")
	}
	if strings.HasPrefix(portName("ab", zone.DB, netip.MustParseAddr("198.18.20.3")), strings.TrimSuffix(zonePorts("a"), "*")) {
		t.Error("zone ab's port matches zone a's fault wildcard")
	}
}

// TestNewErrors: a bad config is refused before anything is touched.
func TestNewErrors(t *testing.T) {
	vpcZones, err := zone.New(zone.Config{VPC: netip.MustParsePrefix("198.18.0.0/19")})
	if err != nil {
		t.Fatal(err)
	}
	loop, _ := zone.New(zone.Config{})
	long, _ := zone.New(zone.Config{Names: []string{"north"}, VPC: netip.MustParsePrefix("198.18.0.0/19")})
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"no key":         {Config{Zones: vpcZones, Groups: defaultGroups()}, "vpc.key: required"},
		"no zones":       {Config{Key: "k", Groups: defaultGroups()}, "vpc.zones: required"},
		"loopback zones": {Config{Key: "k", Zones: loop, Groups: defaultGroups()}, "loopback ranges"},
		"long zone name": {Config{Key: "k", Zones: long, Groups: defaultGroups()}, `1-4 lower-case letters or digits (it names interfaces), got "north"`},
		"no groups":      {Config{Key: "k", Zones: vpcZones}, "vpc.groups: required"},
		"no endpoint":    {Config{Key: "k", Zones: vpcZones, Groups: defaultGroups()}, `through: no endpoint "db"`},
		"endpoint port":  {Config{Key: "k", Zones: vpcZones, Groups: defaultGroups(), Endpoints: []EndpointConfig{{Name: "db"}}}, "vpc.endpoints[0].port"},
		"endpoint twice": {Config{Key: "k", Zones: vpcZones, Groups: defaultGroups(), Endpoints: []EndpointConfig{{Name: "db", Port: 1}, {Name: "db", Port: 2}}}, "vpc.endpoints[1].name"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func defaultGroups() []secgroup.Group { return secgroup.Default(appPort) }
