package backup

import (
	"context"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/spec"
)

// TestSchedulerRun drives Run with a fake clock: the first evaluation takes
// a full backup (there is none), an evaluation an incremental period later
// takes an incremental.
func TestSchedulerRun(t *testing.T) {
	e := startEnv(t, 1, false)
	clk := clock.NewFake(time.Now())
	e.mgr.cfg.Clock = clk
	e.mgr.cfg.Schedule = Schedule{Full: spec.MustCron("0 0 29 2 *"), IncrementalEvery: time.Hour} // the cron never falls in the test window
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.mgr.Run(runCtx) }()
	defer func() { stop(); <-done }()

	kinds := func() []Kind {
		l, err := e.mgr.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var k []Kind
		for _, b := range l.Backups {
			k = append(k, b.Type)
		}
		return k
	}
	waitFor(t, 60*time.Second, "first full backup", func() bool { return len(kinds()) == 1 })
	// Each Advance waits until Run is parked on the clock, so each is one evaluation.
	if !clk.BlockUntil(1, 30*time.Second) {
		t.Fatal("the scheduler never waited on the clock")
	}
	clk.Advance(30 * time.Minute) // nothing due
	for clk.Waiters() != 0 {      // until Run has taken the tick
		time.Sleep(time.Millisecond)
	}
	if !clk.BlockUntil(1, 30*time.Second) {
		t.Fatal("the scheduler did not wait on the clock again")
	}
	clk.Advance(40 * time.Minute) // an incremental is due
	waitFor(t, 60*time.Second, "incremental backup", func() bool { return len(kinds()) == 2 })
	if got := kinds(); got[0] != Full || got[1] != Incremental {
		t.Errorf("scheduled backups = %v, want [full incr]", got)
	}
}
