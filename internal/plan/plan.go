// Package plan compares a running region's recorded spec with a new one and says, for each change, how a running region takes it: in place, rolling, a restart of one component, or refused.
//
// Diff is pure: (recorded spec, live state, new spec) → Plan. The region
// carries a plan out (internal/region's apply); the CLI renders it
// (Text, JSON). Every leaf field of the spec has a rule in the table
// below (TestEveryFieldHasARule): a field added to the spec without one is
// refused on a running region until someone decides how it changes.
package plan

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/haven-platform/haven/internal/spec"
)

// Action is how a running region takes one change.
type Action string

// The actions, in the order apply carries them out (refused ones never are).
const (
	// InPlace changes a running component without replacing anything
	// (fleet capacity, target group settings, policies).
	InPlace Action = "in-place"
	// Restart replaces one component (its listener moves).
	Restart Action = "restart"
	// Rolling replaces every instance, launch before terminate, one at a
	// time (a launch template change).
	Rolling Action = "rolling"
	// Refused changes cannot be made to a running region; apply refuses
	// the whole plan and touches nothing.
	Refused Action = "refused"
)

// order is the order of the actions in a plan and in its execution.
var order = map[Action]int{Refused: 0, InPlace: 1, Restart: 2, Rolling: 3}

// Symbol is the action's mark in the text, as terraform plan marks them.
func (a Action) Symbol() string {
	switch a {
	case InPlace:
		return "~"
	case Restart, Rolling:
		return "-/+"
	}
	return "!"
}

// Change is one field whose value differs.
type Change struct {
	// Field is the spec path, e.g. fleet.max or app.env.FEATURE.
	Field string `json:"field"`
	// Action is how the region takes it.
	Action Action `json:"action"`
	// Component is what changes: "fleet", "load balancer", ...
	Component string `json:"component"`
	// Old and New are the values as the spec writes them ("" when absent).
	Old string `json:"old"`
	New string `json:"new"`
	// Reason says what apply does, or why it refuses.
	Reason string `json:"reason"`
	// WayOut, for a refused change, says how to make it anyway.
	WayOut string `json:"way_out,omitempty"`
}

// Live is what the running region reports that the recorded spec does not
// say: a hand-scaled or scaled fleet.
type Live struct {
	// Capacity is the fleet's live min, desired and max (nil: unknown).
	Capacity *Capacity `json:"capacity,omitempty"`
}

// Capacity is a fleet's min, desired and max.
type Capacity struct {
	Min     int `json:"min"`
	Desired int `json:"desired"`
	Max     int `json:"max"`
}

// Plan is every change between a recorded spec and a new one.
type Plan struct {
	// Region is the region's name (the recorded spec's).
	Region string `json:"region"`
	// From and To are the hashes of the recorded and the new spec (Hash).
	From string `json:"from"`
	To   string `json:"to"`
	// Changes are in execution order: refused first, then in place,
	// restarts, rolling; by field within each.
	Changes []Change `json:"changes"`
	// Summary counts the changes by action.
	Summary Summary `json:"summary"`
}

// Summary counts a plan's changes by action.
type Summary struct {
	InPlace int `json:"in_place"`
	Restart int `json:"restart"`
	Rolling int `json:"rolling"`
	Refused int `json:"refused"`
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Changes) == 0 }

// Refused returns the refused changes.
func (p Plan) Refused() []Change {
	var out []Change
	for _, c := range p.Changes {
		if c.Action == Refused {
			out = append(out, c)
		}
	}
	return out
}

// Has reports whether any change has action a.
func (p Plan) Has(a Action) bool {
	return slices.ContainsFunc(p.Changes, func(c Change) bool { return c.Action == a })
}

// Hash is the identity of a spec: the first 12 hex digits of the SHA-256
// of its canonical JSON, after defaults. Comments, key order and spelled
// out defaults do not change it.
func Hash(s spec.Spec) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("plan: encode spec: %v", err)) // every spec type encodes
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// Diff compares the recorded spec with the new one and classifies every
// change. It is pure.
func Diff(recorded spec.Spec, live Live, next spec.Spec) Plan {
	p := Plan{Region: recorded.Name, From: Hash(recorded), To: Hash(next), Changes: []Change{}}
	old, cur := Flatten(recorded), Flatten(next)
	fields := map[string]bool{}
	for k := range old {
		fields[k] = true
	}
	for k := range cur {
		fields[k] = true
	}
	for f := range fields {
		o, ook := old[f]
		n, nok := cur[f]
		if ook == nok && o == n {
			continue
		}
		r := RuleFor(f)
		c := Change{Field: f, Action: r.Action, Component: r.Component, Old: o, New: n, Reason: r.Reason, WayOut: r.WayOut}
		c.Reason = liveNote(c, live)
		p.Changes = append(p.Changes, c)
	}
	sort.Slice(p.Changes, func(i, j int) bool {
		a, b := p.Changes[i], p.Changes[j]
		return cmp.Or(cmp.Compare(order[a.Action], order[b.Action]), cmp.Compare(a.Field, b.Field)) < 0
	})
	for _, c := range p.Changes {
		switch c.Action {
		case InPlace:
			p.Summary.InPlace++
		case Restart:
			p.Summary.Restart++
		case Rolling:
			p.Summary.Rolling++
		default:
			p.Summary.Refused++
		}
	}
	return p
}

// liveNote adds what the live fleet says to a capacity change: the
// recorded desired capacity may not be the live one (scaling, `haven fleet
// scale`).
func liveNote(c Change, live Live) string {
	if live.Capacity == nil || !strings.HasPrefix(c.Field, "fleet.") {
		return c.Reason
	}
	lc := *live.Capacity
	switch c.Field {
	case "fleet.min", "fleet.max", "fleet.desired":
		return c.Reason + fmt.Sprintf(" (live: min %d, desired %d, max %d)", lc.Min, lc.Desired, lc.Max)
	}
	return c.Reason
}

// Flatten maps every leaf field of the spec (its JSON form, after
// defaults) to its value as the spec writes it. Maps are followed to
// their keys (app.env.NAME); lists are one value each.
func Flatten(s spec.Spec) map[string]string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("plan: encode spec: %v", err))
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(fmt.Sprintf("plan: decode spec: %v", err))
	}
	out := map[string]string{}
	flatten(out, "", m)
	return out
}

func flatten(out map[string]string, prefix string, v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(out, p, e)
		}
	case string:
		out[prefix] = x
	case float64:
		out[prefix] = strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		out[prefix] = strconv.FormatBool(x)
	case nil:
		out[prefix] = ""
	default:
		b, _ := json.Marshal(x)
		out[prefix] = string(b)
	}
}
