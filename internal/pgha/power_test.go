package pgha

import (
	"context"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/pgha/ledger"
	"github.com/haven-platform/haven/internal/testkit"
)

// TestZonePowerLoss cuts the power of the primary's zone under writers:
// the primary's processes die, the standby is promoted, nothing restarts
// the old primary while its zone is off (in durability preferred the new
// primary stops waiting for it), no acknowledged write is lost; when the
// power returns the old primary rejoins as a synchronous standby.
func TestZonePowerLoss(t *testing.T) {
	c, _, dsn := ledgerPair(t, DurabilityPreferred)
	ctx := context.Background()
	w, err := ledger.Start(ctx, ledger.Config{DSN: dsn, Writers: 4, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop() })
	waitFor(t, 20*time.Second, "50 acknowledged writes", func() bool { return w.Counts()[ledger.OK] >= 50 })

	old := c.Primary()
	pid := c.inst[old.Name].pid()
	nodes, err := c.SetZonePower(old.Zone, false)
	if err != nil || len(nodes) != 1 || nodes[0] != old.Name {
		t.Fatalf("SetZonePower(%s, off) = %v, %v; want [%s]", old.Zone, nodes, err, old.Name)
	}
	waitFor(t, 30*time.Second, "failover away from the zone without power", func() bool {
		st := c.Status()
		return st.State.Primary != old.Name && st.EndpointEpoch == st.State.Epoch
	})
	if pidAlive(pid) {
		t.Errorf("the primary (pid %d) of the zone without power is still alive", pid)
	}
	// Preferred: the new primary stops waiting for the lost standby, and
	// commits go on; the old node stays down the whole time.
	waitFor(t, 30*time.Second, "the standby recorded ineligible", func() bool {
		st := c.Status()
		return !st.State.StandbyEligible && !st.State.SyncEnabled
	})
	n := w.Counts()[ledger.OK]
	waitFor(t, 20*time.Second, "writes acknowledged by the new primary", func() bool { return w.Counts()[ledger.OK] >= n+50 })
	for range 10 {
		if p := c.inst[old.Name].pid(); p != 0 {
			t.Fatalf("%s runs again (pid %d) while its zone has no power", old.Name, p)
		}
		for _, ns := range c.Status().Nodes {
			if ns.Name == old.Name && ns.Health != "no power" {
				t.Fatalf("status of %s: health %q, want \"no power\"", old.Name, ns.Health)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	if _, err := c.SetZonePower(old.Zone, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "the old primary back as a synchronous, eligible standby", func() bool {
		st := c.Status()
		return st.State.Standby == old.Name && st.State.StandbyEligible && st.StandbySync
	})
	ops := w.Stop()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := ledger.Check(cctx, withPassword(c.Primary().DSN("ledger", "ledger")), "", ops)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ledger: %s", rep)
	if rep.AcknowledgedLost != 0 || rep.FailPresent != 0 {
		t.Errorf("ledger breaches: %+v", rep.Breaches)
	}
}
