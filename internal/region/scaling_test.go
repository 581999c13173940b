package region

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/scaling"
)

// TestWithoutCPUAccounting: without per-instance CPU time the CPU policies
// are left out, so a request-count policy alone decides, and scales in when
// requests fall (a CPU policy without data would have held the scale-in);
// the one warning says what was left out and what remains.
func TestWithoutCPUAccounting(t *testing.T) {
	why := errors.New("cgroup v1 without cpuacct")
	cpu := scaling.Policy{Name: "cpu-50", Metric: scaling.CPUUtilization, Target: 50}
	req := scaling.Policy{Name: "request_count-1200", Metric: scaling.RequestCountPerTarget, Target: 1200}
	sched := scaling.ScheduledAction{Name: "exam-morning", Schedule: scaling.Once(time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)), Min: ptr(4)}

	cases := []struct {
		name     string
		cfg      scaling.Config
		policies []string
		msg      []string
	}{
		{"cpu and requests", scaling.Config{Policies: []scaling.Policy{cpu, req}},
			[]string{"request_count-1200"},
			[]string{"cgroup v1 without cpuacct", "target tracking cpu-50 is left out", "scales on request count (request_count-1200)"}},
		{"cpu only", scaling.Config{Policies: []scaling.Policy{cpu}, Scheduled: []scaling.ScheduledAction{sched}},
			nil,
			[]string{"target tracking cpu-50 is left out", "only scheduled actions change capacity", "add a request_count policy"}},
		{"requests only", scaling.Config{Policies: []scaling.Policy{req}},
			[]string{"request_count-1200"},
			[]string{"CPUUtilization has no data", "the fleet scales on request count"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := withoutCPUAccounting(tc.cfg, why)
			var names []string
			for _, p := range got.Policies {
				names = append(names, p.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.policies, ",") {
				t.Errorf("policies = %v, want %v", names, tc.policies)
			}
			if len(got.Scheduled) != len(tc.cfg.Scheduled) {
				t.Errorf("scheduled actions = %d, want %d (kept)", len(got.Scheduled), len(tc.cfg.Scheduled))
			}
			for _, want := range tc.msg {
				if !strings.Contains(msg, want) {
					t.Errorf("warning %q does not say %q", msg, want)
				}
			}
		})
	}

	// With both policies and no CPU data, low request counts cannot scale
	// in: the CPU policy has no data and so never agrees. Without the CPU
	// policy they do.
	both := scaling.Config{Policies: []scaling.Policy{cpu, req}, Period: time.Minute}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	state := scaling.State{Capacity: scaling.Capacity{Min: 2, Max: 12, Desired: 8}, LastChange: now.Add(-time.Hour), ScheduledThrough: now}
	var dps []scaling.Datapoint
	for i := 20; i > 0; i-- {
		dps = append(dps, scaling.Datapoint{Start: now.Add(-time.Duration(i) * time.Minute), Value: 300, Instances: 8})
	}
	obs := scaling.Observed{Datapoints: map[scaling.Metric][]scaling.Datapoint{scaling.RequestCountPerTarget: dps}}
	if d := both.Decide(state, obs, now); d.Next.Desired != 8 {
		t.Fatalf("with the CPU policy and no CPU data: desired %d, want 8 held (%s)", d.Next.Desired, d.Reason)
	}
	kept, _ := withoutCPUAccounting(both, why)
	if d := kept.Decide(state, obs, now); d.Next.Desired != 2 {
		t.Errorf("request count alone at 300 of 1200 on 8: desired %d, want 2 (%s)", d.Next.Desired, d.Reason)
	}
}

func ptr[T any](v T) *T { return &v }
