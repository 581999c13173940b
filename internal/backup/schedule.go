package backup

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/haven-platform/haven/internal/spec"
)

// Due is the backup the schedule asks for at now, or "" for none. It is
// pure: lastFull and lastAny are the stop times of the newest full and of
// the newest backup of any kind (zero when there is none), lastCheck the
// previous evaluation (zero the first time).
//   - No full backup yet: Full.
//   - A minute of the full cron in (lastCheck, now]: Full.
//   - The newest backup at least incrEvery old (incrEvery > 0): Incremental.
func Due(now, lastCheck, lastFull, lastAny time.Time, full spec.Cron, incrEvery time.Duration) Kind {
	if lastFull.IsZero() {
		return Full
	}
	if lastCheck.IsZero() {
		lastCheck = now.Add(-time.Minute)
	}
	if full.DueBetween(lastCheck, now) && lastFull.Before(now.Truncate(time.Minute)) {
		return Full
	}
	if incrEvery > 0 && !now.Before(lastAny.Add(incrEvery)) {
		return Incremental
	}
	return ""
}

// Run is the scheduler loop: it evaluates the schedule every minute (and at
// once), takes the backup Due asks for and expires old backups after each
// full backup. It returns when ctx ends. Errors are logged and retried at
// the next evaluation.
func (m *Manager) Run(ctx context.Context) {
	full := m.cfg.Schedule.Full
	var lastCheck time.Time
	for {
		now := m.cfg.Clock.Now()
		m.scheduleOnce(ctx, now, lastCheck, full)
		lastCheck = now
		wait := now.Truncate(time.Minute).Add(time.Minute).Sub(m.cfg.Clock.Now())
		if wait < time.Second {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-m.cfg.Clock.After(wait):
		}
	}
}

func (m *Manager) scheduleOnce(ctx context.Context, now, lastCheck time.Time, full spec.Cron) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("backup scheduler panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	bs, err := m.backups(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("scheduled backup: list backups", "err", err)
		}
		return
	}
	var lastFull, lastAny time.Time
	for _, b := range bs {
		if b.Type == Full && b.Stop.After(lastFull) {
			lastFull = b.Stop
		}
		if b.Stop.After(lastAny) {
			lastAny = b.Stop
		}
	}
	kind := Due(now, lastCheck, lastFull, lastAny, full, m.cfg.Schedule.IncrementalEvery)
	if kind == "" {
		return
	}
	m.log.Info("scheduled backup", "type", kind)
	if _, err := m.Backup(ctx, kind, nil); err != nil {
		if ctx.Err() == nil {
			m.log.Error("scheduled backup failed", "type", kind, "err", err)
		}
		return
	}
	if kind == Full {
		if err := m.Expire(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("expire backups", "err", err)
		}
	}
}
