package vpc

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/zone"
)

// buildAndKill runs helperBuild with a state file, SIGKILLs it once the
// VPC is up, and returns the pid of the process it left in node i-1.
func buildAndKill(t *testing.T, key, state string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=build", "HAVEN_VPC_TEST_KEY="+key, "HAVEN_VPC_TEST_STATE="+state)
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
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "ready ")))
	_ = cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	return pid
}

func vpcFor(t *testing.T, key, state string) *VPC {
	t.Helper()
	lease, err := Claim(key, "")
	if err != nil {
		t.Fatal(err)
	}
	zs, err := zone.New(zone.Config{VPC: lease.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{Key: key, Zones: zs, Groups: secgroup.Default(appPort), Endpoints: []EndpointConfig{{Name: "db", Port: 5432}},
		StateFile: state, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAdoptAfterKill: a daemon that built a VPC is SIGKILLed; the next one
// adopts the VPC from its record: the nodes with their addresses, the
// process running in one (untouched), the endpoint's target and
// generation, the zone fault; nothing is rebuilt.
func TestAdoptAfterKill(t *testing.T) {
	requireRoot(t)
	key := t.TempDir()
	state := filepath.Join(key, "vpc.json")
	sleepPid := buildAndKill(t, key, state)
	routerIno := inode(t, Namespace{name: routerName(Prefix(key))}.Path())

	v := vpcFor(t, key, state)
	ctx := context.Background()
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Stop(context.Background()) })
	if !v.Adopted() {
		t.Fatal("the VPC was rebuilt, not adopted")
	}
	if got := inode(t, v.Router().Path()); got != routerIno {
		t.Fatalf("router namespace changed (%d → %d): it was rebuilt", routerIno, got)
	}
	if syscall.Kill(sleepPid, 0) != nil || allZombies([]int{sleepPid}) {
		t.Fatal("the process in node i-1 did not survive the adoption")
	}
	app, ok := v.Node("i-1")
	sub, _ := v.Plan().Subnet("a", zone.App)
	if !ok || !app.Metadata || app.Addr() != sub.Addr().Next().Next() {
		t.Fatalf("node i-1 adopted as %+v (ok %v), want the first app address of zone a", app, ok)
	}
	db, ok := v.Node("db_b")
	if !ok {
		t.Fatal("node db_b not adopted")
	}
	v.mu.Lock()
	ep := *v.endpoints["db"]
	v.mu.Unlock()
	if ep.target != netip.AddrPortFrom(db.Addr(), 5432) || ep.gen != 2 {
		t.Fatalf("endpoint adopted as target %s generation %d, want %s generation 2", ep.target, ep.gen, netip.AddrPortFrom(db.Addr(), 5432))
	}
	if f := v.Faults()["b"]; f.Kind != Partition {
		t.Fatalf("zone b's partition not adopted: %+v", v.Faults())
	}
	// Setting the endpoint to what it is changes nothing (no new generation).
	if err := v.SetEndpoint(ctx, "db", netip.AddrPortFrom(db.Addr(), 5432)); err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	gen := v.endpoints["db"].gen
	v.mu.Unlock()
	if gen != 2 {
		t.Fatalf("generation %d after a no-op SetEndpoint, want 2", gen)
	}
	// New nodes get other addresses than the adopted ones.
	n2, err := v.AddNode(ctx, NodeSpec{Name: "i-2", Attach: []Attach{{"a", zone.App}}, Groups: []string{secgroup.App}})
	if err != nil {
		t.Fatal(err)
	}
	if n2.Addr() == app.Addr() {
		t.Fatalf("new node got the adopted node's address %s", app.Addr())
	}
	if err := v.RemoveNode(ctx, "i-1"); err != nil {
		t.Fatal(err)
	}
}

// TestAdoptDropsWhatIsGone: a recorded node whose namespace is gone is
// dropped; a namespace of the region the record does not name is swept;
// without a router the VPC is rebuilt.
func TestAdoptDropsWhatIsGone(t *testing.T) {
	requireRoot(t)
	key := t.TempDir()
	state := filepath.Join(key, "vpc.json")
	buildAndKill(t, key, state)
	prefix := Prefix(key)
	// db_b's namespace vanishes; a stray namespace appears.
	if _, err := killIn(context.Background(), Namespace{name: nodeNSName(prefix, "db_b")}); err != nil {
		t.Fatal(err)
	}
	if err := deleteNamespace(Namespace{name: nodeNSName(prefix, "db_b")}); err != nil {
		t.Fatal(err)
	}
	stray, err := createNamespace(nodeNSName(prefix, "stray"))
	if err != nil {
		t.Fatal(err)
	}
	v := vpcFor(t, key, state)
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !v.Adopted() {
		t.Fatal("not adopted")
	}
	if _, ok := v.Node("db_b"); ok {
		t.Fatal("a node whose namespace is gone was adopted")
	}
	if _, ok := v.Node("i-1"); !ok {
		t.Fatal("node i-1 not adopted")
	}
	if stray.Exists() {
		t.Fatal("a namespace the record does not name survived the adoption")
	}
	if err := v.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the record survived Stop: %v", err)
	}

	// A record without its router: rebuilt.
	buildAndKill(t, key, state)
	if err := deleteNamespaceKilling(Namespace{name: routerName(prefix)}); err != nil {
		t.Fatal(err)
	}
	v2 := vpcFor(t, key, state)
	if err := v2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer v2.Stop(context.Background())
	if v2.Adopted() {
		t.Fatal("adopted a VPC without its router")
	}
	if _, ok := v2.Node("i-1"); ok {
		t.Fatal("a rebuilt VPC has the old nodes")
	}
}

func deleteNamespaceKilling(ns Namespace) error {
	if _, err := killIn(context.Background(), ns); err != nil {
		return err
	}
	return deleteNamespace(ns)
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
