package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Matcher is the set of HTTP status codes a health check counts as
// healthy, in ALB's syntax: "200", "200-299" or "200,302", every code
// within 200–499. It is parsed once, by the spec; the load balancer and the
// Terraform variables take it parsed. The zero Matcher matches nothing.
type Matcher struct {
	text  string
	spans [][2]int
}

// ParseMatcher parses a success-code matcher.
func ParseMatcher(s string) (Matcher, error) {
	bad := func() (Matcher, error) {
		return Matcher{}, fmt.Errorf(`must list status codes within 200–499 such as "200", "200-299" or "200,302", got %q`, s)
	}
	if strings.TrimSpace(s) == "" {
		return bad()
	}
	m := Matcher{}
	var parts []string
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil || a < 200 || b > 499 || b < a {
			return bad()
		}
		m.spans = append(m.spans, [2]int{a, b})
		if a == b {
			parts = append(parts, strconv.Itoa(a))
		} else {
			parts = append(parts, strconv.Itoa(a)+"-"+strconv.Itoa(b))
		}
	}
	m.text = strings.Join(parts, ",")
	return m, nil
}

// MustMatcher is ParseMatcher for literals known to be valid; it panics otherwise.
func MustMatcher(s string) Matcher {
	m, err := ParseMatcher(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Match reports whether code is in the set.
func (m Matcher) Match(code int) bool {
	for _, r := range m.spans {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}

// IsZero reports whether m is the zero Matcher (nothing parsed).
func (m Matcher) IsZero() bool { return len(m.spans) == 0 }

// String is the matcher in ALB's syntax, without spaces ("200,300-302").
func (m Matcher) String() string { return m.text }

// UnmarshalYAML implements yaml.Unmarshaler.
func (m *Matcher) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf(`expected status codes such as "200", got a %s`, kindName(n.Kind))
	}
	v, err := ParseMatcher(n.Value)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (m Matcher) MarshalYAML() (any, error) { return m.text, nil }

// MarshalJSON writes the matcher as its spec string.
func (m Matcher) MarshalJSON() ([]byte, error) { return json.Marshal(m.text) }

// UnmarshalJSON reads the spec string.
func (m *Matcher) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseMatcher(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}
