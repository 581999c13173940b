package pgha

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRestartControllerMidFailover kills the primary and restarts the
// controller right away and again while the failover runs: the servers keep
// running, the standby is promoted exactly once (epoch 2), the old primary
// rejoins as a standby and the committed row survives.
func TestRestartControllerMidFailover(t *testing.T) {
	dir := testDir(t)
	cfg := Config{Nodes: testNodes(t, dir, 2), StateFile: filepath.Join(dir, "state.json"), Durability: DurabilityPreferred}
	c := startTestCluster(t, cfg)
	waitEligible(t, c)
	if err := c.inst["db-a"].exec(context.Background(), "CREATE TABLE keep (v int); INSERT INTO keep VALUES (5)"); err != nil {
		t.Fatal(err)
	}
	standbyPid := c.inst["db-b"].pid()
	if err := c.Signal("db-a", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if epoch, err := c.RestartController(ctx); err != nil || (epoch != 1 && epoch != 2) {
		t.Fatalf("restart right after the kill: epoch %d, err %v; want 1 (usually: nothing persisted yet) or 2", epoch, err)
	}
	time.Sleep(50 * time.Millisecond) // let the new loop start the failover
	if _, err := c.RestartController(ctx); err != nil {
		t.Fatalf("second restart: %v", err)
	}
	waitFor(t, 30*time.Second, "failover to db-b", func() bool {
		st := c.Status()
		return st.State.Primary == "db-b" && st.EndpointEpoch == st.State.Epoch
	})
	waitEligible(t, c)
	if st := c.Status().State; st.Epoch != 2 {
		t.Errorf("epoch = %d, want 2 (promoted exactly once)", st.Epoch)
	}
	if got := c.inst["db-b"].pid(); got != standbyPid {
		t.Errorf("db-b pid = %d, want %d: the restart must not restart the servers", got, standbyPid)
	}
	if got := queryString(t, c, "db-b", "SELECT v::text FROM keep"); got != "5" {
		t.Errorf("row on the new primary = %q, want 5", got)
	}
	if got := queryString(t, c, "db-a", "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Errorf("db-a in recovery = %s, want true (one primary)", got)
	}
}
