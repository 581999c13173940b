package plan

import (
	"fmt"
	"strings"
)

// Text renders the plan as terraform plan does: one mark per change
// (~ in place, -/+ replaced, ! refused), the reason under it, and a summary
// line.
func (p Plan) Text() string {
	var b strings.Builder
	if p.Empty() {
		fmt.Fprintf(&b, "No changes. Region %q matches the spec (%s).\n", p.Region, p.To)
		return b.String()
	}
	fmt.Fprintf(&b, "Region %q, recorded spec %s → %s:\n\n", p.Region, p.From, p.To)
	for _, c := range p.Changes {
		fmt.Fprintf(&b, "  %-3s %s: %s → %s\n", c.Action.Symbol(), c.Field, show(c.Old), show(c.New))
		what := string(c.Action)
		if c.Action == Restart || c.Action == Rolling {
			what += " (" + c.Component + ")"
		}
		fmt.Fprintf(&b, "        %s: %s\n", what, c.Reason)
		if c.WayOut != "" {
			fmt.Fprintf(&b, "        way out: %s\n", c.WayOut)
		}
	}
	s := p.Summary
	fmt.Fprintf(&b, "\nPlan: %d in place, %d restart, %d rolling, %d refused.\n", s.InPlace, s.Restart, s.Rolling, s.Refused)
	if s.Refused > 0 {
		fmt.Fprintf(&b, "haven apply refuses this plan and leaves the region untouched: undo the refused changes, or take the way out.\n")
	}
	return b.String()
}

// show quotes a value the way the spec would write it; absent is (none).
func show(v string) string {
	if v == "" {
		return "(none)"
	}
	if strings.ContainsAny(v, " \t\n\"") {
		return fmt.Sprintf("%q", v)
	}
	return v
}

// RefusedError is the error of a plan apply refuses: it names every
// refused field and why.
func (p Plan) RefusedError() error {
	r := p.Refused()
	if len(r) == 0 {
		return nil
	}
	var parts []string
	for _, c := range r {
		parts = append(parts, fmt.Sprintf("%s (%s → %s): %s; %s", c.Field, show(c.Old), show(c.New), c.Reason, c.WayOut))
	}
	return fmt.Errorf("apply refused, the region is untouched: %s", strings.Join(parts, "; "))
}
