package backup

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/pgha/ledger"
)

func TestPITRRestore(t *testing.T) {
	e := startEnv(t, 1, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lo := netip.MustParseAddr("127.0.0.1")
	live := e.cluster.Primary()

	res := pitrCheck(t, ctx, e, e.appDSN(), 3, 4*time.Second, filepath.Join(e.dir, "pitr"))
	res.check(t, "pitr")
	committed, unknown := 0, 0
	for _, op := range res.ops {
		switch op.Outcome {
		case ledger.OK:
			committed++
		case ledger.Unknown:
			unknown++
		}
	}

	// The live server is untouched: still the primary, every acknowledged
	// row there, and it still takes writes.
	conn := connect(t, e.appDSN())
	var n int
	var rec bool
	if err := conn.QueryRow(ctx, "SELECT count(*), pg_is_in_recovery() FROM pitr_ledger").Scan(&n, &rec); err != nil {
		t.Fatal(err)
	}
	if n < committed || n > committed+unknown || rec || e.cluster.Primary().Name != live.Name {
		t.Errorf("live: %d rows (want %d acknowledged + up to %d unknown), in recovery %v, primary %s (want %s)", n, committed, unknown, rec, e.cluster.Primary().Name, live.Name)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO pitr_ledger (id, writer) VALUES ('after-restore', 99)"); err != nil {
		t.Errorf("live primary refuses writes after the restore: %v", err)
	}

	// A restore before the first backup is refused with a clear error.
	_, err := e.mgr.Restore(ctx, RestoreOptions{TargetTime: time.Now().Add(-time.Hour), DataDir: filepath.Join(e.dir, "early"), Port: freePort(t, lo)})
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
