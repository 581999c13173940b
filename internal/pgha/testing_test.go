package pgha

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/testkit"
)

// freePort returns a port that was free on addr.
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
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// testNodes returns n node configs in zones a and b.
func testNodes(t testing.TB, dir string, n int) []Node {
	t.Helper()
	var nodes []Node
	for i, z := range []string{"a", "b"}[:n] {
		addr := netip.AddrFrom4([4]byte{127, 0, byte(1 + i), 250})
		name := "db-" + z
		nodes = append(nodes, Node{
			Name: name, Zone: z, ListenAddr: addr, Port: freePort(t, addr),
			DataDir:   filepath.Join(dir, name, "data"),
			SocketDir: filepath.Join(dir, name, "sock"),
			LogFile:   filepath.Join(dir, name+".log"),
		})
	}
	return nodes
}

// startTestCluster starts a cluster and registers cleanup that SIGKILLs
// every process group it owns.
func startTestCluster(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL: skipped with -short (scripts/test runs it)")
	}
	if cfg.Logger == nil {
		cfg.Logger = testkit.Logger(t)
	}
	if cfg.Certificates == nil && len(cfg.Nodes) == 2 {
		cfg.Certificates = testCA(t)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Kill()
		for _, n := range cfg.Nodes {
			if t.Failed() {
				b, _ := os.ReadFile(n.LogFile)
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				t.Logf("--- %s log tail ---\n%s", n.Name, b)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	return c
}

// waitFor polls cond until it is true or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func pidAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// A zombie is dead for our purposes.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// testCA is a region CA for the test: replication logs in with its client
// certificates.
func testCA(t testing.TB) *ca.CA {
	t.Helper()
	c, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testPassword is what the tests' application roles log in with: no role
// logs in without a credential.
var testPassword = NewPassword()

// withPassword adds testPassword to a TCP DSN.
func withPassword(dsn string) string { return dsn + " password=" + testPassword }

// bootstrapWithPassword bootstraps database owned by role and gives role testPassword.
func bootstrapWithPassword(t testing.TB, c *Cluster, database, role string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Bootstrap(ctx, database, role); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPassword(ctx, role, testPassword); err != nil {
		t.Fatal(err)
	}
}
