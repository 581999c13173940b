package backup

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/pgha/ledger"
	"github.com/haven-platform/haven/internal/testkit"
)

// pitrResult is what pitrCheck saw.
type pitrResult struct {
	report ledger.Report // of the history restated at the target (ledger.AtTime)
	ops    []ledger.Op
	target time.Time
}

// pitrCheck writes ledger rows through dsn for writeFor, picks T half way,
// waits for the archive to pass T, restores to T into dataDir and runs the
// one restore check (ledger.CheckRestore) on the restored server. The
// restored server is stopped before it returns.
func pitrCheck(t *testing.T, ctx context.Context, e *env, dsn string, writers int, writeFor time.Duration, dataDir string) pitrResult {
	t.Helper()
	table := "pitr_ledger"
	if err := ledger.Setup(ctx, dsn, table); err != nil {
		t.Fatal(err)
	}
	if l, err := e.mgr.List(ctx); err != nil {
		t.Fatal(err)
	} else if len(l.Backups) == 0 {
		if _, err := e.mgr.Backup(ctx, Full, nil); err != nil {
			t.Fatalf("first backup: %v", err)
		}
	}
	w, err := ledger.Start(ctx, ledger.Config{DSN: dsn, Writers: writers, Table: table, Interval: 10 * time.Millisecond, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	target := begin.Add(writeFor / 2).Truncate(time.Microsecond)
	time.Sleep(writeFor)
	ops := w.Stop()
	waitFor(t, 60*time.Second, "the archive to pass T", func() bool {
		l, err := e.mgr.List(ctx)
		return err == nil && !l.LatestRestorable.Before(target)
	})
	lo := netip.MustParseAddr("127.0.0.1")
	srv, err := e.mgr.Restore(ctx, RestoreOptions{TargetTime: target, DataDir: dataDir, ListenAddr: lo, Port: freePort(t, lo)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.WithoutCancel(ctx))
	rep, err := ledger.CheckRestore(ctx, srv.DSN("app", "app")+" password="+appPassword, table, ops, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore to %s from %s: %s", target.Format(time.RFC3339Nano), srv.Backup, rep)
	return pitrResult{report: rep, ops: ops, target: target}
}

// check fails t unless the restore holds exactly the rows committed by T,
// with rows on both sides of T.
func (r pitrResult) check(t *testing.T, what string) {
	t.Helper()
	rep := r.report
	if len(rep.Breaches) != 0 || rep.OK == 0 || rep.Fail == 0 {
		for i, b := range rep.Breaches {
			if i < 10 {
				t.Errorf("%s: %s: %+v", what, b.Problem, b.Op)
			}
		}
		t.Errorf("%s: %s; want no breach and rows on both sides of T", what, rep)
	}
}

func (r pitrResult) String() string { return fmt.Sprint(r.report) }
