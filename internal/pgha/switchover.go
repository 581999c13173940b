package pgha

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Switchover makes the standby in toZone the primary without losing an
// acknowledged write: it waits for the standby to be synchronous and caught
// up, pauses the endpoint (closing every client connection, holding new
// ones), shuts the old primary down cleanly (its WAL senders ship every
// record to the standby first), waits until the standby has replayed the
// old primary's shutdown checkpoint, promotes it, persists the new epoch and
// repoints the endpoint. The old primary then rejoins as a standby.
//
// The control loop runs it, between two probe rounds: Status keeps
// answering from the loop's snapshots meanwhile.
func (c *Cluster) Switchover(ctx context.Context, toZone string) error {
	c.runMu.Lock()
	running := c.cancel != nil
	c.runMu.Unlock()
	if !running {
		return fmt.Errorf("switchover to zone %q: the database controller is not running", toZone)
	}
	req := switchoverReq{ctx: ctx, zone: toZone, done: make(chan error, 1)}
	select {
	case c.switchovers <- req:
	case <-ctx.Done():
		return fmt.Errorf("switchover to zone %q: %w", toZone, ctx.Err())
	}
	return <-req.done // the loop stops at the next context-aware step when ctx ends
}

// switchover is Switchover on the loop's goroutine.
func (c *Cluster) switchover(ctx context.Context, toZone string) error {
	defer c.publish()
	var target string
	for _, n := range c.cfg.Nodes {
		if n.Zone == toZone {
			target = n.Name
		}
	}
	switch {
	case target == "":
		return fmt.Errorf("switchover to zone %q: no database node in that zone", toZone)
	case target == c.state.Primary:
		return nil
	case target != c.state.Standby || !c.state.StandbyEligible || c.rebuilding[target]:
		return fmt.Errorf("switchover to %s: %w", target, ErrNotEligible)
	}
	oldName := c.state.Primary
	old, nw := c.inst[oldName], c.inst[target]

	// 1. The standby is synchronous and has replayed everything.
	if err := c.waitCaughtUp(ctx, old, target); err != nil {
		return fmt.Errorf("switchover to %s: %w", target, err)
	}
	// 2. No new writes reach the old primary.
	if c.cfg.Endpoint != nil {
		c.cfg.Endpoint.Pause()
	}
	c.endpointEpoch = 0 // the control loop repoints if we fail from here on
	c.publish()
	resumed := false
	defer func() {
		if !resumed {
			c.log.Warn("switchover aborted; the control loop restores service", "epoch", c.state.Epoch)
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}()
	// 3. Clean shutdown: the old primary ships its WAL, then stops.
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err := old.stop(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("switchover: stop %s: %w", oldName, err)
	}
	c.probe[oldName].reset()
	out, err := old.tool(ctx, "pg_controldata", "-D", old.node.DataDir)
	if err != nil {
		return fmt.Errorf("switchover: %w", err)
	}
	ckpt := ""
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Latest checkpoint location" {
			ckpt = strings.TrimSpace(v)
		}
	}
	if ckpt == "" {
		return fmt.Errorf("switchover: no checkpoint location in pg_controldata output of %s", oldName)
	}
	// 4. The standby has replayed the shutdown checkpoint: it has every commit.
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		var done bool
		conn, err := nw.connect(wctx)
		if err == nil {
			err = conn.QueryRow(wctx, "SELECT pg_last_wal_replay_lsn() > $1::pg_lsn", ckpt).Scan(&done)
			conn.Close(wctx)
		}
		if err == nil && done {
			break
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("switchover: %s did not replay %s's shutdown checkpoint %s: %w (last error %v)", target, oldName, ckpt, wctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// 5. Promote, persist, repoint: the same order as a failover.
	next := State{Epoch: c.state.Epoch + 1, Primary: target, Standby: oldName, Durability: c.state.Durability}
	syncStandby := ""
	if c.state.Durability == DurabilityRequired {
		syncStandby, next.SyncEnabled = oldName, true
	}
	if err := c.promote(ctx, target, syncStandby); err != nil {
		return fmt.Errorf("switchover: promote %s: %w", target, err)
	}
	if err := saveState(c.cfg.StateFile, next); err != nil {
		return fmt.Errorf("switchover: %w", err)
	}
	c.state = next
	c.missing = 0
	c.repoint(target, next.Epoch)
	resumed = true
	c.log.Info("switchover done", "epoch", next.Epoch, "primary", target, "old_primary", oldName)
	c.switchoversDone.Add(1)
	c.emit(Event{Kind: EventSwitchoverCompleted, Node: target, Epoch: next.Epoch, OldPrimary: oldName, NewPrimary: target,
		Message: fmt.Sprintf("planned switchover: %s is the primary of epoch %d (was %s)", target, next.Epoch, oldName)})
	// 6. The control loop rejoins the old primary as a standby.
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// waitCaughtUp waits until primary reports standby synchronous with its
// replay position at the primary's current WAL position.
func (c *Cluster) waitCaughtUp(ctx context.Context, primary *instance, standby string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		var ok bool
		conn, err := primary.connect(ctx)
		if err == nil {
			err = conn.QueryRow(ctx, `SELECT coalesce(bool_or(state = 'streaming' AND sync_state = 'sync' AND replay_lsn >= pg_current_wal_lsn()), false)
				FROM pg_stat_replication WHERE application_name = $1`, standby).Scan(&ok)
			conn.Close(ctx)
		}
		if err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to catch up: %w (last error %v)", standby, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
