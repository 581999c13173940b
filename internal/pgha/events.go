package pgha

import "time"

// Event kinds the controller reports (Config.OnEvent).
const (
	// EventFailoverStarted: the primary is dead and the eligible standby is
	// being promoted (fence → promote → persist → repoint).
	EventFailoverStarted = "failover-started"
	// EventFailoverCompleted: the endpoint forwards to the new primary of
	// the new epoch; RTO is from the first failed probe of the old primary
	// (or its postmaster's exit) to then.
	EventFailoverCompleted = "failover-completed"
	// EventFenced: every process of a node was killed.
	EventFenced = "fence"
	// EventRestarted: the primary was restarted in place (no eligible standby).
	EventRestarted = "restart"
	// EventRejoinStarted: a node is being brought back as a standby.
	EventRejoinStarted = "rejoin-started"
	// EventRejoined: a node is a standby again (restart or pg_rewind).
	EventRejoined = "rejoin"
	// EventRebuilt: a node was rebuilt from a fresh base backup and rejoined.
	EventRebuilt = "rebuild"
	// EventRejoinFailed: a rejoin or rebuild failed; the controller retries.
	EventRejoinFailed = "rejoin-failed"
	// EventStandbyIneligible: the standby was lost and recorded not eligible.
	EventStandbyIneligible = "standby-ineligible"
	// EventStandbyEligible: the standby is synchronous again and eligible.
	EventStandbyEligible = "standby-eligible"
	// EventSwitchoverCompleted: a planned switchover finished.
	EventSwitchoverCompleted = "switchover-completed"
	// EventPlanFailed: a step of the controller's plan failed; it retries.
	EventPlanFailed = "plan-failed"
	// EventControllerRestarted: the controller alone was restarted (a drill).
	EventControllerRestarted = "controller-restarted"
	// EventAdopted: a new controller (a restarted or upgraded daemon)
	// adopted the running servers from the persisted epoch, restarting
	// nothing.
	EventAdopted = "adopted"
)

// Event is something the failover controller did.
type Event struct {
	Kind string
	// Node is the node the event is about.
	Node string
	// Epoch is the epoch after the event.
	Epoch uint64
	// OldPrimary and NewPrimary are set for failovers and switchovers.
	OldPrimary, NewPrimary string
	// RTO is set when a failover completes.
	RTO time.Duration
	// Message says it in a sentence.
	Message string
}

// emit hands e to Config.OnEvent, when set.
func (c *Cluster) emit(e Event) {
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(e)
	}
}
