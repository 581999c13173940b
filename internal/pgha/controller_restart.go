package pgha

import (
	"context"
	"fmt"
)

// RestartController is a failpoint for drills: it crashes the failover
// controller alone and starts a fresh one, while every PostgreSQL server
// keeps running. The running control loop is cancelled wherever it is
// (an in-flight plan stops at its next context-aware step, e.g. during
// pg_promote, and never reaches the steps after it), background rejoins
// are cancelled, and all in-memory knowledge is dropped: the new loop
// starts from the persisted state file and what it observes on the nodes,
// exactly as a restarted daemon would, except that the servers were not
// restarted with it. It returns the epoch of the state file the new loop
// starts from.
func (c *Cluster) RestartController(ctx context.Context) (uint64, error) {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	st, ok, err := loadState(c.cfg.StateFile)
	if err != nil {
		return 0, fmt.Errorf("restart controller: %w", err)
	}
	if !ok {
		return 0, fmt.Errorf("restart controller: no state file %s", c.cfg.StateFile)
	}
	st.Durability = c.cfg.Durability
	c.state = st
	c.endpointEpoch = 0 // unknown to a fresh controller: it repoints once the primary answers
	c.rebuilding = map[string]bool{}
	c.missing, c.failures = 0, 0
	c.lastObs, c.lastPlan, c.lastErr = Observed{}, "", ""
	for _, p := range c.probe {
		p.reset()
	}
	c.publish()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Add(1)
	go c.loop(runCtx)
	c.log.Warn("failover controller restarted", "epoch", st.Epoch, "primary", st.Primary)
	c.emit(Event{Kind: EventControllerRestarted, Node: st.Primary, Epoch: st.Epoch,
		Message: fmt.Sprintf("failover controller restarted from the persisted epoch %d (primary %s)", st.Epoch, st.Primary)})
	return st.Epoch, nil
}
