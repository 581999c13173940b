package backup

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestArchiveAcrossFailover kills the primary of a pair: the standby is
// promoted (timeline 2), archiving continues from it, backups are taken
// from it, and a point-in-time restore after the failover replays the full
// backup taken on timeline 1 and the WAL of both timelines.
func TestArchiveAcrossFailover(t *testing.T) {
	e := startEnv(t, 2, true)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := e.mgr.Backup(ctx, Full, nil); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, e.appDSN())
	if _, err := conn.Exec(ctx, "CREATE TABLE pre (id int); INSERT INTO pre SELECT generate_series(1, 100)"); err != nil {
		t.Fatal(err)
	}
	old := e.cluster.Primary()
	waitFor(t, 30*time.Second, "standby in sync", func() bool { return e.cluster.Status().StandbySync })
	var pid int
	for _, n := range e.cluster.Status().Nodes {
		if n.Name == old.Name {
			pid = n.Pid
		}
	}
	if pid == 0 {
		t.Fatal("no primary pid")
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "failover", func() bool { return e.cluster.Primary().Name != old.Name })
	t.Logf("failed over from %s to %s", old.Name, e.cluster.Primary().Name)

	// The ledger drill on the new primary: T falls on timeline 2.
	pitrCheck(t, ctx, e, e.appDSN(), 2, 3*time.Second, filepath.Join(e.dir, "pitr")).check(t, "pitr after failover")
	l, err := e.mgr.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.WALMax, "00000002") {
		t.Errorf("newest archived segment %s, want one on timeline 2 (archived by the new primary)", l.WALMax)
	}
	// The restore chain follows the history from the timeline 1 backup
	// into timeline 2 (the PITR check restored to a time on it).
	if !strings.HasPrefix(l.ChainEnd, "00000002") {
		t.Errorf("restore chain ends at %s, want a segment on timeline 2", l.ChainEnd)
	}
	// Archiving from the new primary is healthy: its newest attempt
	// succeeded (failures from before the stanza existed, or a retried
	// push around the promotion, are allowed) and it is on timeline 2.
	var st ArchiveStatus
	deadline := time.Now().Add(15 * time.Second)
	for {
		st = e.mgr.ArchiveStatus()
		if st.Primary == e.cluster.Primary().Name && !st.Failing && strings.HasPrefix(st.LastArchivedWAL, "00000002") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("archive status %+v, want the new primary %s archiving timeline 2", st, e.cluster.Primary().Name)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A backup after the failover is taken from the new primary.
	b, err := e.mgr.Backup(ctx, Incremental, nil)
	if err != nil {
		t.Fatalf("incremental backup after failover: %v", err)
	}
	if !strings.HasPrefix(b.WALStart, "00000002") {
		t.Errorf("backup after failover starts at WAL %s, want timeline 2", b.WALStart)
	}
}
