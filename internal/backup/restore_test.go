package backup

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPITRRestore(t *testing.T) {
	e := startEnv(t, 1, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lo := netip.MustParseAddr("127.0.0.1")
	live := e.cluster.Primary()

	rep, err := e.mgr.PITRCheck(ctx, PITROptions{DSN: e.appDSN(), Database: "app", Writers: 3, WriteFor: 4 * time.Second,
		DataDir: filepath.Join(e.dir, "pitr"), ListenAddr: lo, Port: freePort(t, lo)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pitr report: %+v", rep)
	if !rep.Pass || rep.MustHave == 0 || rep.MustNotHave == 0 {
		t.Errorf("pitr: pass=%v must_have=%d must_not_have=%d missing=%v extra=%v; want pass with rows on both sides of T",
			rep.Pass, rep.MustHave, rep.MustNotHave, rep.Missing, rep.Extra)
	}
	if rep.Restored < rep.MustHave || rep.Restored > rep.MustHave+rep.InFlight {
		t.Errorf("restored %d rows, want between %d and %d", rep.Restored, rep.MustHave, rep.MustHave+rep.InFlight)
	}

	// The live server is untouched: still the primary, every acknowledged
	// row there, and it still takes writes.
	conn := connect(t, e.appDSN())
	var n int
	var rec bool
	if err := conn.QueryRow(ctx, "SELECT count(*), pg_is_in_recovery() FROM pitr_ledger").Scan(&n, &rec); err != nil {
		t.Fatal(err)
	}
	if n < rep.Committed || n > rep.Committed+rep.Unknown || rec || e.cluster.Primary().Name != live.Name {
		t.Errorf("live: %d rows (want %d acknowledged + up to %d unknown), in recovery %v, primary %s (want %s)", n, rep.Committed, rep.Unknown, rec, e.cluster.Primary().Name, live.Name)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO pitr_ledger (writer, stamp) VALUES (99, now())"); err != nil {
		t.Errorf("live primary refuses writes after the restore: %v", err)
	}

	// A restore before the first backup is refused with a clear error.
	_, err = e.mgr.Restore(ctx, RestoreOptions{TargetTime: time.Now().Add(-time.Hour), DataDir: filepath.Join(e.dir, "early"), Port: freePort(t, lo)})
	if !errors.Is(err, ErrBeforeFirstBackup) {
		t.Errorf("restore an hour back: err = %v, want ErrBeforeFirstBackup", err)
	}
	// So is one after the latest restorable time.
	_, err = e.mgr.Restore(ctx, RestoreOptions{TargetTime: time.Now().Add(time.Hour), DataDir: filepath.Join(e.dir, "late"), Port: freePort(t, lo)})
	if !errors.Is(err, ErrAfterLatestRestorable) {
		t.Errorf("restore an hour ahead: err = %v, want ErrAfterLatestRestorable", err)
	}

	// Restore to the latest restorable time: the server is detached from
	// the live cluster (no archiving, no synchronous standbys) and writable.
	l, err := e.mgr.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := e.mgr.Restore(ctx, RestoreOptions{TargetTime: l.LatestRestorable, DataDir: filepath.Join(e.dir, "latest"), ListenAddr: lo, Port: freePort(t, lo)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	rc := connect(t, srv.AdminDSN())
	var archiveMode, syncNames string
	if err := rc.QueryRow(ctx, "SELECT current_setting('archive_mode'), current_setting('synchronous_standby_names'), pg_is_in_recovery()").Scan(&archiveMode, &syncNames, &rec); err != nil {
		t.Fatal(err)
	}
	if archiveMode != "off" || syncNames != "" || rec {
		t.Errorf("restored server: archive_mode=%q synchronous_standby_names=%q in_recovery=%v; want off, '', false", archiveMode, syncNames, rec)
	}
	if _, err := rc.Exec(ctx, "CREATE TABLE restored_ok (id int)"); err != nil {
		t.Errorf("restored server refuses writes (a hanging commit would time out here): %v", err)
	}
	if srv.LastReplayed.After(l.LatestRestorable) {
		t.Errorf("last replayed commit %s after target %s", srv.LastReplayed, l.LatestRestorable)
	}
	pid := srv.Pid()
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + itoa(pid)); err == nil && srv.Pid() != 0 {
		t.Errorf("restored postmaster %d still running after Stop", pid)
	}
	// Nothing the restored servers did reached the repository: their
	// promotions made timeline 2, whose history file must not be archived.
	matches, _ := filepath.Glob(filepath.Join(e.mgr.cfg.RepoPath, "archive", "test", "*", "00000002.history*"))
	if len(matches) != 0 {
		t.Errorf("restored server archived into the live repository: %v", matches)
	}
}

func TestClassify(t *testing.T) {
	T := time.Date(2025, 1, 5, 3, 0, 0, 0, time.UTC)
	ms := func(d int) time.Time { return T.Add(time.Duration(d) * time.Millisecond) }
	rows := []ledgerRow{
		{id: 1, stamp: ms(-10), ack: ms(-9)},               // must be restored
		{id: 2, stamp: ms(-1), ack: ms(0)},                 // acknowledged exactly at T: must be restored
		{id: 3, stamp: ms(-1), ack: ms(1)},                 // in flight at T
		{id: 4, stamp: ms(1), ack: ms(2)},                  // must not be restored
		{id: 5, stamp: ms(-5), ack: ms(-4), unknown: true}, // outcome unknown
	}
	rep := classify(PITRReport{}, rows, map[int64]bool{1: true, 2: true, 3: true}, T)
	if !rep.Pass || rep.MustHave != 2 || rep.MustNotHave != 1 || rep.InFlight != 2 || rep.Committed != 4 {
		t.Errorf("classify = %+v, want pass, 2 must-have, 1 must-not-have, 2 in flight, 4 committed", rep)
	}
	rep = classify(PITRReport{}, rows, map[int64]bool{2: true, 4: true}, T)
	if rep.Pass || len(rep.Missing) != 1 || rep.Missing[0] != 1 || len(rep.Extra) != 1 || rep.Extra[0] != 4 {
		t.Errorf("classify with row 1 lost and row 4 extra = %+v, want missing [1] extra [4]", rep)
	}
}
