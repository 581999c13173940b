package release

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Migration is one schema migration as an app lists it (spec
// app.migrations): the platform knows nothing of the app's schema, only
// which migrations a build carries and which of them break older builds.
type Migration struct {
	Version  int    `json:"version"`
	Name     string `json:"name"`
	Breaking bool   `json:"breaking"`
	// Reason says why a breaking migration breaks older versions.
	Reason string `json:"reason,omitempty"`
}

// ParseMigrations reads an app's migration list: a JSON array of
// migrations, versions strictly increasing.
func ParseMigrations(b []byte) ([]Migration, error) {
	var ms []Migration
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&ms); err != nil {
		return nil, fmt.Errorf("parse migration list: %w (want a JSON array of {version, name, breaking, reason})", err)
	}
	if ms == nil {
		return nil, fmt.Errorf("parse migration list: got null, want a JSON array of {version, name, breaking, reason}")
	}
	for i, m := range ms {
		if i > 0 && m.Version <= ms[i-1].Version {
			return nil, fmt.Errorf("parse migration list: version %d follows %d: versions must increase", m.Version, ms[i-1].Version)
		}
	}
	return ms, nil
}

// NewBreaking returns the breaking migrations of next that current does not
// carry (a version above current's last): the ones that would break current
// while both serve during a rollout. A nil current (its list is unknown)
// counts every breaking migration of next.
func NewBreaking(next, current []Migration) []Migration {
	last := 0
	if len(current) > 0 {
		last = current[len(current)-1].Version
	}
	var out []Migration
	for _, m := range next {
		if m.Breaking && m.Version > last {
			out = append(out, m)
		}
	}
	return out
}

// DescribeBreaking names breaking migrations for an error message.
func DescribeBreaking(ms []Migration) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		p := fmt.Sprintf("migration %d (%s)", m.Version, m.Name)
		if m.Reason != "" {
			p += ": " + m.Reason
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}
