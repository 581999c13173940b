package backup

import (
	"context"
	"time"
)

// DefaultRestorableInterval is how often the manager refreshes Restorable
// when Config.RestorableInterval is zero.
const DefaultRestorableInterval = 30 * time.Second

// Restorable is the restorable window as the last List found it: a
// published snapshot, for the metrics endpoint, which must not run
// pgBackRest itself.
type Restorable struct {
	// Earliest and Latest are Listing.EarliestRestorable and
	// LatestRestorable (zero: none yet).
	Earliest time.Time `json:"earliest,omitzero"`
	Latest   time.Time `json:"latest,omitzero"`
	// CheckedAt is when List ran; zero before the first.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// Err is the last List's error, "" when it succeeded.
	Err string `json:"error,omitempty"`
}

// Restorable returns the window the last List found (every List updates
// it; Start refreshes it every RestorableInterval). It never waits on
// pgBackRest.
func (m *Manager) Restorable() Restorable {
	if p := m.restorable.Load(); p != nil {
		return *p
	}
	return Restorable{}
}

func (m *Manager) publishRestorable(l Listing, err error) {
	r := Restorable{Earliest: l.EarliestRestorable, Latest: l.LatestRestorable, CheckedAt: m.cfg.Clock.Now().UTC()}
	if err != nil {
		r.Err = err.Error()
		if old := m.restorable.Load(); old != nil {
			r.Earliest, r.Latest = old.Earliest, old.Latest // keep what was known
		}
	}
	m.restorable.Store(&r)
}

// refreshRestorable lists the repository every interval until ctx ends.
func (m *Manager) refreshRestorable(ctx context.Context) {
	every := m.cfg.RestorableInterval
	if every < 0 {
		return
	}
	if every == 0 {
		every = DefaultRestorableInterval
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.cfg.Clock.After(every):
		}
		lctx, cancel := context.WithTimeout(ctx, every)
		_, _ = m.List(lctx) // List publishes; a failure is kept in Err
		cancel()
	}
}
