package zone

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

func TestSlotPrefix(t *testing.T) {
	for _, tc := range []struct {
		slot int
		want string
	}{
		{0, "198.18.0.0/19"},
		{1, "198.18.32.0/19"},
		{7, "198.18.224.0/19"},
		{8, "198.19.0.0/19"},
		{15, "198.19.224.0/19"},
	} {
		got, err := SlotPrefix(tc.slot)
		if err != nil || got.String() != tc.want {
			t.Errorf("SlotPrefix(%d) = %s, %v; want %s", tc.slot, got, err, tc.want)
		}
		if !Space.Contains(got.Addr()) {
			t.Errorf("SlotPrefix(%d) = %s, outside %s", tc.slot, got, Space)
		}
	}
	for _, bad := range []int{-1, Slots} {
		if _, err := SlotPrefix(bad); err == nil {
			t.Errorf("SlotPrefix(%d): nil error", bad)
		}
	}
}

func TestPlanLayout(t *testing.T) {
	p, err := NewPlan(netip.MustParsePrefix("198.18.32.0/19"), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		zone string
		tier Tier
		want string
	}{
		{"a", Public, "198.18.32.0/24"},
		{"b", Public, "198.18.33.0/24"},
		{"a", App, "198.18.42.0/24"},
		{"b", App, "198.18.43.0/24"},
		{"a", DB, "198.18.52.0/24"},
		{"b", DB, "198.18.53.0/24"},
	} {
		got, err := p.Subnet(tc.zone, tc.tier)
		if err != nil || got.String() != tc.want {
			t.Errorf("Subnet(%s, %s) = %s, %v; want %s", tc.zone, tc.tier, got, err, tc.want)
		}
	}
	if got := p.Infra().String(); got != "198.18.63.0/24" {
		t.Errorf("Infra = %s, want 198.18.63.0/24", got)
	}
	if got := p.RouterLink().String(); got != "198.18.63.1/30" {
		t.Errorf("RouterLink = %s", got)
	}
	if got := p.HostLink().String(); got != "198.18.63.2/30" {
		t.Errorf("HostLink = %s", got)
	}
	if a, _ := p.EndpointAddr(0); a.String() != "198.18.63.16" {
		t.Errorf("EndpointAddr(0) = %s", a)
	}
	if a, _ := p.EndpointAddr(MaxEndpoints - 1); a.String() != "198.18.63.254" {
		t.Errorf("last EndpointAddr = %s", a)
	}
	if _, err := p.EndpointAddr(MaxEndpoints); err == nil {
		t.Error("EndpointAddr past the end: nil error")
	}
	if _, err := p.Subnet("c", App); err == nil {
		t.Error("Subnet of an unknown zone: nil error")
	}
	if _, err := p.Subnet("a", "web"); err == nil {
		t.Error("Subnet of an unknown tier: nil error")
	}
}

// TestPlanDisjoint checks every subnet, the infrastructure subnet and every
// other region's range are pairwise disjoint, for the largest plan.
func TestPlanDisjoint(t *testing.T) {
	var names []string
	for i := range MaxVPCZones {
		names = append(names, string(rune('a'+i)))
	}
	var all []netip.Prefix
	for slot := range Slots {
		r, _ := SlotPrefix(slot)
		p, err := NewPlan(r, names)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.Subnets() {
			if !r.Contains(s.Prefix.Addr()) {
				t.Fatalf("slot %d: %s %s subnet %s outside %s", slot, s.Zone, s.Tier, s.Prefix, r)
			}
			all = append(all, s.Prefix)
		}
		all = append(all, p.Infra())
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[i].Overlaps(all[j]) {
				t.Fatalf("%s overlaps %s", all[i], all[j])
			}
		}
	}
	if want := Slots * (3*MaxVPCZones + 1); len(all) != want {
		t.Fatalf("got %d ranges, want %d", len(all), want)
	}
}

func TestNewPlanErrors(t *testing.T) {
	r := netip.MustParsePrefix("198.18.0.0/19")
	for name, tc := range map[string]struct {
		region netip.Prefix
		zones  []string
	}{
		"no zones":        {r, nil},
		"too many zones":  {r, []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}},
		"duplicate zone":  {r, []string{"a", "a"}},
		"empty zone":      {r, []string{""}},
		"narrow range":    {netip.MustParsePrefix("198.18.0.0/20"), []string{"a"}},
		"ipv6 range":      {netip.MustParsePrefix("fd00::/48"), []string{"a"}},
		"invalid address": {netip.Prefix{}, []string{"a"}},
	} {
		if _, err := NewPlan(tc.region, tc.zones); err == nil {
			t.Errorf("%s: nil error", name)
		}
	}
}

// TestPlanMatchesTerraform checks the plan's tier offsets against the
// Terraform module's VPC: the same cidrsubnet(vpc_cidr, 8, offset + i).
func TestPlanMatchesTerraform(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "terraform", "network.tf"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*(public|app|db)_subnet_cidrs\s*=\s*\[for i in range\(local\.az_count\) : cidrsubnet\(var\.vpc_cidr, 8, (?:(\d+) \+ )?i\)\]`)
	m := re.FindAllStringSubmatch(string(b), -1)
	if len(m) != len(Tiers) {
		t.Fatalf("found %d subnet layouts in network.tf, want %d: %q", len(m), len(Tiers), m)
	}
	vpc := netip.MustParsePrefix("10.0.0.0/16") // the module's default vpc_cidr
	p, err := NewPlan(vpc, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range m {
		tier, off := Tier(g[1]), 0
		if g[2] != "" {
			off, _ = strconv.Atoi(g[2])
		}
		for i, z := range p.Zones() {
			got, _ := p.Subnet(z, tier)
			want := fmt.Sprintf("10.0.%d.0/24", off+i)
			if got.String() != want {
				t.Errorf("%s subnet of zone %d: plan %s, Terraform %s", tier, i, got, want)
			}
		}
	}
}

func TestVPCZones(t *testing.T) {
	r := netip.MustParsePrefix("198.18.0.0/19")
	zs, err := New(Config{Region: "eu-west-1", VPC: r})
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 2 || zs[1].AZ != "eu-west-1b" || zs[0].Plan() == nil || zs[0].Plan() != zs[1].Plan() {
		t.Fatalf("got %v, want zones a and b sharing one plan", zs)
	}
	for _, tc := range []struct {
		zone int
		tier Tier
		want string
	}{{0, App, "198.18.10.0/24"}, {1, DB, "198.18.21.0/24"}, {1, Public, "198.18.1.0/24"}} {
		z := zs[tc.zone]
		if got := z.Subnet(tc.tier).String(); got != tc.want {
			t.Errorf("zone %s %s: got %s, want %s", z.Name, tc.tier, got, tc.want)
		}
		a, err := z.AllocateIn(tc.tier, "x")
		if err != nil || !z.Subnet(tc.tier).Contains(a) || a.As4()[3] != 2 {
			t.Errorf("zone %s AllocateIn(%s) = %s, %v; want .2 of %s", z.Name, tc.tier, a, err, tc.want)
		}
		if o, ok := z.Owner(a); !ok || o != "x" {
			t.Errorf("Owner(%s) = %q, %v", a, o, ok)
		}
	}
	if got := zs[0].CIDR.String(); got != "198.18.10.0/24" {
		t.Errorf("CIDR = %s, want the app subnet", got)
	}
	// Allocate is the app tier; each tier counts its own addresses.
	a, _ := zs[0].Allocate("i-1")
	if !zs[0].Subnet(App).Contains(a) || zs[0].Allocated() != 2 {
		t.Errorf("Allocate = %s, Allocated = %d; want an app address and 2", a, zs[0].Allocated())
	}
	zs[0].Release(a)
	if zs[0].Allocated() != 1 {
		t.Errorf("after release Allocated = %d, want 1", zs[0].Allocated())
	}
	if _, err := zs[0].AllocateIn("web", "x"); err == nil {
		t.Error("AllocateIn of an unknown tier: nil error")
	}
}

// TestLoopbackTiersShareRange keeps the loopback behaviour: every tier
// allocates from the zone's one /24, without duplicates.
func TestLoopbackTiersShareRange(t *testing.T) {
	z, err := NewZone("a", "local-1a", netip.MustParsePrefix("127.0.1.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := z.AllocateIn(DB, "db")
	a2, _ := z.AllocateIn(App, "i")
	if z.Subnet(DB) != z.CIDR || a1 == a2 || !z.CIDR.Contains(a1) || !z.CIDR.Contains(a2) || z.Allocated() != 2 {
		t.Errorf("got %s, %s in %s (db subnet %s), %d allocated", a1, a2, z.CIDR, z.Subnet(DB), z.Allocated())
	}
}

func TestClaim(t *testing.T) {
	dir := t.TempDir()
	l1, err := Claim(LeaseConfig{Dir: dir, Key: "/state/one"})
	if err != nil {
		t.Fatal(err)
	}
	if l1.Slot != PreferredSlot("/state/one") {
		t.Errorf("slot %d, want the preferred %d", l1.Slot, PreferredSlot("/state/one"))
	}
	if want, _ := SlotPrefix(l1.Slot); l1.Prefix != want {
		t.Errorf("prefix %s, want %s", l1.Prefix, want)
	}
	again, err := Claim(LeaseConfig{Dir: dir, Key: "/state/one"})
	if err != nil || again.Slot != l1.Slot {
		t.Errorf("second claim: slot %d, %v; want the same slot %d", again.Slot, err, l1.Slot)
	}
	found, ok, err := FindLease(dir, "/state/one")
	if err != nil || !ok || found.Slot != l1.Slot {
		t.Errorf("FindLease = %v, %v, %v", found, ok, err)
	}
	if err := l1.Release(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := FindLease(dir, "/state/one"); ok {
		t.Error("lease found after Release")
	}
	if err := l1.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if _, err := Claim(LeaseConfig{Dir: dir, Key: "two\nlines"}); err == nil {
		t.Error("key with a newline: nil error")
	}
}

// TestClaimConcurrent: as many regions as slots claim at once; each gets
// its own slot, and one more finds none.
func TestClaimConcurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	slots := make([]int, Slots)
	errs := make([]error, Slots)
	for i := range Slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Claim(LeaseConfig{Dir: dir, Key: fmt.Sprintf("/state/%d", i)})
			slots[i], errs[i] = l.Slot, err
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for i, s := range slots {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		if seen[s] {
			t.Fatalf("slot %d handed out twice: %v", s, slots)
		}
		seen[s] = true
	}
	_, err := Claim(LeaseConfig{Dir: dir, Key: "/state/one-too-many", Alive: func(string) bool { return true }})
	if !errors.Is(err, ErrNoSlot) {
		t.Fatalf("17th claim: got %v, want ErrNoSlot", err)
	}
}

// TestClaimTakesOverDeadRegion: a slot whose holder has no VPC any more
// is reused once the holder's grace has passed, never before.
func TestClaimTakesOverDeadRegion(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Now())
	var keys []string
	for i := range Slots {
		k := fmt.Sprintf("/state/%d", i)
		if _, err := Claim(LeaseConfig{Dir: dir, Key: k, Clock: clk}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	dead := keys[3]
	deadLease, _, _ := FindLease(dir, dead)
	alive := func(k string) bool { return k != dead }
	if _, err := Claim(LeaseConfig{Dir: dir, Key: "/state/new", Alive: alive, Clock: clk}); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("within the grace period: got %v, want ErrNoSlot", err)
	}
	clk.Advance(2 * DefaultLeaseGrace)
	l, err := Claim(LeaseConfig{Dir: dir, Key: "/state/new", Alive: alive, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := FindLease(dir, dead); ok {
		t.Fatal("dead region still holds a slot")
	}
	if l.Slot != deadLease.Slot {
		t.Errorf("new region got slot %d, want the dead region's %d", l.Slot, deadLease.Slot)
	}
}
