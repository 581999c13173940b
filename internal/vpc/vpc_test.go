package vpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/zone"
)

// refusedWithin is how long a refused connection may take: a reset comes
// back at once. hangFor is how long a connection must hang to count as
// hanging: the first SYN retransmission comes after 1 s, so a hang is
// never mistaken for a slow success.
const (
	refusedWithin = 3 * time.Second
	hangFor       = 1500 * time.Millisecond
)

// region is the seed's layout: a load balancer with a leg in each zone's
// public subnet, app instances (two of them in one subnet), a database
// node per zone, the database endpoint on db-a, and a TCP listener
// wherever something would listen.
type region struct {
	*testVPC
	lb, a1, a2, b1, dbA, dbB *Node
	vip                      string
}

func newRegion(t *testing.T) *region {
	tv := newTestVPC(t)
	r := &region{testVPC: tv}
	r.lb = tv.addNode(t, NodeSpec{Name: "lb", Attach: []Attach{{"a", zone.Public}, {"b", zone.Public}}, Groups: []string{secgroup.ALB}})
	r.a1 = tv.addNode(t, NodeSpec{Name: "i-a1", Attach: []Attach{{"a", zone.App}}, Groups: []string{secgroup.App}, Metadata: true})
	r.a2 = tv.addNode(t, NodeSpec{Name: "i-a2", Attach: []Attach{{"a", zone.App}}, Groups: []string{secgroup.App}, Metadata: true})
	r.b1 = tv.addNode(t, NodeSpec{Name: "i-b1", Attach: []Attach{{"b", zone.App}}, Groups: []string{secgroup.App}, Metadata: true})
	r.dbA = tv.addNode(t, NodeSpec{Name: "db_a", Attach: []Attach{{"a", zone.DB}}, Groups: []string{secgroup.DB}})
	r.dbB = tv.addNode(t, NodeSpec{Name: "db_b", Attach: []Attach{{"b", zone.DB}}, Groups: []string{secgroup.DB}})
	ctx := context.Background()
	for _, n := range []*Node{r.a1, r.a2, r.b1} {
		serve(t, listen(t, n, hostport(n.Addr(), appPort)), n.Name)
		serve(t, listen(t, n, "169.254.169.254:80"), "metadata of "+n.Name)
	}
	for _, n := range []*Node{r.dbA, r.dbB} {
		serve(t, listen(t, n, hostport(n.Addr(), secgroup.PostgresPort)), n.Name)
	}
	ep, _ := tv.Endpoint(secgroup.DBEndpoint)
	r.vip = ep.String()
	if err := tv.SetEndpoint(ctx, secgroup.DBEndpoint, netip.AddrPortFrom(r.dbA.Addr(), secgroup.PostgresPort)); err != nil {
		t.Fatal(err)
	}
	return r
}

func listen(t *testing.T, n *Node, addr string) net.Listener {
	t.Helper()
	l, err := n.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func hostport(a netip.Addr, port int) string { return net.JoinHostPort(a.String(), strconv.Itoa(port)) }

type pathCase struct {
	name string
	from dialFunc
	to   string
	want string
}

func checkPaths(t *testing.T, cases []pathCase) {
	t.Helper()
	for _, c := range cases {
		timeout := refusedWithin
		if c.want == "timeout" {
			timeout = hangFor
		}
		if got := outcome(c.from, c.to, timeout); got != c.want {
			t.Errorf("%s (%s): got %q, want %q", c.name, c.to, got, c.want)
		}
	}
}

// checkHeals is checkPaths for paths that heal after a fault: each must
// come to its outcome within healWithin (neighbour entries and TCP
// retransmission timers recover in seconds), and the time is logged.
func checkHeals(t *testing.T, cases []pathCase) {
	t.Helper()
	for _, c := range cases {
		start := time.Now()
		var got string
		for {
			got = outcome(c.from, c.to, refusedWithin)
			if got == c.want || time.Since(start) > healWithin {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got != c.want {
			t.Errorf("%s (%s): got %q for %v, want %q", c.name, c.to, got, healWithin, c.want)
		} else {
			t.Logf("%s: %q after %v", c.name, got, time.Since(start).Round(time.Millisecond))
		}
	}
}

const healWithin = 15 * time.Second

// TestSecurityGroupPaths proves each path of the acceptance list,
// refused and allowed, with real TCP connections between namespaces.
func TestSecurityGroupPaths(t *testing.T) {
	before := hostSysctls(t)
	r := newRegion(t)
	app := func(n *Node) string { return hostport(n.Addr(), appPort) }
	pg := func(n *Node) string { return hostport(n.Addr(), secgroup.PostgresPort) }
	checkPaths(t, []pathCase{
		{"host to an app instance's port", hostDial, app(r.a1), "refused"},
		{"load balancer to an instance in zone a", r.lb.DialContext, app(r.a1), "ok i-a1"},
		{"load balancer to an instance in zone b", r.lb.DialContext, app(r.b1), "ok i-b1"},
		{"app instance to an instance in the other zone", r.a1.DialContext, app(r.b1), "refused"},
		{"app instance to an instance in its own subnet", r.a1.DialContext, app(r.a2), "refused"},
		{"app instance to a database node directly (replication, admin)", r.a1.DialContext, pg(r.dbA), "refused"},
		{"app instance to the other database node directly", r.b1.DialContext, pg(r.dbB), "refused"},
		{"app instance through the database endpoint", r.a1.DialContext, r.vip, "ok db_a"},
		{"app instance in zone b through the database endpoint", r.b1.DialContext, r.vip, "ok db_a"},
		{"database node to an app instance", r.dbA.DialContext, app(r.a1), "refused"},
		{"database replication a to b", r.dbA.DialContext, pg(r.dbB), "ok db_b"},
		{"database replication b to a", r.dbB.DialContext, pg(r.dbA), "ok db_a"},
		{"host to a database node directly", hostDial, pg(r.dbA), "refused"},
		{"host through the database endpoint", hostDial, r.vip, "ok db_a"},
		{"load balancer to a database node", r.lb.DialContext, pg(r.dbA), "refused"},
		{"load balancer through the database endpoint", r.lb.DialContext, r.vip, "refused"},
		{"host to another port of the endpoint", hostDial, hostport(netip.MustParseAddrPort(r.vip).Addr(), 22), "refused"},
		{"host to the router", hostDial, hostport(zone.SubnetGateway(r.zones[0].Subnet(zone.App)), 22), "refused"},
		{"instance to the router", r.a1.DialContext, hostport(zone.SubnetGateway(r.zones[0].Subnet(zone.App)), 22), "refused"},
		{"instance A's metadata endpoint", r.a1.DialContext, "169.254.169.254:80", "ok metadata of i-a1"},
		{"instance B's metadata endpoint", r.b1.DialContext, "169.254.169.254:80", "ok metadata of i-b1"},
	})

	// Every port is isolated: the bridge forwards nothing port to port.
	if err := r.Router().Do(func() error {
		for _, n := range r.Nodes() {
			for _, ifc := range n.Interfaces {
				l, err := netlink.LinkByName(ifc.Port)
				if err != nil {
					return err
				}
				pi, err := netlink.LinkGetProtinfo(l)
				if err != nil {
					return err
				}
				if !pi.Isolated {
					t.Errorf("port %s of %s is not isolated", ifc.Port, n.Name)
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The host is outside every group: an instance cannot open a
	// connection to it, even to a port listening on its VPC address.
	hl, err := net.Listen("tcp4", hostport(r.HostAddr(), 0))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, hl, "host")
	checkPaths(t, []pathCase{
		{"host to itself on its link address", hostDial, hl.Addr().String(), "ok host"},
		{"app instance to the host", r.a1.DialContext, hl.Addr().String(), "refused"},
		{"database node to the host", r.dbA.DialContext, hl.Addr().String(), "refused"},
	})

	// No endpoint target: refused, not hung.
	if err := r.SetEndpoint(context.Background(), secgroup.DBEndpoint, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	checkPaths(t, []pathCase{{"endpoint without a target", r.a1.DialContext, r.vip, "refused"}})
	if err := r.SetEndpoint(context.Background(), secgroup.DBEndpoint, netip.AddrPortFrom(r.dbB.Addr(), secgroup.PostgresPort)); err != nil {
		t.Fatal(err)
	}
	checkPaths(t, []pathCase{{"endpoint moved to db_b", r.a1.DialContext, r.vip, "ok db_b"}})

	// Routing happens in haven's namespaces only.
	var fwd string
	if err := r.Router().Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		fwd = strings.TrimSpace(string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if fwd != "1" {
		t.Errorf("router ip_forward = %s, want 1", fwd)
	}
	if after := hostSysctls(t); !reflect.DeepEqual(before, after) {
		t.Errorf("host sysctls changed:\nbefore %v\nafter  %v", before, after)
	}
	// No namespace has a default route, so nothing can leave the machine.
	for _, n := range r.Nodes() {
		if err := n.Do(func() error {
			rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
			for _, rt := range rs {
				if rt.Dst == nil || rt.Dst.String() == "0.0.0.0/0" {
					t.Errorf("node %s has a default route: %v", n.Name, rt)
				}
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpoofedSourceDropped: a node that sends from another node's address
// (here an instance posing as the load balancer, which app-sg admits) is
// dropped at its bridge port before the security groups see it.
func TestSpoofedSourceDropped(t *testing.T) {
	r := newRegion(t)
	lbAddr := r.lb.Addr()
	err := r.a1.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(lbAddr, 32))})
	})
	if err != nil {
		t.Fatal(err)
	}
	spoof := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := r.a1.Do(func() error {
			var err error
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: lbAddr.AsSlice()}}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	const rule = "a node sends only from its own address"
	before := ruleCounter(t, r.Router(), "bridge", tableName(r.Prefix(), "ports"), rule)
	checkPaths(t, []pathCase{
		{"instance posing as the load balancer", spoof, hostport(r.b1.Addr(), appPort), "timeout"},
		{"the same instance as itself", r.a1.DialContext, hostport(r.b1.Addr(), appPort), "refused"},
		{"the real load balancer", r.lb.DialContext, hostport(r.b1.Addr(), appPort), "ok i-b1"},
	})
	// The port binding dropped the forged packets (the router's reverse
	// path filter would too, but it comes after).
	if after := ruleCounter(t, r.Router(), "bridge", tableName(r.Prefix(), "ports"), rule); after <= before {
		t.Errorf("rule %q dropped %d packets, want more than %d", rule, after, before)
	}
}

// ruleCounter returns the packet count of the rule with comment in table.
func ruleCounter(t *testing.T, ns Namespace, family, table, comment string) int {
	t.Helper()
	cmd := exec.Command("nft", "list", "table", family, table)
	out := runIn(t, &Node{Namespace: ns}, cmd)
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `comment "`+comment+`"`) {
			continue
		}
		f := strings.Fields(line)
		for i := range f {
			if f[i] == "packets" && i+1 < len(f) {
				n, err := strconv.Atoi(f[i+1])
				if err != nil {
					t.Fatalf("counter in %q: %v", line, err)
				}
				return n
			}
		}
	}
	t.Fatalf("no rule %q with a counter in %s %s:\n%s", comment, family, table, out)
	return 0
}

// TestProcessInNamespace: a process started with Node.Start lives in the
// node's namespace and its connections obey the node's groups.
func TestProcessInNamespace(t *testing.T) {
	r := newRegion(t)
	var st syscall.Stat_t
	if err := syscall.Stat(r.a1.Path(), &st); err != nil {
		t.Fatal(err)
	}
	out := runIn(t, r.a1, exec.Command("readlink", "/proc/self/ns/net"))
	if want := fmt.Sprintf("net:[%d]", st.Ino); strings.TrimSpace(out) != want {
		t.Errorf("process namespace %q, want %q", strings.TrimSpace(out), want)
	}
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	if strings.TrimSpace(out) == self {
		t.Error("process runs in the host's namespace")
	}

	cmd := exec.Command(os.Args[0], hostport(r.b1.Addr(), appPort), r.vip, "169.254.169.254:80")
	cmd.Env = append(os.Environ(), helperEnv+"=dial")
	got := strings.Split(strings.TrimSpace(runIn(t, r.a1, cmd)), "\n")
	want := []string{
		hostport(r.b1.Addr(), appPort) + " refused",
		r.vip + " ok db_a",
		"169.254.169.254:80 ok metadata of i-a1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dials from a process in i-a1:\ngot  %q\nwant %q", got, want)
	}
}

func runIn(t *testing.T, n *Node, cmd *exec.Cmd) string {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := n.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v: %s", cmd.Path, err, out.String())
	}
	return out.String()
}

// TestPartition: a partitioned zone's links drop every packet, so
// connections to, from and within it hang (they are not refused); the
// other zone keeps working through the load balancer's other leg; Restore
// heals new connections and ones the partition stalled.
func TestPartition(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	app := func(n *Node) string { return hostport(n.Addr(), appPort) }
	pg := func(n *Node) string { return hostport(n.Addr(), secgroup.PostgresPort) }

	// A connection made before the partition.
	c, err := r.lb.DialContext(ctx, "tcp4", app(r.a1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || line != "i-a1\n" {
		t.Fatalf("banner %q, %v", line, err)
	}

	if err := r.Partition(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := r.Faults(); !reflect.DeepEqual(got, map[string]Fault{"a": {Kind: Partition}}) {
		t.Errorf("Faults = %v", got)
	}
	checkPaths(t, []pathCase{
		{"load balancer to zone a", r.lb.DialContext, app(r.a1), "timeout"},
		{"load balancer to zone b", r.lb.DialContext, app(r.b1), "ok i-b1"},
		{"host through the endpoint to db_a", hostDial, r.vip, "timeout"},
		{"zone b through the endpoint to db_a", r.b1.DialContext, r.vip, "timeout"},
		{"replication b to a", r.dbB.DialContext, pg(r.dbA), "timeout"},
		{"replication a to b", r.dbA.DialContext, pg(r.dbB), "timeout"},
		{"within zone a", r.a1.DialContext, app(r.a2), "timeout"},
		{"host to zone b's database directly (still refused)", hostDial, pg(r.dbB), "refused"},
	})
	// The established connection stalls.
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(hangFor))
	if line, err := br.ReadString('\n'); classify(err) != "timeout" {
		t.Fatalf("echo across the partition: %q, %v; want a timeout", line, err)
	}

	if err := r.Restore(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if len(r.Faults()) != 0 {
		t.Errorf("Faults after restore = %v", r.Faults())
	}
	checkHeals(t, []pathCase{
		{"load balancer to zone a after restore", r.lb.DialContext, app(r.a1), "ok i-a1"},
		{"host through the endpoint after restore", hostDial, r.vip, "ok db_a"},
		{"replication b to a after restore", r.dbB.DialContext, pg(r.dbA), "ok db_a"},
		{"within zone a after restore (refused again)", r.a1.DialContext, app(r.a2), "refused"},
	})
	// TCP retransmits the stalled data (after at most a few seconds of backoff).
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("stalled connection after restore: %q, %v; want the echo", line, err)
	}
}

// TestDegrade: degrade drops frames at random on the zone's links; at 99 %
// a connection cannot be made in time; Restore heals it. Loss only: there
// is no latency without netem.
func TestDegrade(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	for _, bad := range []int{0, 100, -5} {
		if err := r.Degrade(ctx, "a", bad); err == nil {
			t.Errorf("Degrade %d%%: nil error", bad)
		}
	}
	if err := r.Degrade(ctx, "zz", 10); err == nil {
		t.Error("Degrade of an unknown zone: nil error")
	}
	if err := r.Degrade(ctx, "a", 99); err != nil {
		t.Fatal(err)
	}
	if got := r.Faults()["a"]; got != (Fault{Kind: Degrade, LossPercent: 99}) {
		t.Errorf("fault %v", got)
	}
	checkPaths(t, []pathCase{
		{"load balancer to a 99 % lossy zone", r.lb.DialContext, hostport(r.a1.Addr(), appPort), "timeout"},
		{"load balancer to the healthy zone", r.lb.DialContext, hostport(r.b1.Addr(), appPort), "ok i-b1"},
	})
	if err := r.Restore(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	checkHeals(t, []pathCase{{"after restore", r.lb.DialContext, hostport(r.a1.Addr(), appPort), "ok i-a1"}})
}

// TestRemoveNode: a removed node's namespace, port and address are gone,
// and its processes with them.
func TestRemoveNode(t *testing.T) {
	tv := newTestVPC(t)
	ctx := context.Background()
	n := tv.addNode(t, NodeSpec{Name: "i-1", Attach: []Attach{{"a", zone.App}}, Groups: []string{secgroup.App}})
	if _, err := tv.AddNode(ctx, NodeSpec{Name: "i-1", Attach: []Attach{{"a", zone.App}}}); err == nil {
		t.Error("second node of the same name: nil error")
	}
	for name, spec := range map[string]NodeSpec{
		"unknown zone":  {Name: "x1", Attach: []Attach{{"c", zone.App}}},
		"unknown tier":  {Name: "x2", Attach: []Attach{{"a", "web"}}},
		"unknown group": {Name: "x3", Attach: []Attach{{"a", zone.App}}, Groups: []string{"web-sg"}},
		"no subnet":     {Name: "x4"},
		"twice a/app":   {Name: "x5", Attach: []Attach{{"a", zone.App}, {"a", zone.App}}},
		"router's name": {Name: "rt", Attach: []Attach{{"a", zone.App}}},
		"bad name":      {Name: "I/1", Attach: []Attach{{"a", zone.App}}},
	} {
		if _, err := tv.AddNode(ctx, spec); err == nil {
			t.Errorf("%s: nil error", name)
		}
	}
	if got := tv.zones[0].Allocated(); got != 1 {
		t.Errorf("zone a has %d addresses allocated after failed adds, want 1", got)
	}
	sleep := exec.Command("sleep", "300")
	if err := n.Start(sleep); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleep.Wait() }()
	if err := tv.RemoveNode(ctx, "i-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Error("the node's process survived RemoveNode")
	}
	if _, err := os.Stat(n.Path()); !os.IsNotExist(err) {
		t.Errorf("namespace %s: %v, want gone", n.Path(), err)
	}
	err := tv.Router().Do(func() error {
		if _, err := netlink.LinkByName(n.Interfaces[0].Port); err == nil {
			t.Errorf("port %s left in the router", n.Interfaces[0].Port)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := tv.zones[0].Allocated(); got != 0 {
		t.Errorf("zone a has %d addresses allocated, want 0", got)
	}
	if err := tv.RemoveNode(ctx, "i-1"); err == nil {
		t.Error("second RemoveNode: nil error")
	}
}

// TestSweepAfterKill: a process builds a VPC (namespaces, host link,
// rules, a partition, a process in a node) and is SIGKILLed; Sweep, from
// the region's key alone, removes all of it and the lease.
func TestSweepAfterKill(t *testing.T) {
	requireRoot(t)
	key := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=build", "HAVEN_VPC_TEST_KEY="+key)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		Sweep(context.Background(), SweepConfig{Key: key})
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("helper: %q, %v", line, err)
	}
	sleepPid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "ready ")))
	lease, ok, err := zone.FindLease("", key)
	if err != nil || !ok {
		t.Fatalf("no lease for the helper's region: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	prefix := Prefix(key)
	if !Alive(key) {
		t.Fatal("the router namespace died with the daemon; the VPC should outlive it")
	}
	if syscall.Kill(sleepPid, 0) != nil {
		t.Fatal("the node's process died with the daemon; it should outlive it")
	}
	if _, err := netlink.LinkByName(hostLinkName(prefix)); err != nil {
		t.Fatalf("host link before the sweep: %v", err)
	}

	sw, err := Sweep(context.Background(), SweepConfig{Key: key, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	wantNS := []string{nodeNSName(prefix, "db_b"), nodeNSName(prefix, "i-1"), routerName(prefix)}
	if !reflect.DeepEqual(sw.Namespaces, wantNS) {
		t.Errorf("swept namespaces %v, want %v", sw.Namespaces, wantNS)
	}
	if !reflect.DeepEqual(sw.Killed, []int{sleepPid}) {
		t.Errorf("killed %v, want the node's process %d", sw.Killed, sleepPid)
	}
	if !reflect.DeepEqual(sw.Links, []string{hostLinkName(prefix)}) {
		t.Errorf("swept host links %v, want [%s]", sw.Links, hostLinkName(prefix))
	}
	if !sw.Lease {
		t.Error("lease not released")
	}
	assertGone(t, key, lease.Prefix)
	// The node's process is gone (reaped by init, or a zombie at most).
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(sleepPid, 0) == nil && !allZombies([]int{sleepPid}) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d survived the sweep", sleepPid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	again, err := Sweep(context.Background(), SweepConfig{Key: key})
	if err != nil || !again.Empty() {
		t.Errorf("second sweep: %+v, %v; want nothing to do", again, err)
	}
}

// TestStartReplacesLeftovers: a VPC started over a killed one's leftovers
// (same key) removes them and builds afresh.
func TestStartReplacesLeftovers(t *testing.T) {
	tv := newTestVPC(t)
	tv.addNode(t, NodeSpec{Name: "i-1", Attach: []Attach{{"a", zone.App}}})
	v2, err := New(Config{Key: tv.key, Zones: mustZones(t, tv.Plan().Region()), Groups: secgroup.Default(appPort),
		Endpoints: []EndpointConfig{{Name: secgroup.DBEndpoint, Port: secgroup.PostgresPort}}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := v2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Namespace{name: nodeNSName(tv.Prefix(), "i-1")}.Path()); !os.IsNotExist(err) {
		t.Errorf("the old node's namespace survived Start: %v", err)
	}
	if !Alive(tv.key) {
		t.Error("no router after Start")
	}
}

func mustZones(t *testing.T, p netip.Prefix) []*zone.Zone {
	zs, err := zone.New(zone.Config{VPC: p})
	if err != nil {
		t.Fatal(err)
	}
	return zs
}

// TestTwoRegions: two regions on one machine get disjoint ranges and
// names, and each one's host route leads to its own router.
func TestTwoRegions(t *testing.T) {
	r1 := newTestVPC(t)
	r2 := newTestVPC(t)
	if r1.Plan().Region().Overlaps(r2.Plan().Region()) || r1.Prefix() == r2.Prefix() {
		t.Fatalf("regions share %s / %s, prefixes %s / %s", r1.Plan().Region(), r2.Plan().Region(), r1.Prefix(), r2.Prefix())
	}
	var nodes []*Node
	for _, r := range []*testVPC{r1, r2} {
		n := r.addNode(t, NodeSpec{Name: "db_a", Attach: []Attach{{"a", zone.DB}}, Groups: []string{secgroup.DB}})
		serve(t, listen(t, n, hostport(n.Addr(), secgroup.PostgresPort)), r.Prefix())
		if err := r.SetEndpoint(context.Background(), secgroup.DBEndpoint, netip.AddrPortFrom(n.Addr(), secgroup.PostgresPort)); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for _, r := range []*testVPC{r1, r2} {
		ep, _ := r.Endpoint(secgroup.DBEndpoint)
		checkPaths(t, []pathCase{{"host to " + r.Prefix() + "'s endpoint", hostDial, ep.String(), "ok " + r.Prefix()}})
	}
	if nodes[0].Addr() == nodes[1].Addr() {
		t.Errorf("both regions' nodes have %s", nodes[0].Addr())
	}
}

// TestAvailable: as root, with nft installed, a VPC can be built.
func TestAvailable(t *testing.T) {
	requireRoot(t)
	if err := Available(); err != nil {
		t.Errorf("Available as root: %v", err)
	}
}

// TestNotRootFails runs this package's tests as an unprivileged user: they
// must fail, saying why, not skip.
func TestNotRootFails(t *testing.T) {
	requireRoot(t)
	dir, err := os.MkdirTemp("", "vpc-notroot-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := dir + "/vpc.test"
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestSecurityGroupPaths$", "-test.v")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("as uid 65534 the tests passed:\n%s", out)
	}
	if !strings.Contains(string(out), rootMessage) || !strings.Contains(string(out), "--- FAIL: TestSecurityGroupPaths") || strings.Contains(string(out), "SKIP") {
		t.Errorf("as uid 65534: want a FAIL naming the reason, got:\n%s", out)
	}
	// Available says why, for the region's fallback to loopback.
	cmd = exec.Command(bin)
	cmd.Dir, cmd.Env, cmd.SysProcAttr = dir, []string{"PATH=" + os.Getenv("PATH"), helperEnv + "=available"}, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "network namespaces unavailable: haven runs as uid 65534") {
		t.Errorf("Available as uid 65534: %v\n%s", err, out)
	}
}

// TestEndpointSwitchCutsConnections: SwitchEndpoint and PauseEndpoint cut
// every connection made through the endpoint before (the next packet a
// client sends gets a reset, so nothing keeps talking to the old target),
// PauseEndpoint holds new connections until the next target, and
// SetEndpoint moves new connections only.
func TestEndpointSwitchCutsConnections(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	dbA := netip.AddrPortFrom(r.dbA.Addr(), secgroup.PostgresPort)
	dbB := netip.AddrPortFrom(r.dbB.Addr(), secgroup.PostgresPort)
	open := func(dial dialFunc) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := dial(ctx, "tcp4", r.vip)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(refusedWithin))
		if line, err := br.ReadString('\n'); err != nil || line != "db_a\n" {
			t.Fatalf("first line %q, %v; want db_a", line, err)
		}
		return c, br
	}
	// echo sends a line and reads it back: "ok", or how it failed.
	echo := func(c net.Conn, br *bufio.Reader) string {
		c.SetDeadline(time.Now().Add(refusedWithin))
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			return classify(err)
		}
		line, err := br.ReadString('\n')
		switch {
		case err == nil && line == "ping\n":
			return "ok"
		case errors.Is(err, syscall.ECONNRESET):
			return "reset"
		case err != nil:
			return classify(err)
		}
		return "got " + line
	}

	// SetEndpoint: the old connection stays with db_a, new ones go to db_b.
	app, appR := open(r.a1.DialContext)
	host, hostR := open(hostDial)
	if err := r.SetEndpoint(ctx, secgroup.DBEndpoint, dbB); err != nil {
		t.Fatal(err)
	}
	if got := echo(app, appR); got != "ok" {
		t.Fatalf("after SetEndpoint, the old connection: %s, want ok (kept)", got)
	}
	checkPaths(t, []pathCase{{"new connection after SetEndpoint", r.a1.DialContext, r.vip, "ok db_b"}})

	// SwitchEndpoint: every old connection is reset on its next packet.
	if err := r.SetEndpoint(ctx, secgroup.DBEndpoint, dbA); err != nil {
		t.Fatal(err)
	}
	app, appR = open(r.a1.DialContext)
	host, hostR = open(hostDial)
	if err := r.SwitchEndpoint(ctx, secgroup.DBEndpoint, dbB); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		c  net.Conn
		br *bufio.Reader
	}{"instance": {app, appR}, "host": {host, hostR}} {
		if got := echo(c.c, c.br); got != "reset" {
			t.Errorf("after SwitchEndpoint, the %s's old connection: %s, want reset", name, got)
		}
	}
	checkPaths(t, []pathCase{{"new connection after SwitchEndpoint", r.a1.DialContext, r.vip, "ok db_b"}})

	// PauseEndpoint: old connections reset, new ones held, then released
	// to the next target by the client's own SYN retransmission.
	app, appR = func() (net.Conn, *bufio.Reader) {
		c, err := r.a1.DialContext(ctx, "tcp4", r.vip)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		br.ReadString('\n')
		return c, br
	}()
	if err := r.PauseEndpoint(ctx, secgroup.DBEndpoint); err != nil {
		t.Fatal(err)
	}
	if got := echo(app, appR); got != "reset" {
		t.Errorf("after PauseEndpoint, the old connection: %s, want reset", got)
	}
	checkPaths(t, []pathCase{{"new connection while paused", r.a1.DialContext, r.vip, "timeout"}})
	held := make(chan string, 1)
	go func() { held <- outcome(r.b1.DialContext, r.vip, 10*time.Second) }()
	time.Sleep(300 * time.Millisecond)
	if err := r.SwitchEndpoint(ctx, secgroup.DBEndpoint, dbA); err != nil {
		t.Fatal(err)
	}
	if got := <-held; got != "ok db_a" {
		t.Errorf("a connection held by the pause, after the switch: %q, want ok db_a", got)
	}
}

// TestControlPlaneDial: the control plane's connections come from the
// router's host-link address, reach every node (no group applies), and a
// partition cuts them like anything else on the zone's links.
func TestControlPlaneDial(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	pg := hostport(r.dbA.Addr(), secgroup.PostgresPort)
	checkPaths(t, []pathCase{
		{"control plane to a database node", r.DialContext, pg, "ok db_a"},
		{"control plane to an app instance", r.DialContext, hostport(r.a1.Addr(), appPort), "ok i-a1"},
	})
	c, err := r.DialContext(ctx, "tcp4", pg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.LocalAddr().(*net.TCPAddr).IP.String(), r.Plan().RouterLink().Addr().String(); got != want {
		t.Errorf("control plane dials from %s, want the router's link address %s", got, want)
	}
	c.Close()
	if !NodeNamespace(r.key, "db_a").Exists() || NodeNamespace(r.key, "nope").Exists() {
		t.Error("NodeNamespace: db_a should exist, nope should not")
	}
	if err := r.Partition(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	checkPaths(t, []pathCase{
		{"control plane to a partitioned database node", r.DialContext, pg, "timeout"},
		{"control plane to the other zone's node", r.DialContext, hostport(r.dbB.Addr(), secgroup.PostgresPort), "ok db_b"},
	})
	if err := r.Restore(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	checkHeals(t, []pathCase{{"control plane after restore", r.DialContext, pg, "ok db_a"}})
}

// TestSetGroupsReplacesTheRuleset is haven apply of security_groups on a
// running VPC: a rule the new groups add admits its path at once, an
// established connection survives each replacement, dropping the rule
// refuses the path again, and groups that lack a node's group are refused
// with the ruleset unchanged. newTestVPC's cleanup removes the tables and
// namespaces and checks they are gone, whatever failed.
func TestSetGroupsReplacesTheRuleset(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	app := func(n *Node) string { return hostport(n.Addr(), appPort) }
	// An established connection from the load balancer to an instance.
	c, err := r.lb.DialContext(ctx, "tcp4", app(r.a1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if banner, err := br.ReadString('\n'); err != nil || banner != r.a1.Name+"\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	alive := func(when string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			t.Errorf("%s: the established connection is cut: %v", when, err)
			return
		}
		if got, err := br.ReadString('\n'); err != nil || got != "ping\n" {
			t.Errorf("%s: the established connection is cut: %q, %v", when, got, err)
		}
	}
	alive("before")
	sibling := pathCase{"app instance to an instance in its own subnet", r.a1.DialContext, app(r.a2), "refused"}
	checkPaths(t, []pathCase{sibling})

	// Add: app-sg admits app-sg on the app port (both directions of the
	// pair, as AWS needs ingress and egress).
	groups := secgroup.Default(appPort)
	for i := range groups {
		if groups[i].Name == secgroup.App {
			rule := secgroup.Rule{Description: "instances talk to each other", Protocol: secgroup.TCP, FromPort: appPort, Group: secgroup.App}
			groups[i].Ingress = append(groups[i].Ingress, rule)
			groups[i].Egress = append(groups[i].Egress, rule)
		}
	}
	if err := r.SetGroups(ctx, groups); err != nil {
		t.Fatal(err)
	}
	allowed := sibling
	allowed.want = "ok " + r.a2.Name
	checkPaths(t, []pathCase{allowed, {"app instance to an instance in the other zone", r.a1.DialContext, app(r.b1), "ok " + r.b1.Name}})
	alive("after a rule was added")

	// Drop it again.
	if err := r.SetGroups(ctx, secgroup.Default(appPort)); err != nil {
		t.Fatal(err)
	}
	checkPaths(t, []pathCase{sibling, {"load balancer to an instance", r.lb.DialContext, app(r.b1), "ok " + r.b1.Name}})
	alive("after the rule was dropped")

	// Refused: a node's group is missing; nothing changes.
	// (and no rule names it, so the groups themselves are valid).
	var noDB []secgroup.Group
	namesDB := func(r secgroup.Rule) bool { return r.Group == secgroup.DB }
	for _, g := range secgroup.Default(appPort) {
		if g.Name != secgroup.DB {
			g.Ingress, g.Egress = slices.DeleteFunc(g.Ingress, namesDB), slices.DeleteFunc(g.Egress, namesDB)
			noDB = append(noDB, g)
		}
	}
	if err := r.SetGroups(ctx, noDB); err == nil || !strings.Contains(err.Error(), "db_a") {
		t.Errorf("SetGroups without the database nodes' group: %v, want an error naming the node", err)
	}
	checkPaths(t, []pathCase{sibling, {"app instance through the database endpoint", r.a1.DialContext, r.vip, "ok db_a"}})
	alive("after a refused change")
}

// TestConnectionsSurviveNodesJoining: a node joining a subnet adds a port
// to the subnet's bridge. A Linux bridge whose address was never set takes
// the lowest address of its ports, so a joining node could change the
// router's MAC under the subnet's other nodes, whose neighbour entries
// (the router answers ARP for the whole subnet) would then point nowhere
// until they expire: an established connection through the router would
// hang for seconds. The bridge keeps its address, and a connection from
// an instance to an interface endpoint in its subnet keeps answering at
// once while nodes join.
func TestConnectionsSurviveNodesJoining(t *testing.T) {
	tv := newTestVPC(t)
	ctx := context.Background()
	a1 := tv.addNode(t, NodeSpec{Name: "i-a1", Attach: []Attach{{"a", zone.App}}, Groups: []string{secgroup.App}})
	ep := tv.addNode(t, NodeSpec{Name: "vpce-x", Attach: []Attach{{"a", zone.App}}, Groups: []string{secgroup.VPCE}})
	serve(t, listen(t, ep, hostport(ep.Addr(), 443)), "endpoint")
	mac := func() string {
		var hw string
		if err := tv.Router().Do(func() error {
			l, err := netlink.LinkByName(bridgeName("a", zone.App))
			if err != nil {
				return err
			}
			hw = l.Attrs().HardwareAddr.String()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return hw
	}
	c, err := a1.DialContext(ctx, "tcp4", hostport(ep.Addr(), 443))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	before := mac()
	for i := range 8 {
		tv.addNode(t, NodeSpec{Name: fmt.Sprintf("i-j%d", i), Attach: []Attach{{"a", zone.App}}, Groups: []string{secgroup.App}})
		if got := mac(); got != before {
			t.Errorf("after node %d joined, the bridge's address is %s, was %s", i, got, before)
		}
		_ = c.SetDeadline(time.Now().Add(time.Second))
		line := fmt.Sprintf("ping %d\n", i)
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatalf("after node %d joined: write: %v", i, err)
		}
		if got, err := rd.ReadString('\n'); err != nil || got != line {
			t.Fatalf("after node %d joined: the established connection answered %q, %v within 1s, want the echo", i, got, err)
		}
	}
}
