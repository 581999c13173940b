package pgha

import (
	"math/rand"
	"reflect"
	"testing"
)

func kinds(p Plan) []StepKind {
	var k []StepKind
	for _, s := range p.Steps {
		k = append(k, s.Kind)
	}
	return k
}

func TestDecide(t *testing.T) {
	up := func(rec bool) NodeObs { return NodeObs{Health: HealthUp, InRecovery: rec} }
	dead := NodeObs{Health: HealthDead}
	slow := NodeObs{Health: HealthSlow}
	base := State{Epoch: 3, Primary: "a", Standby: "b", StandbyEligible: true, SyncEnabled: true, Durability: DurabilityRequired}
	with := func(f func(*State)) State { s := base; f(&s); return s }
	tests := []struct {
		name      string
		obs       Observed
		state     State
		want      []StepKind
		wantState *State // state of the persist step, if any
	}{
		{"healthy pair does nothing",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": up(true)}, StandbyStreaming: true, StandbySync: true, EndpointEpoch: 3},
			base, nil, nil},
		{"endpoint behind is repointed",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": up(true)}, StandbyStreaming: true, StandbySync: true},
			base, []StepKind{StepRepoint}, nil},
		{"dead primary with eligible standby fails over in order",
			Observed{Nodes: map[string]NodeObs{"a": dead, "b": up(true)}, EndpointEpoch: 3},
			base, []StepKind{StepFence, StepPromote, StepPersist, StepRepoint},
			&State{Epoch: 4, Primary: "b", Standby: "a", SyncEnabled: true, Durability: DurabilityRequired}},
		{"preferred failover leaves the new primary asynchronous",
			Observed{Nodes: map[string]NodeObs{"a": dead, "b": up(true)}, EndpointEpoch: 3},
			with(func(s *State) { s.Durability = DurabilityPreferred }), []StepKind{StepFence, StepPromote, StepPersist, StepRepoint},
			&State{Epoch: 4, Primary: "b", Standby: "a", Durability: DurabilityPreferred}},
		{"slow primary is not failed over",
			Observed{Nodes: map[string]NodeObs{"a": slow, "b": up(true)}, EndpointEpoch: 3},
			base, nil, nil},
		{"dead primary, ineligible standby: restart in place",
			Observed{Nodes: map[string]NodeObs{"a": dead, "b": up(true)}, EndpointEpoch: 3},
			with(func(s *State) { s.StandbyEligible = false }), []StepKind{StepFence, StepRestart}, nil},
		{"dead primary, dead standby: restart in place",
			Observed{Nodes: map[string]NodeObs{"a": dead, "b": dead}, EndpointEpoch: 3},
			base, []StepKind{StepFence, StepRestart}, nil},
		{"standby already promoted by an interrupted plan: finish without promoting again",
			Observed{Nodes: map[string]NodeObs{"a": dead, "b": up(false)}, EndpointEpoch: 3},
			base, []StepKind{StepFence, StepPersist, StepRepoint},
			&State{Epoch: 4, Primary: "b", Standby: "a", Durability: DurabilityRequired}},
		{"second writable node is fenced and rejoined",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": up(false)}, EndpointEpoch: 3},
			base, []StepKind{StepFence, StepRejoin}, nil},
		{"lost standby, required: keep waiting, rejoin it",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": dead}, StandbyLost: true, EndpointEpoch: 3},
			base, []StepKind{StepRejoin}, nil},
		{"lost standby, preferred: record ineligible before disabling sync",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": dead}, StandbyLost: true, EndpointEpoch: 3},
			with(func(s *State) { s.Durability = DurabilityPreferred }), []StepKind{StepPersist, StepDisableSync, StepRejoin},
			&State{Epoch: 3, Primary: "a", Standby: "b", Durability: DurabilityPreferred}},
		{"rebuilding standby is not rejoined twice",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": {Rebuilding: true}}, StandbyLost: true, EndpointEpoch: 3},
			with(func(s *State) { s.StandbyEligible, s.SyncEnabled = false, false }), nil, nil},
		{"caught-up standby: enable sync, not yet eligible",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": up(true)}, StandbyStreaming: true, EndpointEpoch: 3},
			with(func(s *State) { s.StandbyEligible, s.SyncEnabled = false, false }), []StepKind{StepEnableSync, StepPersist},
			&State{Epoch: 3, Primary: "a", Standby: "b", SyncEnabled: true, Durability: DurabilityRequired}},
		{"synchronous standby becomes eligible",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": up(true)}, StandbyStreaming: true, StandbySync: true, EndpointEpoch: 3},
			with(func(s *State) { s.StandbyEligible = false }), []StepKind{StepPersist},
			&State{Epoch: 3, Primary: "a", Standby: "b", StandbyEligible: true, SyncEnabled: true, Durability: DurabilityRequired}},
		{"primary's zone without power: fail over to the eligible standby",
			Observed{Nodes: map[string]NodeObs{"a": {Health: HealthDead, Off: true}, "b": up(true)}, EndpointEpoch: 3},
			base, []StepKind{StepFence, StepPromote, StepPersist, StepRepoint},
			&State{Epoch: 4, Primary: "b", Standby: "a", SyncEnabled: true, Durability: DurabilityRequired}},
		{"primary's zone without power, no eligible standby: wait, never restart it there",
			Observed{Nodes: map[string]NodeObs{"a": {Health: HealthDead, Off: true}, "b": up(true)}, EndpointEpoch: 3},
			with(func(s *State) { s.StandbyEligible = false }), nil, nil},
		{"standby's zone without power, preferred: stop waiting for it, do not rejoin it",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": {Health: HealthDead, Off: true}}, StandbyLost: true, EndpointEpoch: 3},
			with(func(s *State) { s.Durability = DurabilityPreferred }), []StepKind{StepPersist, StepDisableSync},
			&State{Epoch: 3, Primary: "a", Standby: "b", Durability: DurabilityPreferred}},
		{"standby's zone without power, already ineligible: nothing to do",
			Observed{Nodes: map[string]NodeObs{"a": up(false), "b": {Health: HealthDead, Off: true}}, StandbyLost: true, EndpointEpoch: 3},
			with(func(s *State) { s.Durability, s.StandbyEligible, s.SyncEnabled = DurabilityPreferred, false, false }), nil, nil},
		{"single node: dead primary restarts",
			Observed{Nodes: map[string]NodeObs{"a": dead}, EndpointEpoch: 1},
			State{Epoch: 1, Primary: "a", Durability: DurabilityRequired}, []StepKind{StepFence, StepRestart}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Decide(tt.obs, tt.state)
			if got := kinds(p); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("steps = %v, want %v (%s)", got, tt.want, p)
			}
			if tt.wantState != nil {
				for _, s := range p.Steps {
					if s.Kind == StepPersist && !reflect.DeepEqual(s.State, *tt.wantState) {
						t.Errorf("persisted %+v, want %+v", s.State, *tt.wantState)
					}
				}
			}
		})
	}
}

// TestDecideProperties checks the invariants on random observations.
func TestDecideProperties(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	healths := []Health{HealthUnknown, HealthUp, HealthSlow, HealthDead}
	for i := 0; i < 200000; i++ {
		s := State{Epoch: uint64(r.Intn(5) + 1), Primary: "a", Standby: "b",
			StandbyEligible: r.Intn(2) == 0, SyncEnabled: r.Intn(2) == 0, Durability: []Durability{DurabilityRequired, DurabilityPreferred}[r.Intn(2)]}
		if r.Intn(2) == 0 {
			s.Primary, s.Standby = "b", "a"
		}
		o := Observed{Nodes: map[string]NodeObs{}, StandbyStreaming: r.Intn(2) == 0, StandbySync: r.Intn(2) == 0,
			StandbyLost: r.Intn(2) == 0, EndpointEpoch: uint64(r.Intn(6))}
		for _, n := range []string{"a", "b"} {
			obs := NodeObs{Health: healths[r.Intn(4)], InRecovery: r.Intn(2) == 0}
			if n == s.Standby && r.Intn(5) == 0 {
				// The observer does not probe a node it is rebuilding.
				obs = NodeObs{Rebuilding: true}
			}
			if r.Intn(6) == 0 {
				// Nor one whose zone has no power: dead, and off.
				obs = NodeObs{Health: HealthDead, Off: true}
			}
			o.Nodes[n] = obs
		}
		p := Decide(o, s)

		fenced := map[string]bool{}
		promoted := ""
		recordedIneligible := false
		for _, st := range p.Steps {
			switch st.Kind {
			case StepFence:
				fenced[st.Node] = true
			case StepPromote:
				n := o.Nodes[st.Node]
				if st.Node != s.Standby || !s.StandbyEligible || !n.InRecovery || !n.answering() || n.Rebuilding {
					t.Fatalf("promoted ineligible %s: obs %+v state %+v plan %s", st.Node, o, s, p)
				}
				if !fenced[s.Primary] {
					t.Fatalf("promoted %s before fencing %s: %s", st.Node, s.Primary, p)
				}
				promoted = st.Node
			case StepPersist:
				recordedIneligible = !st.State.StandbyEligible
				if st.State.Epoch < s.Epoch {
					t.Fatalf("epoch moved backwards %d → %d: %s", s.Epoch, st.State.Epoch, p)
				}
				if st.State.Primary != s.Primary && st.State.Epoch != s.Epoch+1 {
					t.Fatalf("new primary without epoch+1: %s", p)
				}
				if st.State.StandbyEligible && !(o.StandbySync && s.SyncEnabled && st.State.Primary == s.Primary) {
					t.Fatalf("marked eligible without observed sync: obs %+v state %+v plan %s", o, s, p)
				}
			case StepRepoint:
				if st.Epoch < s.Epoch {
					t.Fatalf("repoint to old epoch: %s", p)
				}
			case StepDisableSync:
				if s.Durability != DurabilityPreferred {
					t.Fatalf("disabled sync in required mode: %s", p)
				}
				if !recordedIneligible {
					t.Fatalf("disabled sync before recording the standby ineligible: %s", p)
				}
			}
		}
		// Never two primaries: after the plan, writable nodes are those
		// observed writable and not fenced, plus the promoted one.
		writable := map[string]bool{}
		for n, obs := range o.Nodes {
			if obs.answering() && !obs.InRecovery && !fenced[n] {
				writable[n] = true
			}
		}
		if promoted != "" {
			writable[promoted] = true
		}
		restarts := 0
		for _, st := range p.Steps {
			if (st.Kind == StepRestart || st.Kind == StepRejoin) && o.Nodes[st.Node].Off {
				t.Fatalf("%s of %s, whose zone has no power: %s", st.Kind, st.Node, p)
			}
			if st.Kind == StepRestart {
				writable[st.Node] = true
				restarts++
			}
		}
		if len(p.Steps) > 0 && len(writable) > 1 {
			t.Fatalf("two primaries after plan %s (obs %+v)", p, o)
		}
		if promoted != "" && restarts > 0 {
			t.Fatalf("promote and restart in one plan: %s", p)
		}
	}
}
