package iam

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Effect is the effect of a policy statement.
type Effect string

// Statement effects.
const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// StringList is a list of strings that, like IAM JSON, also decodes from a single string.
type StringList []string

// UnmarshalJSON accepts either "x" or ["x", "y"].
func (l *StringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = StringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("decode string list: %w", err)
	}
	*l = many
	return nil
}

// Statement is one IAM-style policy statement. Actions match case-insensitively,
// resources case-sensitively; both accept the wildcards * and ?.
type Statement struct {
	Sid      string     `json:"Sid,omitempty"`
	Effect   Effect     `json:"Effect"`
	Action   StringList `json:"Action"`
	Resource StringList `json:"Resource"`
}

// Policy is an IAM-style identity policy document.
type Policy struct {
	Version   string      `json:"Version,omitempty"`
	Statement []Statement `json:"Statement"`
}

// Validate checks that every statement has a known effect, at least one action and
// one resource.
func (p Policy) Validate() error {
	for n, s := range p.Statement {
		if s.Effect != Allow && s.Effect != Deny {
			return fmt.Errorf("statement[%d].Effect: must be Allow or Deny, got %q", n, s.Effect)
		}
		if len(s.Action) == 0 {
			return fmt.Errorf("statement[%d].Action: must not be empty", n)
		}
		if len(s.Resource) == 0 {
			return fmt.Errorf("statement[%d].Resource: must not be empty", n)
		}
	}
	return nil
}

// ErrAccessDenied is wrapped by every authorization refusal.
var ErrAccessDenied = errors.New("access denied")

// AccessDeniedError says who was refused what, in AWS's wording.
type AccessDeniedError struct {
	Principal Principal
	Action    string
	Resource  string
	// Explicit is true when a Deny statement matched (otherwise no Allow matched).
	Explicit bool
}

func (e *AccessDeniedError) Error() string {
	why := "because no identity-based policy allows the " + e.Action + " action"
	if e.Explicit {
		why = "with an explicit deny in an identity-based policy"
	}
	return fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s %s",
		e.Principal.ARN(), e.Action, e.Resource, why)
}

// Unwrap makes errors.Is(err, ErrAccessDenied) true.
func (e *AccessDeniedError) Unwrap() error { return ErrAccessDenied }

// Decision is the outcome of evaluating policies.
type Decision int

// Decisions, in IAM's evaluation order.
const (
	ImplicitDeny Decision = iota
	Allowed
	ExplicitDeny
)

// Evaluate applies IAM's logic to a set of policies: an explicit deny wins, then any
// allow, otherwise deny by default.
func Evaluate(policies []Policy, action, resource string) Decision {
	d := ImplicitDeny
	for _, p := range policies {
		for _, s := range p.Statement {
			if !matchAny(s.Action, action, true) || !matchAny(s.Resource, resource, false) {
				continue
			}
			switch s.Effect {
			case Deny:
				return ExplicitDeny
			case Allow:
				d = Allowed
			}
		}
	}
	return d
}

func matchAny(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			if Match(strings.ToLower(p), strings.ToLower(s)) {
				return true
			}
		} else if Match(p, s) {
			return true
		}
	}
	return false
}

// Match reports whether s matches pattern, where * matches any run of characters
// (including none) and ? matches exactly one. It runs in O(len(pattern)·len(s)).
func Match(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Policies holds the identity policies attached to each role. It is safe for
// concurrent use.
type Policies struct {
	mu     sync.RWMutex
	byRole map[string][]Policy
}

// NewPolicies returns an empty policy set: everything is denied.
func NewPolicies() *Policies { return &Policies{byRole: map[string][]Policy{}} }

// Attach adds a policy to a role.
func (ps *Policies) Attach(role string, p Policy) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("attach policy to %s: %w", role, err)
	}
	ps.mu.Lock()
	ps.byRole[role] = append(ps.byRole[role], p)
	ps.mu.Unlock()
	return nil
}

// Set replaces every policy of a role.
func (ps *Policies) Set(role string, policies ...Policy) error {
	for _, p := range policies {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("set policies of %s: %w", role, err)
		}
	}
	ps.mu.Lock()
	ps.byRole[role] = append([]Policy(nil), policies...)
	ps.mu.Unlock()
	return nil
}

// Authorize returns nil if the principal's role may perform action on resourceARN,
// otherwise an *AccessDeniedError.
func (ps *Policies) Authorize(principal Principal, action, resourceARN string) error {
	ps.mu.RLock()
	pol := ps.byRole[principal.Role]
	ps.mu.RUnlock()
	switch Evaluate(pol, action, resourceARN) {
	case Allowed:
		return nil
	case ExplicitDeny:
		return &AccessDeniedError{Principal: principal, Action: action, Resource: resourceARN, Explicit: true}
	default:
		return &AccessDeniedError{Principal: principal, Action: action, Resource: resourceARN}
	}
}
