package pgha

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/pgha/ledger"
	"github.com/haven-platform/haven/internal/testkit"
)

func TestLostStandbyPreferredKeepsServingAndRebuilds(t *testing.T) {
	c, _, dsn := ledgerPair(t, DurabilityPreferred)
	ctx := context.Background()
	w, err := ledger.Start(ctx, ledger.Config{DSN: dsn, Writers: 2, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop() })
	waitFor(t, 20*time.Second, "20 acknowledged writes", func() bool { return w.Counts()[ledger.OK] >= 20 })
	oldPid := c.inst["db-b"].pid()
	if err := c.Signal("db-b", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The controller records the standby ineligible, stops waiting for it,
	// rejoins it, and makes it synchronous and eligible again.
	waitFor(t, 30*time.Second, "standby marked ineligible", func() bool { return !c.Status().State.StandbyEligible })
	waitFor(t, 60*time.Second, "standby rebuilt and eligible again", func() bool {
		st := c.Status()
		return st.State.StandbyEligible && st.StandbySync && c.inst["db-b"].pid() != oldPid && c.inst["db-b"].pid() != 0
	})
	n := w.Counts()[ledger.OK]
	waitFor(t, 20*time.Second, "writes after the rebuild", func() bool { return w.Counts()[ledger.OK] >= n+10 })
	ops := w.Stop()
	rep, err := ledger.Check(ctx, withPassword(c.Primary().DSN("ledger", "ledger")), "", ops)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ledger: %s", rep)
	for _, b := range rep.Breaches {
		t.Errorf("breach: %s: %+v", b.Problem, b.Op)
	}
	if st := c.Status().State; st.Primary != "db-a" || st.Epoch != 1 {
		t.Errorf("state = %+v, want db-a still primary at epoch 1 (a lost standby is no failover)", st)
	}
}

func TestLostStandbyRequiredStaysEligible(t *testing.T) {
	c := startPair(t, Config{Durability: DurabilityRequired})
	oldPid := c.inst["db-b"].pid()
	if err := c.Signal("db-b", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "standby restarted", func() bool {
		p := c.inst["db-b"].pid()
		return p != 0 && p != oldPid && c.Status().StandbySync
	})
	st := c.Status().State
	if !st.StandbyEligible || !st.SyncEnabled {
		t.Errorf("state = %+v, want the standby still eligible and synchronous in required mode", st)
	}
	if got := queryString(t, c, "db-a", "SHOW synchronous_standby_names"); got != `FIRST 1 ("db-b")` {
		t.Errorf("primary synchronous_standby_names = %q, want FIRST 1 (\"db-b\")", got)
	}
}

func TestControllerRestartRediscoversRoles(t *testing.T) {
	dir := testDir(t)
	cfg := Config{Nodes: testNodes(t, dir, 2), StateFile: filepath.Join(dir, "state.json")}
	c := startTestCluster(t, cfg)
	waitEligible(t, c)
	if err := c.inst["db-a"].exec(context.Background(), "CREATE TABLE keep (v int); INSERT INTO keep VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	// Fail over once, so that the restart has to honour epoch 2.
	if err := c.Signal("db-a", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "failover", func() bool { return c.Status().State.Primary == "db-b" })
	waitEligible(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}

	c2 := startTestCluster(t, cfg)
	if st := c2.Status().State; st.Epoch != 2 || st.Primary != "db-b" || st.Standby != "db-a" {
		t.Fatalf("after restart state = %+v, want epoch 2, db-b primary, db-a standby", st)
	}
	waitEligible(t, c2)
	if got := queryString(t, c2, "db-b", "SELECT v::text FROM keep"); got != "42" {
		t.Errorf("row after restart = %q, want 42", got)
	}
	if got := queryString(t, c2, "db-a", "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Errorf("db-a in recovery = %s after restart, want true (never promoted twice)", got)
	}
	if st := c2.Status().State; st.Epoch != 2 {
		t.Errorf("epoch after restart = %d, want 2", st.Epoch)
	}
}

func TestStandbyWithLostDataDirIsRebuilt(t *testing.T) {
	dir := testDir(t)
	cfg := Config{Nodes: testNodes(t, dir, 2), StateFile: filepath.Join(dir, "state.json")}
	c := startTestCluster(t, cfg)
	waitEligible(t, c)
	if err := c.inst["db-a"].exec(context.Background(), "CREATE TABLE keep (v int); INSERT INTO keep VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(cfg.Nodes[1].DataDir); err != nil { // the standby's disk is lost
		t.Fatal(err)
	}
	c2 := startTestCluster(t, cfg)
	waitEligible(t, c2)
	if got := queryString(t, c2, "db-b", "SELECT v::text FROM keep"); got != "7" {
		t.Errorf("rebuilt standby row = %q, want 7", got)
	}
}

func TestPrimaryThatCannotStartAfterRestartFailsOver(t *testing.T) {
	dir := testDir(t)
	cfg := Config{Nodes: testNodes(t, dir, 2), StateFile: filepath.Join(dir, "state.json")}
	c := startTestCluster(t, cfg)
	waitEligible(t, c)
	if err := c.inst["db-a"].exec(context.Background(), "CREATE TABLE keep (v int); INSERT INTO keep VALUES (9)"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The primary's control file is lost: it cannot start, and pg_rewind
	// cannot use it either, so it must come back from a base backup.
	if err := os.Remove(filepath.Join(cfg.Nodes[0].DataDir, "global", "pg_control")); err != nil {
		t.Fatal(err)
	}
	c2 := startTestCluster(t, cfg)
	waitFor(t, 30*time.Second, "failover to db-b", func() bool {
		st := c2.Status()
		return st.State.Primary == "db-b" && st.State.Epoch == 2 && st.EndpointEpoch == 2
	})
	waitEligible(t, c2)
	if got := queryString(t, c2, "db-b", "SELECT v::text FROM keep"); got != "9" {
		t.Errorf("row on new primary = %q, want 9", got)
	}
	if got := queryString(t, c2, "db-a", "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Errorf("db-a in recovery = %s, want true (rebuilt as standby)", got)
	}
}
