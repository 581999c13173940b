package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/spec"
)

// Record is the spec a region runs: the one last brought up or applied in
// full. It is replaced only when every change of an apply is done.
type Record struct {
	// Hash is the spec's Hash.
	Hash string `json:"hash"`
	// Spec is the spec as YAML, defaults filled in.
	Spec string `json:"spec"`
	// At is when it was recorded; By is "up" or "apply".
	At time.Time `json:"at"`
	By string    `json:"by"`
}

// Step statuses in a Journal.
const (
	StepPending = "pending"
	StepApplied = "applied"
)

// Outcomes of a Journal.
const (
	// OutcomeApplied: every change was made; the record is the new spec.
	OutcomeApplied = "applied"
	// OutcomeRolledBack: a change failed and apply put the region back on
	// the old spec; the record is unchanged.
	OutcomeRolledBack = "rolled back"
	// OutcomeCompletedByUp: the daemon stopped mid-apply and the next up
	// started the region on the new spec.
	OutcomeCompletedByUp = "completed by up"
	// OutcomeRevertedByUp: the daemon stopped mid-apply and the next up
	// started the region on the old spec.
	OutcomeRevertedByUp = "reverted by up"
	// OutcomeSupersededByUp: the daemon stopped mid-apply and the next up
	// started the region on a third spec.
	OutcomeSupersededByUp = "superseded by up"
)

// Journal is one apply: written before its first change and after each,
// so a daemon killed mid-apply leaves a record of how far it got.
type Journal struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Spec is the new spec as YAML.
	Spec      string    `json:"spec"`
	StartedAt time.Time `json:"started_at"`
	Steps     []Step    `json:"steps"`
	// Outcome is "" while the apply runs (or when its daemon died), then
	// one of the Outcome constants.
	Outcome string    `json:"outcome,omitempty"`
	Error   string    `json:"error,omitempty"`
	EndedAt time.Time `json:"ended_at,omitzero"`
}

// Step is one change of a journal and how far it got.
type Step struct {
	Change
	Status string `json:"status"`
}

// Unfinished reports whether the journal's apply never ended.
func (j *Journal) Unfinished() bool { return j != nil && j.Outcome == "" }

// Resolve decides what an up that starts the region on the spec of hash
// started does to an unfinished journal: the region runs that spec in
// full, and the outcome says which one it was.
func Resolve(j Journal, started string) string {
	switch started {
	case j.To:
		return OutcomeCompletedByUp
	case j.From:
		return OutcomeRevertedByUp
	}
	return OutcomeSupersededByUp
}

// EncodeSpec writes a spec as YAML; Parse reads it back to the same Hash.
func EncodeSpec(s spec.Spec) (string, error) {
	b, err := yaml.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode spec: %w", err)
	}
	return string(b), nil
}

// Store keeps the record and the journal in a directory of the state dir.
type Store struct{ Dir string }

// StoreDir is the store's directory inside a state dir.
func StoreDir(stateDir string) string { return filepath.Join(stateDir, "spec") }

func (s Store) path(name string) string { return filepath.Join(s.Dir, name) }

// Record returns the recorded spec; ok is false when none is recorded
// (a region never brought up by this version of haven).
func (s Store) Record() (rec Record, sp spec.Spec, ok bool, err error) {
	if ok, err = s.read("applied.json", &rec); !ok || err != nil {
		return rec, sp, ok, err
	}
	sp, err = spec.Parse([]byte(rec.Spec), s.path("applied.json"))
	if err != nil {
		return rec, sp, false, fmt.Errorf("read recorded spec: %w", err)
	}
	return rec, sp, true, nil
}

// SaveRecord records s as the spec the region runs.
func (s Store) SaveRecord(sp spec.Spec, by string, at time.Time) (Record, error) {
	text, err := EncodeSpec(sp)
	if err != nil {
		return Record{}, err
	}
	rec := Record{Hash: Hash(sp), Spec: text, At: at.UTC(), By: by}
	return rec, s.write("applied.json", rec)
}

// Journal returns the last apply's journal (ok false: there was none).
func (s Store) Journal() (j Journal, ok bool, err error) {
	ok, err = s.read("apply.json", &j)
	return j, ok, err
}

// SaveJournal writes the journal.
func (s Store) SaveJournal(j Journal) error { return s.write("apply.json", j) }

func (s Store) read(name string, v any) (bool, error) {
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", s.path(name), err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("read %s: %w; move it away to start over", s.path(name), err)
	}
	return true, nil
}

func (s Store) write(name string, v any) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.Dir, err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return atomicfile.WriteFile(s.path(name), append(b, '\n'), 0o600)
}
