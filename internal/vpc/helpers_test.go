package vpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/zone"
)

// helperEnv selects a helper mode when this test binary is re-executed (see
// TestMain): "dial" (a client inside a namespace) or "build" (a process
// that builds a VPC and is then SIGKILLed).
const helperEnv = "HAVEN_VPC_TEST_HELPER"

// mainNetns is the main thread's network namespace when the tests start.
var mainNetns string

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		mainNetns, _ = os.Readlink("/proc/self/ns/net")
		os.Exit(m.Run())
	case "dial":
		helperDial()
	case "build":
		helperBuild()
	case "available":
		fmt.Println(Available())
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

const rootMessage = "these tests need root: they create network namespaces, veths, bridges and nftables tables (CAP_SYS_ADMIN, CAP_NET_ADMIN); run them as root, as CI does (sudo go test ./internal/vpc/)"

// requireRoot fails the test (never skips it) when not root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("uid %d: %s", os.Geteuid(), rootMessage)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

const appPort = 8080

// testVPC is a started VPC with the seed's groups and a "db" endpoint,
// removed (and checked to be gone) when the test ends.
type testVPC struct {
	*VPC
	key   string
	zones []*zone.Zone
}

func newTestVPC(t *testing.T) *testVPC {
	t.Helper()
	requireRoot(t)
	key := t.TempDir()
	lease, err := Claim(key, "")
	if err != nil {
		t.Fatal(err)
	}
	zs, err := zone.New(zone.Config{Region: "test-1", VPC: lease.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{
		Key:       key,
		Zones:     zs,
		Groups:    secgroup.Default(appPort),
		Endpoints: []EndpointConfig{{Name: secgroup.DBEndpoint, Port: secgroup.PostgresPort}},
		Logger:    testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		lease.Release()
		t.Fatal(err)
	}
	tv := &testVPC{VPC: v, key: key, zones: zs}
	t.Cleanup(func() {
		if err := v.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
		assertGone(t, key, v.Plan().Region())
	})
	return tv
}

func (tv *testVPC) addNode(t *testing.T, spec NodeSpec) *Node {
	t.Helper()
	n, err := tv.AddNode(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// serve answers every connection on l with "banner\n" and then echoes
// lines until the client closes. It stops when the test ends.
func serve(t *testing.T, l net.Listener, banner string) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.WriteString(c, banner+"\n")
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

var hostDial dialFunc = (&net.Dialer{}).DialContext

// outcome is what a connection attempt came to: "ok <banner>", "refused",
// "timeout" (the attempt hung until its deadline), or another error.
func outcome(dial dialFunc, addr string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := dial(ctx, "tcp4", addr)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "connected, then " + classify(err)
	}
	return "ok " + strings.TrimSpace(line)
}

func classify(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	default:
		return "error: " + err.Error()
	}
}

// assertGone checks that the region of key left nothing: no namespace,
// no host link, no host route into its range, no host nftables table, no
// lease.
func assertGone(t *testing.T, key string, region netip.Prefix) {
	t.Helper()
	prefix := Prefix(key)
	ents, _ := os.ReadDir(NetnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			t.Errorf("namespace %s left", e.Name())
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			t.Errorf("host link %s left", l.Attrs().Name)
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if p, ok := prefixOf(r.Dst); ok && p.Bits() > 0 && p.Overlaps(region) {
				t.Errorf("host route %s left", p)
			}
		}
	}
	tables, err := hostTables(context.Background(), "nft", prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		t.Errorf("host nftables table %s %s left", tb[0], tb[1])
	}
	if _, ok, _ := zone.FindLease("", key); ok {
		t.Errorf("lease of %s left", key)
	}
	if Alive(key) {
		t.Error("Alive after removal")
	}
	// No thread of this process was left in a namespace: the main thread
	// (which the runtime wedges rather than ends) is where it started.
	if ns, _ := os.Readlink("/proc/self/ns/net"); ns != mainNetns {
		t.Errorf("the main thread is in %s, not its own namespace %s", ns, mainNetns)
	}
}

// hostSysctls reads host settings the VPC must never change.
func hostSysctls(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range []string{
		"net/ipv4/ip_forward",
		"net/ipv4/conf/all/send_redirects",
		"net/ipv4/conf/default/send_redirects",
		"net/ipv4/conf/all/rp_filter",
		"net/ipv4/conf/default/rp_filter",
		"net/ipv4/conf/all/proxy_arp_pvlan",
		"net/ipv6/conf/all/disable_ipv6",
		"net/ipv6/conf/default/disable_ipv6",
		"net/bridge/bridge-nf-call-iptables",
	} {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			out[k] = "absent"
			continue
		}
		out[k] = strings.TrimSpace(string(b))
	}
	return out
}

// helperDial runs inside a node's namespace (started with Namespace.Start):
// it connects to each address in its arguments and prints one outcome per
// line.
func helperDial() {
	for _, a := range os.Args[1:] {
		fmt.Println(a, outcome(hostDial, a, 2*time.Second))
	}
	os.Exit(0)
}

// helperBuild builds a VPC for the key in HAVEN_VPC_TEST_KEY with two nodes,
// a listener and a process in one of them, prints "ready PID", and waits to
// be SIGKILLed.
func helperBuild() {
	fail := func(err error) { fmt.Println("error", err); os.Exit(1) }
	key := os.Getenv("HAVEN_VPC_TEST_KEY")
	lease, err := Claim(key, "")
	if err != nil {
		fail(err)
	}
	zs, err := zone.New(zone.Config{VPC: lease.Prefix})
	if err != nil {
		fail(err)
	}
	v, err := New(Config{Key: key, Zones: zs, Groups: secgroup.Default(appPort), Endpoints: []EndpointConfig{{Name: "db", Port: 5432}},
		StateFile: os.Getenv("HAVEN_VPC_TEST_STATE")})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	if err := v.Start(ctx); err != nil {
		fail(err)
	}
	app, err := v.AddNode(ctx, NodeSpec{Name: "i-1", Attach: []Attach{{"a", zone.App}}, Groups: []string{secgroup.App}, Metadata: true})
	if err != nil {
		fail(err)
	}
	if _, err := v.AddNode(ctx, NodeSpec{Name: "db_b", Attach: []Attach{{"b", zone.DB}}, Groups: []string{secgroup.DB}}); err != nil {
		fail(err)
	}
	if _, err := app.Listen(ctx, "tcp", "169.254.169.254:80"); err != nil {
		fail(err)
	}
	if err := v.Partition(ctx, "b"); err != nil {
		fail(err)
	}
	if db, ok := v.Node("db_b"); ok {
		if err := v.SwitchEndpoint(ctx, "db", netip.AddrPortFrom(db.Addr(), 5432)); err != nil {
			fail(err)
		}
	}
	sleep := exec.Command("sleep", "300")
	if err := app.Start(sleep); err != nil {
		fail(err)
	}
	fmt.Println("ready", sleep.Process.Pid)
	select {}
}
