package secrets

import (
	"cmp"
	"errors"
	"slices"
	"sync"

	"time"
)

// Stats is what the secrets tier publishes for the metrics endpoint: API
// calls, rotations and each secret's current version. It holds no secret
// value. Counters are since the daemon started.
type Stats struct {
	// Calls counts API calls by action and result ("Success" or the error
	// code, e.g. AccessDeniedException), sorted.
	Calls []CallCount `json:"calls"`
	// Rotations counts finished rotations by secret and outcome ("success"
	// or "failure"), sorted.
	Rotations []RotationCount `json:"rotations"`
	// Secrets are the secrets with an AWSCURRENT version, sorted by name.
	Secrets []SecretSummary `json:"secrets"`
}

// CallCount is how many calls of one action had one result.
type CallCount struct {
	Action string `json:"action"`
	Result string `json:"result"`
	Count  uint64 `json:"count"`
}

// RotationCount is how many rotations of one secret had one outcome.
type RotationCount struct {
	Secret  string `json:"secret"`
	Outcome string `json:"outcome"`
	Count   uint64 `json:"count"`
}

// SecretSummary is a secret's current version, without its value.
type SecretSummary struct {
	Name string `json:"name"`
	// CurrentCreated is when the AWSCURRENT version was created.
	CurrentCreated time.Time `json:"current_created"`
	// LastRotated is when a rotation last finished (zero: never).
	LastRotated time.Time `json:"last_rotated,omitzero"`
}

// counter is a small map of counts published as a sorted snapshot.
type counter[K comparable] struct {
	mu sync.Mutex
	m  map[K]uint64
}

func (c *counter[K]) add(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[K]uint64{}
	}
	c.m[k]++
}

func (c *counter[K]) each(f func(K, uint64)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.m {
		f(k, n)
	}
}

type callKey struct{ action, result string }
type rotationKey struct{ secret, outcome string }

// publishSummary stores the summary of st (called with s.mu held, after
// every successful update, and at open).
func (s *Store) publishSummary(st *state) {
	out := []SecretSummary{}
	for _, sec := range st.Secrets {
		if v := sec.staged(StageCurrent); v != nil {
			out = append(out, SecretSummary{Name: sec.Name, CurrentCreated: v.Created, LastRotated: sec.LastRotated})
		}
	}
	slices.SortFunc(out, func(a, b SecretSummary) int { return cmp.Compare(a.Name, b.Name) })
	s.summary.Store(&out)
}

// Summary returns each secret's current version (no value), from a
// published snapshot: it never waits on the store's lock.
func (s *Store) Summary() []SecretSummary {
	if p := s.summary.Load(); p != nil {
		return slices.Clone(*p)
	}
	return []SecretSummary{}
}

// countRotation records a finished rotation; a refused start (one already
// running) is not one.
func (d *Driver) countRotation(name string, err error) {
	if errors.Is(err, ErrRotationInProgress) || errors.Is(err, ErrNoRotator) {
		return
	}
	outcome := "success"
	if err != nil {
		outcome = "failure"
	}
	d.rotations.add(rotationKey{name, outcome})
}

// Stats returns the tier's counters and the secrets' current versions.
func (s *Server) Stats() Stats {
	st := Stats{Calls: []CallCount{}, Rotations: []RotationCount{}, Secrets: s.store.Summary()}
	s.calls.each(func(k callKey, n uint64) { st.Calls = append(st.Calls, CallCount{k.action, k.result, n}) })
	s.driver.rotations.each(func(k rotationKey, n uint64) {
		st.Rotations = append(st.Rotations, RotationCount{k.secret, k.outcome, n})
	})
	slices.SortFunc(st.Calls, func(a, b CallCount) int {
		return cmp.Or(cmp.Compare(a.Action, b.Action), cmp.Compare(a.Result, b.Result))
	})
	slices.SortFunc(st.Rotations, func(a, b RotationCount) int {
		return cmp.Or(cmp.Compare(a.Secret, b.Secret), cmp.Compare(a.Outcome, b.Outcome))
	})
	return st
}
