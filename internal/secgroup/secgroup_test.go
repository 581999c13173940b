package secgroup

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

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

func TestCompileDefault(t *testing.T) {
	got, err := Compile(Input{
		Table:  "hv0badf00d_sg",
		Groups: Default(8080),
		Members: map[string][]netip.Addr{
			ALB: addrs("198.18.1.2", "198.18.0.2"),
			App: addrs("198.18.10.3", "198.18.10.2", "198.18.11.2"),
			DB:  addrs("198.18.20.2", "198.18.21.2"),
		},
		Endpoints: map[string]netip.AddrPort{DBEndpoint: netip.MustParseAddrPort("198.18.31.16:5432")},
		Host:      netip.MustParseAddr("198.18.31.2"),
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "default.nft", got)
}

// TestCompileHostEgress: an egress rule naming the host (the identity
// provider on the host's link address) admits connections from its group
// to that port of the host, and nothing else reaches the host.
func TestCompileHostEgress(t *testing.T) {
	groups := Default(8080)
	for i := range groups {
		if groups[i].Name == App {
			groups[i].Egress = append(groups[i].Egress, Rule{Description: "The identity provider on the host", FromPort: 9443, Host: true})
		}
	}
	got, err := Compile(Input{
		Table:     "hv0badf00d_sg",
		Groups:    groups,
		Members:   map[string][]netip.Addr{App: addrs("198.18.10.2"), DB: addrs("198.18.20.2")},
		Endpoints: map[string]netip.AddrPort{DBEndpoint: netip.MustParseAddrPort("198.18.31.16:5432")},
		Host:      netip.MustParseAddr("198.18.31.2"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ip saddr @g_app_sg ip daddr 198.18.31.2 tcp dport 9443 return comment`,
		`ip saddr @grouped ip daddr 198.18.31.2 accept comment "host: no security group, the source's egress rules decide"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	golden(t, "host-egress.nft", got)
	if def, _ := Compile(Input{Table: "t", Groups: Default(8080), Endpoints: map[string]netip.AddrPort{DBEndpoint: netip.MustParseAddrPort("198.18.31.16:5432")}, Host: netip.MustParseAddr("198.18.31.2")}); strings.Contains(def, "ip daddr 198.18.31.2 accept") {
		t.Error("without a host egress rule the host is still accepted")
	}
}

func TestCompileEdges(t *testing.T) {
	groups := []Group{
		{Name: "web", Ingress: []Rule{
			{Description: "DNS and friends from the office", Protocol: UDP, FromPort: 5300, ToPort: 5310, CIDR: netip.MustParsePrefix("10.0.0.0/8")},
			{Description: strings.Repeat("long ", 40), FromPort: 8443, Group: "web"},
		}, Egress: []Rule{
			{Description: "anything over TCP 443", FromPort: 443, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
		}},
		{Name: "empty"},
	}
	got, err := Compile(Input{
		Table:   "t1",
		Groups:  groups,
		Members: map[string][]netip.Addr{"web": addrs("198.18.10.9", "198.18.10.9", "198.18.10.4")},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "edges.nft", got)
}

func TestValidate(t *testing.T) {
	ok := Rule{FromPort: 80, Group: "a"}
	for name, tc := range map[string]struct {
		groups []Group
		want   string
	}{
		"bad name":       {[]Group{{Name: "App_SG"}}, "groups[0].name: 1-64 lower-case"},
		"duplicate":      {[]Group{{Name: "a"}, {Name: "a"}}, `groups[1].name: duplicate group "a"`},
		"unknown peer":   {[]Group{{Name: "a", Ingress: []Rule{{FromPort: 80, Group: "b"}}}}, `groups[0] (a).ingress[0].group: no group "b"`},
		"no port":        {[]Group{{Name: "a", Ingress: []Rule{{Group: "a"}}}}, "groups[0] (a).ingress[0].from_port: 1-65535 required"},
		"reversed range": {[]Group{{Name: "a", Egress: []Rule{{FromPort: 90, ToPort: 80, Group: "a"}}}}, "groups[0] (a).egress[0].to_port: must be ≥ from_port (90), got 80"},
		"two peers":      {[]Group{{Name: "a", Ingress: []Rule{{FromPort: 80, Group: "a", Host: true}}}}, "peer: exactly one of group, cidr and host, got 2"},
		"no peer":        {[]Group{{Name: "a", Ingress: []Rule{{FromPort: 80}}}}, "peer: exactly one of group, cidr and host, got 0"},
		"host bits":      {[]Group{{Name: "a", Ingress: []Rule{{FromPort: 80, CIDR: netip.MustParsePrefix("10.0.0.1/8")}}}}, "cidr: an IPv4 network address"},
		"protocol":       {[]Group{{Name: "a", Ingress: []Rule{{FromPort: 80, Group: "a", Protocol: "icmp"}}}}, `protocol: tcp or udp, got "icmp"`},
		"egress through": {[]Group{{Name: "a", Egress: []Rule{{FromPort: 80, Group: "a", Through: "db"}}}}, "through: only an ingress rule"},
		"unknown ep":     {[]Group{{Name: "a", Ingress: []Rule{{FromPort: 80, Group: "a", Through: "db"}}}}, `through: no endpoint "db"`},
		"quote":          {[]Group{{Name: "a", Ingress: []Rule{{FromPort: 80, Group: "a", Description: `say "hi"`}}}}, "description: no"},
		"fine":           {[]Group{{Name: "a", Ingress: []Rule{ok}, Egress: []Rule{ok}}}, ""},
	} {
		err := Validate(tc.groups, []string{})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
	if err := Validate(Default(8080), nil); err != nil {
		t.Errorf("Default: %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	base := Input{Table: "t", Groups: Default(8080), Endpoints: map[string]netip.AddrPort{DBEndpoint: netip.MustParseAddrPort("198.18.31.16:5432")}, Host: netip.MustParseAddr("198.18.31.2")}
	for name, tc := range map[string]struct {
		edit func(*Input)
		want string
	}{
		"table":           {func(in *Input) { in.Table = "hv-1" }, "table: letters"},
		"unknown member":  {func(in *Input) { in.Members = map[string][]netip.Addr{"web-sg": addrs("198.18.10.2")} }, `members: no group "web-sg"`},
		"ipv6 member":     {func(in *Input) { in.Members = map[string][]netip.Addr{App: addrs("fd00::1")} }, "IPv4 addresses only"},
		"no host":         {func(in *Input) { in.Host = netip.Addr{} }, "the host's IPv4 address is required"},
		"no endpoint":     {func(in *Input) { in.Endpoints = nil }, `through: no endpoint "db"`},
		"endpoint port 0": {func(in *Input) { in.Endpoints[DBEndpoint] = netip.MustParseAddrPort("198.18.31.16:0") }, "non-zero port"},
	} {
		in := base
		in.Endpoints = map[string]netip.AddrPort{DBEndpoint: base.Endpoints[DBEndpoint]}
		tc.edit(&in)
		if _, err := Compile(in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}

// TestCompileDeterministic: the same input in another order compiles to
// the same bytes, so an unchanged region never rewrites its rules.
func TestCompileDeterministic(t *testing.T) {
	mk := func(app []netip.Addr) string {
		s, err := Compile(Input{Table: "t", Groups: Default(8080), Members: map[string][]netip.Addr{App: app, DB: addrs("198.18.20.2")},
			Endpoints: map[string]netip.AddrPort{DBEndpoint: netip.MustParseAddrPort("198.18.31.16:5432"), "other": netip.MustParseAddrPort("198.18.31.17:443")},
			Host:      netip.MustParseAddr("198.18.31.2")})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := mk(addrs("198.18.10.2", "198.18.11.2"))
	for range 20 {
		if b := mk(addrs("198.18.11.2", "198.18.10.2")); b != a {
			t.Fatalf("output depends on order:\n%s\n---\n%s", a, b)
		}
	}
}
