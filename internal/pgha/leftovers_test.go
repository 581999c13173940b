package pgha

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRestartAfterCrashKillsOrphanedBackends is the daemon crash: the
// controller dies, its postmasters die with it (Pdeathsig), but a backend of
// the primary lives on — here it is stopped, so it cannot notice the
// postmaster's death and exit by itself, as a busy backend would not for a
// while. It holds the old shared memory block. A new controller must kill it
// and start the recorded primary again in place: same epoch, no failover.
func TestRestartAfterCrashKillsOrphanedBackends(t *testing.T) {
	dir := testDir(t)
	cfg := Config{Nodes: testNodes(t, dir, 2), StateFile: filepath.Join(dir, "state.json")}
	c := startTestCluster(t, cfg)
	waitEligible(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := c.inst["db-a"].connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(backend, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(backend, syscall.SIGKILL) })

	// The controller crashes; each postmaster alone gets SIGKILL.
	c.cancel()
	c.wg.Wait()
	for _, n := range cfg.Nodes {
		in := c.inst[n.Name]
		pm := in.pid()
		if pm == 0 {
			t.Fatalf("%s has no postmaster before the crash", n.Name)
		}
		if err := syscall.Kill(pm, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, n.Name+"'s postmaster to exit", func() bool { return in.pid() == 0 })
	}
	if !pidAlive(backend) {
		t.Fatalf("backend %d died with its postmaster; the test needs it alive", backend)
	}

	c2 := startTestCluster(t, cfg)
	if st := c2.Status(); st.State.Epoch != 1 || st.State.Primary != "db-a" || st.EndpointEpoch != 1 {
		t.Errorf("after restart: epoch %d, primary %s, endpoint epoch %d; want 1, db-a, 1 (started in place, no failover)", st.State.Epoch, st.State.Primary, st.EndpointEpoch)
	}
	if pidAlive(backend) {
		t.Errorf("orphaned backend %d still alive after the restart", backend)
	}
	waitEligible(t, c2)
	if got := queryString(t, c2, "db-a", "SELECT pg_is_in_recovery()::text"); got != "false" {
		t.Errorf("db-a in recovery = %s, want false", got)
	}
}
