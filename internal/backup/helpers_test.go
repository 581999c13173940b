package backup

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/testkit"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func freePort(t testing.TB, addr netip.Addr) int {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testDir returns a temp dir the postgres user can traverse.
func testDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func testNodes(t *testing.T, dir string, n int) []pgha.Node {
	t.Helper()
	var nodes []pgha.Node
	for i, z := range []string{"a", "b"}[:n] {
		addr := netip.AddrFrom4([4]byte{127, 0, byte(1 + i), 240})
		name := "db-" + z
		nodes = append(nodes, pgha.Node{
			Name: name, Zone: z, ListenAddr: addr, Port: freePort(t, addr),
			DataDir:   filepath.Join(dir, name, "data"),
			SocketDir: filepath.Join(dir, name, "sock"),
			LogFile:   filepath.Join(dir, name+".log"),
		})
	}
	return nodes
}

// env is a running database tier with backups configured.
type env struct {
	dir     string
	nodes   []pgha.Node
	cluster *pgha.Cluster
	mgr     *Manager
}

// startEnv starts an n-node pgha cluster archiving through a Manager and
// creates the stanza. The archive ticker runs when ticker is set.
func startEnv(t *testing.T, n int, ticker bool) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL and pgBackRest: skipped with -short (scripts/test runs it)")
	}
	dir := testDir(t)
	e := &env{dir: dir, nodes: testNodes(t, dir, n)}
	mgr, err := New(Config{Dir: filepath.Join(dir, "state", "backup"), Stanza: "test", Nodes: e.nodes,
		SwitchInterval: 300 * time.Millisecond, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.mgr = mgr
	root, err := ca.LoadOrCreate(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgha.New(pgha.Config{Nodes: e.nodes, StateFile: filepath.Join(dir, "state", "db.json"),
		ArchiveCommand: mgr.ArchiveCommand(), Logger: discard(), Durability: pgha.DurabilityPreferred, Certificates: root})
	if err != nil {
		t.Fatal(err)
	}
	e.cluster = c
	e.mgr.cfg.Primary = c.Primary
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			for _, n := range e.nodes {
				t.Logf("--- %s log tail ---\n%s", n.Name, tailFile(n.LogFile, 15))
			}
			logs, _ := filepath.Glob(filepath.Join(e.mgr.cfg.Dir, "log", "*.log"))
			for _, n := range e.nodes {
				logs = append(logs, n.LogFile)
			}
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				for _, line := range strings.Split(string(b), "\n") {
					if strings.Contains(line, "ERROR") || strings.Contains(line, "WARN") || strings.Contains(line, "archive") {
						t.Logf("%s: %s", filepath.Base(l), line)
					}
				}
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	if err := c.Bootstrap(ctx, "app", "app"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPassword(ctx, "app", appPassword); err != nil {
		t.Fatal(err)
	}
	if err := mgr.StanzaCreate(ctx); err != nil {
		t.Fatal(err)
	}
	if ticker {
		tctx, tcancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); mgr.ArchiveTicker(tctx) }()
		t.Cleanup(func() { tcancel(); <-done })
	}
	return e
}

// appPassword is the test app role's password: no role logs in without one.
var appPassword = pgha.NewPassword()

func (e *env) appDSN() string {
	return e.cluster.Primary().DSN("app", "app") + " password=" + appPassword
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
