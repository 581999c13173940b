package pgha

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

func (c *Cluster) loop(ctx context.Context) {
	defer c.wg.Done()
	for {
		c.safeTick(ctx)
		c.mu.Lock()
		failures := c.failures
		wait := c.cfg.ProbeInterval
		for i := 0; i < failures && wait < 5*time.Second; i++ {
			wait *= 2
		}
		var primaryExit <-chan struct{}
		if failures == 0 && c.inst[c.state.Primary].running() {
			// Wake at once when the primary's postmaster exits.
			primaryExit = c.inst[c.state.Primary].exited()
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-c.cfg.Clock.After(wait):
		case <-primaryExit:
		case <-c.wake:
		}
	}
}

func (c *Cluster) safeTick(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("control loop panic", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
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
		return
	}
	c.failures = 0
	c.lastErr = ""
}

// observe probes every node (c.mu held).
func (c *Cluster) observe(ctx context.Context) Observed {
	o := Observed{Nodes: map[string]NodeObs{}, EndpointEpoch: c.endpointEpoch}
	for name, p := range c.probe {
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
	case sb.Rebuilding:
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

// execute carries out plan in order and stops at the first error (c.mu held).
func (c *Cluster) execute(ctx context.Context, plan Plan) error {
	for _, st := range plan.Steps {
		var err error
		switch st.Kind {
		case StepFence:
			err = c.fence(st.Node)
		case StepPromote:
			err = c.promote(ctx, st.Node, st.SyncStandby)
		case StepPersist:
			if err = saveState(c.cfg.StateFile, st.State); err == nil {
				if st.State.Epoch != c.state.Epoch {
					c.missing = 0
				}
				c.state = st.State
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
		default:
			err = errors.New("unknown step")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
		c.log.Info("step done", "step", st.String())
	}
	return nil
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
// until it is done (c.mu held).
func (c *Cluster) startRejoin(ctx context.Context, node string, fresh bool) {
	if c.rebuilding[node] {
		return
	}
	c.rebuilding[node] = true
	primary := c.state.Primary
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := c.rejoin(rctx, node, primary, fresh)
		cancel()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.rebuilding[node] = false
		c.missing = 0
		c.probe[node].reset()
		if err != nil {
			c.failures++
			c.lastErr = fmt.Sprintf("rejoin %s: %v", node, err)
			c.log.Error("rejoin failed", "node", node, "err", err)
			return
		}
		c.log.Info("rejoined as standby", "node", node, "primary", primary)
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}()
}
