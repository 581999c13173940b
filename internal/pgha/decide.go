package pgha

import (
	"fmt"
	"sort"
	"strings"
)

// Health is the prober's verdict on one node.
type Health int

const (
	// HealthUnknown: not probed yet.
	HealthUnknown Health = iota
	// HealthUp: the last probe answered within the timeout.
	HealthUp
	// HealthSlow: recent probes failed or answered late, but fewer than the
	// failure threshold in a row. A slow primary is never failed over.
	HealthSlow
	// HealthDead: the failure threshold was reached in a row, or the
	// controller saw the postmaster exit.
	HealthDead
)

func (h Health) String() string {
	switch h {
	case HealthUp:
		return "up"
	case HealthSlow:
		return "slow"
	case HealthDead:
		return "dead"
	}
	return "unknown"
}

// NodeObs is what the controller observed about one node.
type NodeObs struct {
	Health Health
	// InRecovery is the node's last answer to pg_is_in_recovery().
	InRecovery bool
	// Rebuilding is true while a rejoin or rebuild of the node is running.
	Rebuilding bool
	// Off is true while the node's zone has no power (Cluster.SetZonePower):
	// nothing of it runs and nothing may start it, so it is dead and is
	// not rejoined until the power returns.
	Off bool
}

func (n NodeObs) answering() bool { return n.Health == HealthUp || n.Health == HealthSlow }

// Observed is one round of observation.
type Observed struct {
	// Nodes maps node name to its observation.
	Nodes map[string]NodeObs
	// StandbyStreaming: the primary reports the standby in state "streaming"
	// (caught up).
	StandbyStreaming bool
	// StandbySync: the primary reports the standby with sync_state "sync".
	StandbySync bool
	// StandbyLost: the standby has not been connected to the primary for the
	// loss threshold (it is dead, hung or not replicating).
	StandbyLost bool
	// EndpointEpoch is the epoch the endpoint currently forwards for.
	EndpointEpoch uint64
	// Replication is the primary's pg_stat_replication row of the standby,
	// nil when it is not listed. Decide does not use it: it is published
	// for metrics.
	Replication *ReplicationObs
	// Connections is the primary's client connections (metrics only).
	Connections int
}

// ReplicationObs is how the standby replicates, as the primary reports it.
type ReplicationObs struct {
	// State is streaming, catchup, ...; Sync is sync, async or potential.
	State, Sync string
	// LagBytes is how far the standby's replay trails the primary's WAL
	// position; LagSeconds is pg_stat_replication.replay_lag (0 when idle).
	LagBytes, LagSeconds float64
}

// StepKind names one action of a plan.
type StepKind string

// The actions a plan is made of.
const (
	// StepFence SIGKILLs the node's process group and waits for it to exit.
	StepFence StepKind = "fence"
	// StepPromote promotes the standby and sets its synchronous_standby_names
	// to SyncStandby.
	StepPromote StepKind = "promote"
	// StepPersist writes State atomically to disk.
	StepPersist StepKind = "persist"
	// StepRepoint points the endpoint at Node for Epoch (closing every client).
	StepRepoint StepKind = "repoint"
	// StepDisableSync sets synchronous_standby_names='' on the primary and reloads.
	StepDisableSync StepKind = "disable-sync"
	// StepEnableSync names SyncStandby in the primary's
	// synchronous_standby_names and reloads.
	StepEnableSync StepKind = "enable-sync"
	// StepRejoin brings Node back as a standby of the primary: restart, or
	// pg_rewind, or a fresh base backup (Fresh forces the last).
	StepRejoin StepKind = "rejoin"
	// StepRestart fences and restarts the primary in place (no eligible
	// standby to fail over to).
	StepRestart StepKind = "restart"
)

// Step is one action.
type Step struct {
	Kind        StepKind
	Node        string
	SyncStandby string // promote, enable-sync
	State       State  // persist
	Epoch       uint64 // repoint
	Fresh       bool   // rejoin
}

func (s Step) String() string {
	switch s.Kind {
	case StepPersist:
		return fmt.Sprintf("persist(epoch=%d primary=%s eligible=%v sync=%v)", s.State.Epoch, s.State.Primary, s.State.StandbyEligible, s.State.SyncEnabled)
	case StepRepoint:
		return fmt.Sprintf("repoint(%s epoch=%d)", s.Node, s.Epoch)
	}
	return fmt.Sprintf("%s(%s)", s.Kind, s.Node)
}

// Plan is an ordered list of steps; the executor stops at the first error.
type Plan struct {
	Steps  []Step
	Reason string
}

func (p Plan) String() string {
	parts := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		parts[i] = s.String()
	}
	return p.Reason + ": " + strings.Join(parts, " → ")
}

// Decide is the failover policy: a pure function from what was observed and
// the durable state to the steps to take. Failover is fence → promote →
// persist the new epoch → repoint, and only an eligible standby is promoted.
func Decide(o Observed, s State) Plan {
	if s.Primary == "" {
		return Plan{Reason: "not bootstrapped"}
	}
	p := o.Nodes[s.Primary]
	var sb NodeObs
	if s.Standby != "" {
		sb = o.Nodes[s.Standby]
	}

	if p.Health == HealthDead {
		if s.Standby != "" && s.StandbyEligible && sb.answering() && !sb.Rebuilding {
			next := State{Epoch: s.Epoch + 1, Primary: s.Standby, Standby: s.Primary, Durability: s.Durability}
			steps := []Step{{Kind: StepFence, Node: s.Primary}}
			if sb.InRecovery {
				promote := Step{Kind: StepPromote, Node: s.Standby}
				if s.Durability == DurabilityRequired {
					promote.SyncStandby = s.Primary
					next.SyncEnabled = true
				}
				steps = append(steps, promote)
			} else {
				// Promoted by an earlier, interrupted plan; finish it.
				next.SyncEnabled = false
			}
			steps = append(steps,
				Step{Kind: StepPersist, Node: s.Standby, State: next},
				Step{Kind: StepRepoint, Node: s.Standby, Epoch: next.Epoch})
			return Plan{Reason: "primary " + s.Primary + " dead: fail over to eligible standby " + s.Standby, Steps: steps}
		}
		if p.Off {
			// Nothing can restart it: the database is down until the zone
			// returns (or, if another node accepts writes, that is fenced
			// below in the next round).
			return Plan{Reason: "primary " + s.Primary + " has no power and no eligible standby answers: waiting for its zone"}
		}
		steps := []Step{{Kind: StepFence, Node: s.Primary}}
		for _, name := range sortedNames(o.Nodes) {
			if n := o.Nodes[name]; name != s.Primary && n.answering() && !n.InRecovery {
				steps = append(steps, Step{Kind: StepFence, Node: name})
			}
		}
		return Plan{Reason: "primary " + s.Primary + " dead and no eligible standby answering: restart it in place",
			Steps: append(steps, Step{Kind: StepRestart, Node: s.Primary})}
	}

	// Never two primaries: any other node that accepts writes is fenced
	// and rejoined as a standby.
	for _, name := range sortedNames(o.Nodes) {
		n := o.Nodes[name]
		if name != s.Primary && n.answering() && !n.InRecovery && !n.Rebuilding {
			return Plan{Reason: "node " + name + " is writable but " + s.Primary + " is the primary of epoch " + fmt.Sprint(s.Epoch),
				Steps: []Step{{Kind: StepFence, Node: name}, {Kind: StepRejoin, Node: name}}}
		}
	}
	if p.Health != HealthUp {
		return Plan{Reason: "primary " + s.Primary + " is " + p.Health.String() + ": waiting"}
	}

	var plan Plan
	var reasons []string
	if o.EndpointEpoch != s.Epoch {
		plan.Steps = append(plan.Steps, Step{Kind: StepRepoint, Node: s.Primary, Epoch: s.Epoch})
		reasons = append(reasons, "endpoint behind")
	}
	if s.Standby != "" {
		next := s
		switch {
		case o.StandbyLost:
			if s.Durability == DurabilityPreferred && (s.SyncEnabled || s.StandbyEligible) {
				next.StandbyEligible, next.SyncEnabled = false, false
				plan.Steps = append(plan.Steps,
					Step{Kind: StepPersist, Node: s.Primary, State: next},
					Step{Kind: StepDisableSync, Node: s.Primary})
				reasons = append(reasons, "standby lost (preferred): stop waiting for it")
			}
			if !sb.Rebuilding && !sb.Off {
				plan.Steps = append(plan.Steps, Step{Kind: StepRejoin, Node: s.Standby, Fresh: sb.answering()})
				reasons = append(reasons, "standby lost: rejoin it")
			}
		case !s.SyncEnabled && o.StandbyStreaming:
			next.SyncEnabled, next.StandbyEligible = true, false
			plan.Steps = append(plan.Steps,
				Step{Kind: StepEnableSync, Node: s.Primary, SyncStandby: s.Standby},
				Step{Kind: StepPersist, Node: s.Primary, State: next})
			reasons = append(reasons, "standby caught up: replicate synchronously")
		case s.SyncEnabled && !s.StandbyEligible && o.StandbySync:
			next.StandbyEligible = true
			plan.Steps = append(plan.Steps, Step{Kind: StepPersist, Node: s.Primary, State: next})
			reasons = append(reasons, "standby synchronous: eligible")
		}
	}
	plan.Reason = strings.Join(reasons, "; ")
	return plan
}

func sortedNames(m map[string]NodeObs) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
