package pgha

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// The control loop is the only goroutine that changes the controller's
// state (State, the endpoint's epoch, the rebuilding set, the probes).
// Switchovers and finished rejoins reach it as messages, so no lock is ever
// held across a probe or an action; readers (Status, Primary) read the
// snapshot the loop publishes after every change and never wait on it.

// switchoverReq asks the loop for a planned switchover.
type switchoverReq struct {
	ctx  context.Context
	zone string
	done chan error
}

// rejoinResult is a background rejoin that finished.
type rejoinResult struct {
	node, primary string
	fresh         bool
	err           error
}

func (c *Cluster) loop(ctx context.Context) {
	defer c.wg.Done()
	for {
		c.safeTick(ctx)
		wait := c.cfg.ProbeInterval
		for i := 0; i < c.failures && wait < 5*time.Second; i++ {
			wait *= 2
		}
		var primaryExit <-chan struct{}
		if c.failures == 0 && c.inst[c.state.Primary].running() {
			// Wake at once when the primary's postmaster exits.
			primaryExit = c.inst[c.state.Primary].exited()
		}
		select {
		case <-ctx.Done():
			return
		case <-c.cfg.Clock.After(wait):
		case <-primaryExit:
		case <-c.wake:
		case r := <-c.rejoined:
			c.finishRejoin(r)
		case req := <-c.switchovers:
			req.done <- c.switchover(req.ctx, req.zone)
		}
	}
}

func (c *Cluster) safeTick(ctx context.Context) {
	defer c.publish()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("control loop panic", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	c.lastObs = c.observe(ctx)
	plan := Decide(c.lastObs, c.state)
	if len(plan.Steps) == 0 {
		return
	}
	c.lastPlan = plan.String()
	c.log.Info("executing plan", "plan", c.lastPlan, "epoch", c.state.Epoch)
	if err := c.execute(ctx, plan); err != nil {
		c.failures++
		c.lastErr = err.Error()
		c.log.Error("plan failed", "err", err, "attempt", c.failures)
		c.emit(Event{Kind: EventPlanFailed, Node: c.state.Primary, Epoch: c.state.Epoch, Message: err.Error()})
		return
	}
	c.failures = 0
	c.lastErr = ""
}

// observe probes every node.
func (c *Cluster) observe(ctx context.Context) Observed {
	o := Observed{Nodes: map[string]NodeObs{}, EndpointEpoch: c.endpointEpoch}
	for name, p := range c.probe {
		if c.zoneOff(c.nodes[name].Zone) {
			// No power: nothing runs there, and the probe would only wait.
			// Failing since the first round without power (the failover's
			// RTO counts from there).
			if p.failingSince.IsZero() {
				p.failingSince = p.now()
			}
			p.close()
			p.failures, p.repl, p.timeline = p.threshold, nil, 0
			o.Nodes[name] = NodeObs{Health: HealthDead, Off: true}
			continue
		}
		if c.rebuilding[name] {
			o.Nodes[name] = NodeObs{Rebuilding: true, Health: HealthUnknown}
			continue
		}
		o.Nodes[name] = p.run(ctx)
	}
	if c.state.Standby == "" {
		return o
	}
	pr, sb := o.Nodes[c.state.Primary], o.Nodes[c.state.Standby]
	found := false
	pp, sp := c.probe[c.state.Primary], c.probe[c.state.Standby]
	if pr.answering() {
		o.Connections = pp.connections
	}
	for _, r := range pp.repl {
		if r.app == c.state.Standby {
			o.Replication = &ReplicationObs{State: r.state, Sync: r.syncState, LagBytes: r.lagBytes, LagSeconds: r.lagSeconds}
		}
	}
	for _, r := range pp.repl {
		// The standby counts only when it streams the primary's timeline: a
		// node still on an old timeline connects, is briefly listed as
		// "sync", and is cut off again.
		if r.app == c.state.Standby && sb.answering() && sb.InRecovery && sp.timeline != 0 && sp.timeline == pp.timeline {
			found = true
			o.StandbyStreaming = r.state == "streaming"
			o.StandbySync = r.state == "streaming" && r.syncState == "sync"
		}
	}
	switch {
	case sb.Rebuilding, sb.Off:
		c.missing = 0
		o.StandbyLost = true
	case found:
		c.missing = 0
	case pr.Health == HealthUp:
		c.missing++
	}
	limit := int(c.cfg.StandbyLossTimeout / c.cfg.ProbeInterval)
	if sb.Health == HealthDead || c.missing >= limit {
		o.StandbyLost = true
	}
	return o
}

// execute carries out plan in order and stops at the first error. It
// publishes a snapshot after every step, so a reader sees the failover
// progress (the endpoint paused, the new epoch) as it happens.
func (c *Cluster) execute(ctx context.Context, plan Plan) error {
	old := c.state
	failover := isFailover(plan, old)
	var detected time.Time
	if failover {
		detected = c.probe[old.Primary].failingSince
		c.emit(Event{Kind: EventFailoverStarted, Node: old.Standby, Epoch: old.Epoch, OldPrimary: old.Primary, NewPrimary: old.Standby,
			Message: plan.Reason})
	}
	for _, st := range plan.Steps {
		var err error
		switch st.Kind {
		case StepFence:
			err = c.fence(st.Node)
			if err == nil {
				c.emit(Event{Kind: EventFenced, Node: st.Node, Epoch: c.state.Epoch, Message: "every process of " + st.Node + " killed"})
			}
		case StepPromote:
			err = c.promote(ctx, st.Node, st.SyncStandby)
		case StepPersist:
			if err = saveState(c.cfg.StateFile, st.State); err == nil {
				if st.State.Epoch != c.state.Epoch {
					c.missing = 0
				}
				prev := c.state
				c.state = st.State
				c.emitStateChange(prev, st.State)
			}
		case StepRepoint:
			c.repoint(st.Node, st.Epoch)
		case StepDisableSync:
			err = c.setSync(ctx, st.Node, "")
		case StepEnableSync:
			err = c.setSync(ctx, st.Node, st.SyncStandby)
		case StepRejoin:
			c.startRejoin(ctx, st.Node, st.Fresh)
		case StepRestart:
			c.probe[st.Node].reset()
			sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err = c.inst[st.Node].start(sctx, c.primaryRunConfig(c.state))
			cancel()
			if err == nil {
				c.emit(Event{Kind: EventRestarted, Node: st.Node, Epoch: c.state.Epoch, Message: "no eligible standby: " + st.Node + " restarted in place"})
			}
		default:
			err = errors.New("unknown step")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
		c.log.Info("step done", "step", st.String())
		c.publish()
	}
	if failover && c.state.Primary == old.Standby && c.endpointEpoch == c.state.Epoch {
		e := Event{Kind: EventFailoverCompleted, Node: c.state.Primary, Epoch: c.state.Epoch, OldPrimary: old.Primary, NewPrimary: c.state.Primary}
		if !detected.IsZero() {
			e.RTO = c.cfg.Clock.Now().Sub(detected)
		}
		e.Message = fmt.Sprintf("%s is the primary of epoch %d (was %s)", e.NewPrimary, e.Epoch, e.OldPrimary)
		if e.RTO > 0 {
			e.Message += fmt.Sprintf("; %d ms from the first failed probe of %s to the endpoint forwarding to %s", e.RTO.Milliseconds(), e.OldPrimary, e.NewPrimary)
		}
		c.failovers.Add(1)
		c.emit(e)
	}
	return nil
}

// isFailover reports whether plan promotes the standby of s.
func isFailover(plan Plan, s State) bool {
	for _, st := range plan.Steps {
		if st.Kind == StepPersist && st.State.Epoch > s.Epoch && st.State.Primary == s.Standby {
			return true
		}
	}
	return false
}

// emitStateChange reports what a persisted state change means.
func (c *Cluster) emitStateChange(prev, next State) {
	switch {
	case next.Epoch != prev.Epoch:
		// The failover or switchover reports it.
	case prev.StandbyEligible && !next.StandbyEligible:
		c.emit(Event{Kind: EventStandbyIneligible, Node: next.Standby, Epoch: next.Epoch,
			Message: "standby " + next.Standby + " lost: recorded not eligible, the primary stops waiting for it"})
	case !prev.StandbyEligible && next.StandbyEligible:
		c.emit(Event{Kind: EventStandbyEligible, Node: next.Standby, Epoch: next.Epoch,
			Message: "standby " + next.Standby + " is synchronous: eligible for failover"})
	}
}

// fence SIGKILLs node's process group. If it is the endpoint's target, the
// endpoint first stops forwarding (there is no primary until repoint).
func (c *Cluster) fence(node string) error {
	if node == c.state.Primary && c.endpointEpoch != 0 {
		c.repoint("", c.state.Epoch)
	}
	err := c.inst[node].kill()
	c.probe[node].reset()
	c.probe[node].failures = c.cfg.FailureThreshold
	return err
}

func (c *Cluster) promote(ctx context.Context, node, syncStandby string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := c.inst[node].connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 15)").Scan(&ok); err != nil {
		return fmt.Errorf("pg_promote: %w", err)
	}
	if !ok {
		return errors.New("pg_promote: not promoted within 15s")
	}
	for _, sql := range []string{
		"ALTER SYSTEM SET synchronous_standby_names = " + quoteLiteral(syncNames(syncStandby)),
		"ALTER SYSTEM RESET primary_conninfo",
		"SELECT pg_reload_conf()",
		// pg_rewind reads the source's timeline from its control file,
		// which a fast promotion updates only at the next checkpoint.
		"CHECKPOINT",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("configure promoted %s: %w", node, err)
		}
	}
	c.probe[node].reset()
	return nil
}

func (c *Cluster) setSync(ctx context.Context, node, standby string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := c.inst[node].connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, sql := range []string{
		"ALTER SYSTEM SET synchronous_standby_names = " + quoteLiteral(syncNames(standby)),
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("set synchronous_standby_names on %s: %w", node, err)
		}
	}
	return nil
}

// startRejoin runs rejoin in the background; the node reads as Rebuilding
// until the loop hears it is done.
func (c *Cluster) startRejoin(ctx context.Context, node string, fresh bool) {
	if c.rebuilding[node] {
		return
	}
	c.rebuilding[node] = true
	primary := c.state.Primary
	how := "rejoin"
	if fresh {
		how = "rebuild from a fresh base backup"
	}
	c.emit(Event{Kind: EventRejoinStarted, Node: node, Epoch: c.state.Epoch, Message: node + ": " + how + " as a standby of " + primary})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		rebuilt, err := c.rejoin(rctx, node, primary, fresh)
		cancel()
		select {
		case c.rejoined <- rejoinResult{node: node, primary: primary, fresh: rebuilt, err: err}:
		case <-ctx.Done(): // the controller stopped; a new one starts from scratch
		}
	}()
}

// finishRejoin applies a finished rejoin (loop goroutine).
func (c *Cluster) finishRejoin(r rejoinResult) {
	c.rebuilding[r.node] = false
	c.missing = 0
	c.probe[r.node].reset()
	defer c.publish()
	if r.err != nil {
		c.failures++
		c.lastErr = fmt.Sprintf("rejoin %s: %v", r.node, r.err)
		c.log.Error("rejoin failed", "node", r.node, "err", r.err)
		c.emit(Event{Kind: EventRejoinFailed, Node: r.node, Epoch: c.state.Epoch, Message: r.err.Error()})
		return
	}
	c.log.Info("rejoined as standby", "node", r.node, "primary", r.primary)
	kind, how := EventRejoined, "rejoined"
	if r.fresh {
		kind, how = EventRebuilt, "rebuilt from a base backup and rejoined"
	}
	c.emit(Event{Kind: kind, Node: r.node, Epoch: c.state.Epoch, Message: r.node + " " + how + " as a standby of " + r.primary})
}
