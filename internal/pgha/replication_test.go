package pgha

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// startPair starts a two-zone cluster and waits until the standby is
// synchronous and eligible.
func startPair(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	dir := testDir(t)
	cfg.Nodes = testNodes(t, dir, 2)
	cfg.StateFile = filepath.Join(dir, "state.json")
	c := startTestCluster(t, cfg)
	waitEligible(t, c)
	return c
}

func waitEligible(t testing.TB, c *Cluster) {
	t.Helper()
	waitFor(t, 60*time.Second, "standby synchronous and eligible", func() bool {
		st := c.Status()
		return st.State.StandbyEligible && st.State.SyncEnabled && st.StandbySync
	})
}

func queryString(t *testing.T, c *Cluster, node, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.inst[node].connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
		t.Fatalf("%s on %s: %v", sql, node, err)
	}
	return v
}

func TestStandbyStreamsSynchronously(t *testing.T) {
	c := startPair(t, Config{})
	if got := queryString(t, c, "db-a", "SHOW synchronous_standby_names"); got != `FIRST 1 ("db-b")` {
		t.Errorf("primary synchronous_standby_names = %q, want FIRST 1 (\"db-b\")", got)
	}
	if got := queryString(t, c, "db-b", "SHOW synchronous_standby_names"); got != "" {
		t.Errorf("standby synchronous_standby_names = %q, want '' (a promoted standby must not hang)", got)
	}
	if got := queryString(t, c, "db-b", "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Errorf("standby in recovery = %s, want true", got)
	}
	ctx := context.Background()
	if err := c.inst["db-a"].exec(ctx, "CREATE TABLE r (v text); INSERT INTO r VALUES ('synced')"); err != nil {
		t.Fatal(err)
	}
	// A synchronous commit with remote_apply would be visible at once; with
	// "on" it is durable on the standby, so poll briefly for replay.
	waitFor(t, 10*time.Second, "row replayed on standby", func() bool {
		c2, err := c.inst["db-b"].connect(ctx)
		if err != nil {
			return false
		}
		defer c2.Close(ctx)
		var v string
		return c2.QueryRow(ctx, "SELECT v FROM r").Scan(&v) == nil && v == "synced"
	})
	st := c.Status()
	roles := map[string]string{}
	for _, n := range st.Nodes {
		roles[n.Name] = n.Role
	}
	if roles["db-a"] != "primary" || roles["db-b"] != "standby" {
		t.Errorf("roles = %v, want db-a primary, db-b standby", roles)
	}
	// The snapshot carries the primary's view of the standby and its
	// client connections, for the metrics endpoint: an open client shows.
	client, err := c.inst["db-a"].connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(ctx)
	waitFor(t, 10*time.Second, "the snapshot's replication row and connection count", func() bool {
		st := c.Status()
		return st.Replication != nil && st.Replication.Sync == "sync" && st.Replication.State == "streaming" && st.Connections >= 1
	})
	if st := c.Status(); st.Replication.LagBytes < 0 || st.Replication.LagSeconds < 0 || st.Failovers != 0 || st.Switchovers != 0 {
		t.Errorf("status %+v %+v: want non-negative lag and no failover or switchover", st, *st.Replication)
	}
}
