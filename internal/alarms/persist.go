package alarms

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/haven-platform/haven/internal/atomicfile"
)

// StateFile is the engine's file in its state directory: every alarm's
// state and bounded history, and the outbox of notifications not yet
// acknowledged. It is replaced atomically (internal/atomicfile) on every
// change, with mode 0600; it holds no secret.
const StateFile = "alarms.json"

const stateVersion = 1

// HistoryType is the kind of a history item, as in CloudWatch's
// DescribeAlarmHistory.
type HistoryType string

// History item types.
const (
	HistoryConfigurationUpdate HistoryType = "ConfigurationUpdate"
	HistoryStateUpdate         HistoryType = "StateUpdate"
	HistoryAction              HistoryType = "Action"
)

// HistoryItem is one entry of an alarm's history.
type HistoryItem struct {
	Time    time.Time   `json:"time"`
	Type    HistoryType `json:"type"`
	Summary string      `json:"summary"`
	// Seq is the transition's number (its idempotency key ends with it);
	// 0 for configuration updates.
	Seq uint64 `json:"seq,omitempty"`
	// OldState, NewState, Reason and ReasonData are set on state updates.
	OldState   State       `json:"old_state,omitempty"`
	NewState   State       `json:"new_state,omitempty"`
	Reason     string      `json:"reason,omitempty"`
	ReasonData *ReasonData `json:"reason_data,omitempty"`
	// Action, Attempt, Receipt and Error are set on action items.
	Action  string `json:"action,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	Receipt string `json:"receipt,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Delivery is one notification to one action: an entry of the outbox until
// the action acknowledges it.
type Delivery struct {
	// ID is IdempotencyKey#action.
	ID string `json:"id"`
	// Seq is the transition's number.
	Seq          uint64       `json:"seq"`
	Alarm        string       `json:"alarm"`
	Action       string       `json:"action"`
	Notification Notification `json:"notification"`
	Created      time.Time    `json:"created"`
	Attempts     int          `json:"attempts"`
	LastAttempt  time.Time    `json:"last_attempt,omitzero"`
	NextAttempt  time.Time    `json:"next_attempt"`
	LastError    string       `json:"last_error,omitempty"`
}

type alarmRecord struct {
	State      State       `json:"state"`
	Reason     string      `json:"reason"`
	ReasonData *ReasonData `json:"reason_data,omitempty"`
	Updated    time.Time   `json:"updated"`
	// States holds configuration and state updates, Actions action items;
	// each is bounded separately, so a failing action cannot push the
	// state changes out.
	States  []HistoryItem `json:"states"`
	Actions []HistoryItem `json:"actions"`
}

type fileState struct {
	Version int                     `json:"version"`
	Region  string                  `json:"region"`
	Seq     uint64                  `json:"seq"`
	Alarms  map[string]*alarmRecord `json:"alarms"`
	Outbox  []*Delivery             `json:"outbox"`
}

// load reads the state file, or returns an empty state (fresh) when there
// is none. Temp files a crash left behind are removed.
func load(dir, region string) (st *fileState, fresh bool, err error) {
	path := filepath.Join(dir, StateFile)
	if left, _ := filepath.Glob(path + atomicfile.TempMarker + "*"); len(left) > 0 {
		for _, l := range left {
			_ = os.Remove(l)
		}
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &fileState{Version: stateVersion, Region: region, Alarms: map[string]*alarmRecord{}}, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read alarm state: %w", err)
	}
	st = &fileState{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, false, fmt.Errorf("read alarm state %s: %w: the file is damaged; move it aside to start with fresh alarm states (its undelivered notifications would be lost)", path, err)
	}
	if st.Version != stateVersion {
		return nil, false, fmt.Errorf("read alarm state %s: version %d, this haven reads version %d", path, st.Version, stateVersion)
	}
	if st.Region != region {
		return nil, false, fmt.Errorf("read alarm state %s: it belongs to region %q, not %q: give each region its own state dir", path, st.Region, region)
	}
	if st.Alarms == nil {
		st.Alarms = map[string]*alarmRecord{}
	}
	return st, false, nil
}

func (st *fileState) save(dir string, opts atomicfile.Options) error {
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return fmt.Errorf("encode alarm state: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, StateFile), append(b, '\n'), 0o600, opts); err != nil {
		return fmt.Errorf("save alarm state: %w", err)
	}
	return nil
}

func appendBounded(items []HistoryItem, it HistoryItem, limit int) []HistoryItem {
	items = append(items, it)
	if len(items) > limit {
		items = append([]HistoryItem(nil), items[len(items)-limit:]...)
	}
	return items
}
