package backup

import (
	"context"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
	ch  chan time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(time.Duration) <-chan time.Time { return f.ch }

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	now := f.now
	f.mu.Unlock()
	f.ch <- now
}

// TestSchedulerRun drives Run with a fake clock: the first evaluation takes
// a full backup (there is none), an evaluation an incremental period later
// takes an incremental.
func TestSchedulerRun(t *testing.T) {
	e := startEnv(t, 1, false)
	clk := &fakeClock{now: time.Now(), ch: make(chan time.Time)}
	e.mgr.cfg.Clock = clk
	e.mgr.cfg.Schedule = Schedule{Full: "0 0 29 2 *", IncrementalEvery: time.Hour} // the cron never falls in the test window
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
	clk.advance(30 * time.Minute) // blocks until Run evaluates again: nothing due
	clk.advance(40 * time.Minute) // the previous evaluation has finished: an incremental is due
	waitFor(t, 60*time.Second, "incremental backup", func() bool { return len(kinds()) == 2 })
	if got := kinds(); got[0] != Full || got[1] != Incremental {
		t.Errorf("scheduled backups = %v, want [full incr]", got)
	}
}
