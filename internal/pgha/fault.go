package pgha

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/failpoint"
)

// FaultResult says what Inject did and when.
type FaultResult struct {
	Scenario string
	Node     string
	Zone     string
	PID      int
	// At is when every process of the server had the signal.
	At time.Time
	// Epoch is the epoch before the fault.
	Epoch uint64
	// RestartedAt and RestartEpoch (db-controller-restart): when the new
	// controller started and the persisted epoch it started from.
	RestartedAt  time.Time
	RestartEpoch uint64
}

// Inject injects one of the database's external failpoint scenarios
// (failpoint.DBKill, DBFreeze, DBThaw, DBStandbyLoss, DBControllerRestart)
// into node; node "" means the primary (the standby for DBStandbyLoss).
// delay is how long DBControllerRestart waits between the kill and the
// controller restart.
func (c *Cluster) Inject(ctx context.Context, scenario, node string, delay time.Duration) (FaultResult, error) {
	c.faultMu.Lock()
	defer c.faultMu.Unlock()
	st := c.Status()
	if node == "" {
		node = st.State.Primary
		if scenario == failpoint.DBStandbyLoss {
			node = st.State.Standby
		}
	}
	var ns *NodeStatus
	for i := range st.Nodes {
		if st.Nodes[i].Name == node {
			ns = &st.Nodes[i]
		}
	}
	if ns == nil {
		var names []string
		for _, n := range st.Nodes {
			names = append(names, n.Name)
		}
		return FaultResult{}, fmt.Errorf("fault %s: no database node %q (nodes: %s)", scenario, node, strings.Join(names, ", "))
	}
	res := FaultResult{Scenario: scenario, Node: node, Zone: ns.Zone, PID: ns.Pid, Epoch: st.State.Epoch}
	var sig syscall.Signal
	switch scenario {
	case failpoint.DBKill:
		sig = syscall.SIGKILL
	case failpoint.DBFreeze:
		sig = syscall.SIGSTOP
	case failpoint.DBThaw:
		sig = syscall.SIGCONT
	case failpoint.DBStandbyLoss:
		if node == st.State.Primary {
			return res, fmt.Errorf("fault %s: %s is the primary; name the standby (%s) or leave the node out", scenario, node, st.State.Standby)
		}
		sig = syscall.SIGKILL
	case failpoint.DBControllerRestart:
		if node != st.State.Primary {
			return res, fmt.Errorf("fault %s: kills the primary (%s) mid-failover; %s is not it", scenario, st.State.Primary, node)
		}
		sig = syscall.SIGKILL
	default:
		return res, fmt.Errorf("fault %q: not a database scenario; they are %s, %s, %s, %s and %s", scenario,
			failpoint.DBKill, failpoint.DBFreeze, failpoint.DBThaw, failpoint.DBStandbyLoss, failpoint.DBControllerRestart)
	}
	if err := c.Signal(node, sig); err != nil {
		return res, err
	}
	// The fault is in place once every process of the server has the
	// signal: a commit can still slip in while they are being signalled.
	res.At = time.Now()
	if scenario != failpoint.DBControllerRestart {
		return res, nil
	}
	if delay > 0 {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(delay):
		}
	}
	epoch, err := c.RestartController(ctx)
	res.RestartedAt, res.RestartEpoch = time.Now(), epoch
	return res, err
}
