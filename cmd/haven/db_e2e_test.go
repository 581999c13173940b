package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/testkit"
)

// TestDatabaseEndToEnd brings up a Multi-AZ region from the real binaries
// and drives the database tier through the CLI: status, the db-failover
// drill (kill twice, freeze once) with the ledger proving zero acknowledged
// writes lost, a planned switchover, a backup, and the PITR drill.
func TestDatabaseEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Multi-AZ region: skipped with -short")
	}
	ctx := testCtx(t, 10*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{MultiAZ: true, Students: 20, Courses: 3})
	r.Up(ctx)

	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := r.Haven(ctx, args...)
		if err != nil {
			t.Fatalf("haven %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}

	var st api.DBStatus
	if err := json.Unmarshal([]byte(run("db", "status", "--json")), &st); err != nil {
		t.Fatalf("decode db status: %v", err)
	}
	if !st.MultiAZ || st.Primary == "" || st.Standby == "" || st.PrimaryZone == st.StandbyZone {
		t.Fatalf("db status = %+v, want a primary and a standby in different zones", st)
	}
	if len(st.Nodes) != 2 || st.Durability != "preferred" || st.Epoch < 1 {
		t.Fatalf("db status nodes %d, durability %q, epoch %d; want 2 nodes, preferred, epoch ≥ 1", len(st.Nodes), st.Durability, st.Epoch)
	}

	// RTO bars are wall-clock figures: the drill reports them, the test
	// asserts only correctness (targets set out of reach of a busy machine).
	loose := []string{"--rto-median-target", "60s", "--rto-max-target", "60s", "--json"}
	var rep drill.DBFailoverReport
	if err := json.Unmarshal([]byte(run(append([]string{"drill", "db-failover", "--rounds", "2", "--fault", "kill"}, loose...)...)), &rep); err != nil {
		t.Fatalf("decode drill report: %v", err)
	}
	if rep.AcknowledgedLost != 0 || rep.FailPresent != 0 || !rep.Pass || rep.Primaries != 1 || !rep.SyncStandbyStreaming || len(rep.RoundResults) != 2 {
		t.Fatalf("kill drill: lost %d, fail present %d, pass %v, primaries %d, sync streaming %v, rounds %d; reasons %v",
			rep.AcknowledgedLost, rep.FailPresent, rep.Pass, rep.Primaries, rep.SyncStandbyStreaming, len(rep.RoundResults), rep.Reasons)
	}
	if rep.OK == 0 || rep.FinalEpoch != st.Epoch+2 {
		t.Errorf("kill drill: %d acknowledged commits, final epoch %d; want commits and epoch %d", rep.OK, rep.FinalEpoch, st.Epoch+2)
	}
	checkFailoverEvents(t, run("events", "--component", "db", "--json"), st.Epoch+1, st.Epoch+2)

	rep = drill.DBFailoverReport{}
	sampling := sampleStatus(ctx, r.Client)
	freezeOut := run(append([]string{"drill", "db-failover", "--rounds", "1", "--fault", "freeze"}, loose...)...)
	checkStatusLatency(t, sampling())
	if err := json.Unmarshal([]byte(freezeOut), &rep); err != nil {
		t.Fatalf("decode drill report: %v", err)
	}
	if rep.AcknowledgedLost != 0 || !rep.Pass || len(rep.RoundResults) != 1 || !strings.HasPrefix(rep.RoundResults[0].OldRefused, "25006") {
		t.Fatalf("freeze drill: lost %d, pass %v, reasons %v, rounds %+v", rep.AcknowledgedLost, rep.Pass, rep.Reasons, rep.RoundResults)
	}

	// Planned switchover to the standby's zone, and back.
	before, err := r.Client.DBStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := run("db", "failover", "--to", before.StandbyZone)
	after, err := r.Client.DBStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Primary != before.Standby || after.Epoch != before.Epoch+1 {
		t.Fatalf("after `haven db failover --to %s` (%s): primary %s epoch %d, want %s epoch %d", before.StandbyZone, strings.TrimSpace(out), after.Primary, after.Epoch, before.Standby, before.Epoch+1)
	}

	// Rotation keeps working across the failover: the new primary got the
	// roles' passwords by replication, and a rotation now sets them there.
	var rot drill.RotationReport
	if err := json.Unmarshal([]byte(run("drill", "secret-rotation", "--rotations", "2", "--interval", "1s", "--json")), &rot); err != nil {
		t.Fatalf("decode secret-rotation report: %v", err)
	}
	if !rot.Pass || rot.Failed != 0 || rot.Completed != 2 {
		t.Fatalf("secret rotation after a switchover: pass %v, failed %d, completed %d of 2, reasons %v", rot.Pass, rot.Failed, rot.Completed, rot.Reasons)
	}

	// Backups: one on demand, listed with a restorable window, then PITR.
	run("db", "backup", "--type", "full")
	var l api.DBBackupList
	if err := json.Unmarshal([]byte(run("db", "backups", "--json")), &l); err != nil {
		t.Fatalf("decode backups: %v", err)
	}
	if len(l.Backups) == 0 || l.EarliestRestorable.IsZero() {
		t.Fatalf("backups = %+v, want at least one and a restorable window", l)
	}
	var pr drill.PITRReport
	if err := json.Unmarshal([]byte(run("drill", "pitr", "--write-for", "8s", "--lag-target", "60s", "--json")), &pr); err != nil {
		t.Fatalf("decode pitr report: %v", err)
	}
	if !pr.Pass || len(pr.Missing) != 0 || len(pr.Extra) != 0 || pr.MustHave == 0 || pr.MustNotHave == 0 {
		t.Fatalf("pitr drill: pass %v, must have %d (missing %d), must not have %d (extra %d), reasons %v",
			pr.Pass, pr.MustHave, len(pr.Missing), pr.MustNotHave, len(pr.Extra), pr.Reasons)
	}
	if rs, err := r.Client.DBRestores(ctx); err != nil || len(rs) != 0 {
		t.Errorf("restored servers left running after the drill: %v (err %v)", rs, err)
	}
	checkOneComponentKey(t, filepath.Join(r.StateDir, "daemon.log"))
}

// checkFailoverEvents asserts the event log holds a completed failover to
// each of the epochs, with its epoch, old and new primary and RTO.
func checkFailoverEvents(t *testing.T, out string, epochs ...int64) {
	t.Helper()
	var evs []api.Event
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		t.Fatalf("decode haven events --json: %v", err)
	}
	for _, want := range epochs {
		found := false
		for _, e := range evs {
			if e.Component != "db" || e.Kind != "failover-completed" {
				continue
			}
			epoch, _ := e.Attrs["epoch"].(float64)
			rto, _ := e.Attrs["rto_ms"].(float64)
			if int64(epoch) == want && rto > 0 && e.Attrs["old_primary"] != nil && e.Attrs["new_primary"] != nil {
				found = true
				t.Logf("event: %s %s %v", e.Kind, e.Message, e.Attrs)
			}
		}
		if !found {
			t.Errorf("no failover-completed event with epoch %d, old and new primary and rto_ms in %d db events", want, len(evs))
		}
	}
}

// sampleStatus asks for the status (the request `haven status --json`
// makes) every 10 ms until the returned function is called, which returns
// how long each answer took.
func sampleStatus(ctx context.Context, c *api.Client) func() []time.Duration {
	stop := make(chan struct{})
	got := make(chan []time.Duration, 1)
	go func() {
		var lat []time.Duration
		for {
			select {
			case <-stop:
				got <- lat
				return
			case <-time.After(10 * time.Millisecond):
			}
			t0 := time.Now()
			if _, err := c.Status(ctx); err == nil {
				lat = append(lat, time.Since(t0))
			}
		}
	}()
	return func() []time.Duration { close(stop); return <-got }
}

// checkStatusLatency is the acceptance that the status answers within 50 ms
// during a failover. One sample can be slow on a loaded 2-core machine
// whatever the daemon does (the sampler or the daemon descheduled for a
// moment), so it asserts on many: at least 95% within 50 ms, and none as
// slow as a failover (a status that waited on the controller took as long
// as the failover, seconds).
func checkStatusLatency(t *testing.T, lat []time.Duration) {
	t.Helper()
	if len(lat) < 50 {
		t.Fatalf("only %d status samples during the freeze drill", len(lat))
	}
	slices.Sort(lat)
	within := 0
	for _, d := range lat {
		if d <= 50*time.Millisecond {
			within++
		}
	}
	p95 := lat[len(lat)*95/100]
	t.Logf("status during the freeze drill: %d samples, median %v, p95 %v, max %v, %d within 50 ms", len(lat), lat[len(lat)/2], p95, lat[len(lat)-1], within)
	if within*100 < len(lat)*95 || lat[len(lat)-1] > time.Second {
		t.Errorf("status during a freeze failover: %d of %d within 50 ms (want ≥ 95%%), max %v (want < 1s)", within, len(lat), lat[len(lat)-1])
	}
}

// checkOneComponentKey asserts that no line of the daemon's log carries
// the component key twice.
func checkOneComponentKey(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	bad := 0
	for _, l := range lines {
		if strings.Count(l, `"component":`) > 1 {
			if bad++; bad <= 3 {
				t.Errorf("daemon.log line with two component keys: %s", l)
			}
		}
	}
	if len(lines) < 20 || bad > 0 {
		t.Errorf("%d of %d daemon.log lines carry duplicate component keys", bad, len(lines))
	}
}
