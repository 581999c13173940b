package api

import (
	"context"
	"net/http"
	"time"

	"github.com/haven-platform/haven/internal/plan"
)

// SpecState is the spec a region runs and its last apply: `haven status`
// shows it.
type SpecState struct {
	// Hash is the recorded spec's hash (plan.Hash); "" before the region
	// is ready.
	Hash string `json:"hash"`
	// RecordedAt is when it was recorded; By is "up" or "apply".
	RecordedAt time.Time `json:"recorded_at,omitzero"`
	By         string    `json:"by,omitempty"`
	// LastApply is the last apply's journal summary (nil: none yet).
	LastApply *ApplySummary `json:"last_apply,omitempty"`
	// Drift is filled by the CLI: the spec file compared with the
	// recorded spec (nil when it was not compared).
	Drift *Drift `json:"drift,omitempty"`
}

// ApplySummary is one apply as its journal records it.
type ApplySummary struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	// Outcome is a plan.Outcome* ("" while it runs).
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
	// Applied of Changes were made before it ended.
	Applied int `json:"applied"`
	Changes int `json:"changes"`
}

// Drift is how a spec file differs from the recorded spec.
type Drift struct {
	File    string `json:"file"`
	Hash    string `json:"hash"`
	Changes int    `json:"changes"`
}

// SpecRequest carries a spec file's text (POST /v1/plan, POST /v1/apply).
type SpecRequest struct {
	// File names the file, for messages.
	File string `json:"file"`
	// Spec is the file's YAML.
	Spec string `json:"spec"`
}

// ApplyResult is what an apply did.
type ApplyResult struct {
	Plan plan.Plan `json:"plan"`
	// Outcome is plan.OutcomeApplied, plan.OutcomeRolledBack, or
	// "no changes".
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
	// Log is what each step did, in order.
	Log []string `json:"log"`
	// Spec is the region's spec state afterwards.
	Spec SpecState `json:"spec"`
}

// Plan asks the daemon for the plan from its recorded spec to r's.
func (c *Client) Plan(ctx context.Context, r SpecRequest) (plan.Plan, error) {
	var out plan.Plan
	err := c.do(ctx, http.MethodPost, "/v1/plan", r, &out)
	return out, err
}

// Apply asks the daemon to apply r's spec; it returns when every change
// is made, or rolled back.
func (c *Client) Apply(ctx context.Context, r SpecRequest) (ApplyResult, error) {
	var out ApplyResult
	err := c.do(ctx, http.MethodPost, "/v1/apply", r, &out)
	return out, err
}

// Spec returns the recorded spec's state.
func (c *Client) Spec(ctx context.Context) (SpecState, error) {
	var out SpecState
	err := c.do(ctx, http.MethodGet, "/v1/spec", nil, &out)
	return out, err
}
