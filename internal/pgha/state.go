package pgha

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/haven-platform/haven/internal/atomicfile"
)

// Durability says what the primary does when its synchronous standby is lost.
type Durability string

const (
	// DurabilityRequired keeps commits waiting until the standby is back:
	// no commit is ever acknowledged by the primary alone.
	DurabilityRequired Durability = "required"
	// DurabilityPreferred first records durably that the standby is not
	// eligible for promotion, then stops waiting for it; synchronous
	// replication is restored once the standby has caught up.
	DurabilityPreferred Durability = "preferred"
)

// State is the controller's durable record. It is persisted atomically
// before any client may observe its effect.
type State struct {
	// Epoch increases by one at every promotion; it never moves backwards.
	Epoch uint64 `json:"epoch"`
	// Primary is the node that is the primary in this epoch.
	Primary string `json:"primary"`
	// Standby is the other node ("" for a single-node database).
	Standby string `json:"standby,omitempty"`
	// StandbyEligible is true only while Standby is known to hold every
	// acknowledged commit, i.e. the primary waits for it. Only an eligible
	// standby is ever promoted.
	StandbyEligible bool `json:"standby_eligible"`
	// SyncEnabled says whether the primary's synchronous_standby_names names
	// the standby.
	SyncEnabled bool `json:"sync_enabled"`
	// Durability is the configured mode; the configuration wins on restart.
	Durability Durability `json:"durability"`
}

// loadState reads the persisted state; ok is false when there is none yet.
func loadState(path string) (State, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, false, fmt.Errorf("decode state %s: %w", path, err)
	}
	return s, true, nil
}

// saveState persists s atomically: write a temp file, fsync, rename over the
// old one, fsync the directory.
func saveState(path string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save controller state: %w", err)
	}
	return nil
}
