package backup

import (
	"context"
	"testing"
	"time"
)

func TestBackupFullIncrementalAndList(t *testing.T) {
	e := startEnv(t, 1, true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := connect(t, e.appDSN())
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id serial primary key, v text)"); err != nil {
		t.Fatal(err)
	}
	var progress int
	full, err := e.mgr.Backup(ctx, Full, func(Progress) { progress++ })
	if err != nil {
		t.Fatal(err)
	}
	if full.Type != Full || progress == 0 {
		t.Errorf("full backup = %+v with %d progress reports, want type full and progress", full, progress)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 1000)"); err != nil {
		t.Fatal(err)
	}
	incr, err := e.mgr.Backup(ctx, Incremental, nil)
	if err != nil {
		t.Fatal(err)
	}
	if incr.Type != Incremental || incr.Prior != full.Label {
		t.Errorf("incremental = %+v, want type incr with prior %s", incr, full.Label)
	}
	// Keep writing: the latest restorable time must follow within seconds.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				conn.Exec(ctx, "INSERT INTO t (v) VALUES ('y')")
			}
		}
	}()
	defer close(stop)
	time.Sleep(2 * time.Second)
	var l Listing
	waitFor(t, 20*time.Second, "latest restorable within 10s of now", func() bool {
		var err error
		l, err = e.mgr.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return time.Since(l.LatestRestorable) < 10*time.Second
	})
	if len(l.Backups) != 2 || l.Backups[0].Label != full.Label || l.Backups[1].Label != incr.Label {
		t.Errorf("backups = %+v, want [%s %s]", l.Backups, full.Label, incr.Label)
	}
	// Every List publishes the window for the metrics endpoint.
	if r := e.mgr.Restorable(); r.Err != "" || r.CheckedAt.IsZero() || r.Latest.Before(l.LatestRestorable) || !r.Earliest.Equal(l.EarliestRestorable) {
		t.Errorf("Restorable() = %+v after List found %s .. %s", r, l.EarliestRestorable, l.LatestRestorable)
	}
	t.Logf("listing: %+v lag %s ticker %+v", l, time.Since(l.LatestRestorable), e.mgr.ArchiveStatus())
}
