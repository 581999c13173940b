package spec

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Time is a moment written as an RFC 3339 time ("2026-11-30T06:00:00Z",
// "2026-11-30T07:00:00+01:00") or as a date ("2026-11-30"), which means
// midnight at the start of that day in the time zone it is resolved in
// (In). The zero Time is unset.
type Time struct {
	raw  string
	t    time.Time
	date bool // written as a date: t is midnight UTC until In resolves it
}

const dateLayout = "2006-01-02"

// ParseTime parses an RFC 3339 time or a date.
func ParseTime(s string) (Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return Time{raw: s, t: t}, nil
	}
	if t, err := time.Parse(dateLayout, s); err == nil {
		return Time{raw: s, t: t, date: true}, nil
	}
	return Time{}, fmt.Errorf("must be an RFC 3339 time such as 2026-11-30T06:00:00Z or a date such as 2026-11-30, got %q", s)
}

// In resolves a date to midnight in loc; an RFC 3339 time is unchanged.
func (t Time) In(loc *time.Location) Time {
	if !t.date || loc == nil {
		return t
	}
	y, m, d := t.t.Date()
	t.t = time.Date(y, m, d, 0, 0, 0, 0, loc)
	return t
}

// T returns the moment (the zero time.Time when unset).
func (t Time) T() time.Time { return t.t }

// IsZero reports whether the time is unset.
func (t Time) IsZero() bool { return t.raw == "" }

// String is the value as written.
func (t Time) String() string { return t.raw }

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *Time) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a time such as 2026-11-30T06:00:00Z, got a %s", kindName(n.Kind))
	}
	v, err := ParseTime(n.Value)
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (t Time) MarshalYAML() (any, error) { return t.raw, nil }

// MarshalJSON writes the value as written.
func (t Time) MarshalJSON() ([]byte, error) { return json.Marshal(t.raw) }
