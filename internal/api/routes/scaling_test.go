package routes

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/scaling"
)

func ip(i int) *int { return &i }

func TestScheduledActionNamesTheField(t *testing.T) {
	at := time.Date(2026, 11, 30, 6, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   api.ScheduledActionRequest
		want string
	}{
		{"bad name!", api.ScheduledActionRequest{StartTime: at, Min: ip(6)}, "name:"},
		{"x", api.ScheduledActionRequest{Recurrence: "61 * * * *", Min: ip(6)}, "recurrence:"},
		{"x", api.ScheduledActionRequest{Recurrence: "0 7 * * *", TimeZone: "Mars/Olympus", Min: ip(6)}, "time_zone:"},
		{"x", api.ScheduledActionRequest{Min: ip(6)}, "start_time:"},
		{"x", api.ScheduledActionRequest{StartTime: at, EndTime: at.Add(time.Hour), Min: ip(6)}, "end_time:"},
	} {
		if _, err := ScheduledAction(tc.name, tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ScheduledAction(%q, %+v) = %v, want an error naming %s", tc.name, tc.in, err, tc.want)
		}
	}
	a, err := ScheduledAction("prescale", api.ScheduledActionRequest{StartTime: at, Min: ip(6)})
	if err != nil || !a.Schedule.Next(at.Add(-time.Second)).Equal(at) || !a.Schedule.Next(at).IsZero() {
		t.Errorf("one-time action: %+v, %v", a, err)
	}
	a, err = ScheduledAction("morning", api.ScheduledActionRequest{Recurrence: "0 7 * * MON-FRI", TimeZone: "Europe/Dublin", Min: ip(6)})
	// 07:00 in Dublin in June is 06:00 UTC.
	if err != nil || !a.Schedule.Next(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)).Equal(time.Date(2026, 6, 1, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("recurring action in Dublin: %v", err)
	}
}

// tier is the scaling tier over a real loop and a model fleet.
type tier struct {
	loop *scaling.Loop
	mu   sync.Mutex
	cap  scaling.Capacity
}

func (s *tier) Observe(context.Context, time.Time) (scaling.Capacity, scaling.Observed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cap, scaling.Observed{}, nil
}

func (s *tier) SetCapacity(_ context.Context, c scaling.Capacity) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cap = c
	return nil
}

func (s *tier) Snapshot() *scaling.Snapshot { return s.loop.Snapshot() }
func (s *tier) Readings() scaling.Readings {
	return scaling.Readings{AvgCPU: math.NaN()}
}
func (s *tier) Info() ScalingInfo {
	return ScalingInfo{Warmup: 6 * time.Second, TimeScale: 20, CPUAccounting: true}
}
func (s *tier) SetSuspended(b bool) { s.loop.SetSuspended(b) }
func (s *tier) PutScheduledAction(a scaling.ScheduledAction) error {
	return s.loop.PutScheduledAction(a)
}
func (s *tier) DeleteScheduledAction(n string) bool { return s.loop.DeleteScheduledAction(n) }

type eventLog struct{ kinds []string }

func (e *eventLog) Add(component, kind, _, _ string) { e.kinds = append(e.kinds, component+"/"+kind) }

// TestScalingRoutes drives the routes over a real loop: a one-time action
// put, listed, run (an activity with its cause), deleted; suspend and
// resume; each operator change in the event log.
func TestScalingRoutes(t *testing.T) {
	tr := &tier{cap: scaling.Capacity{Min: 2, Max: 10, Desired: 2}}
	loop, err := scaling.NewLoop(scaling.LoopConfig{
		Scaling: scaling.Config{Period: 3 * time.Second, Policies: []scaling.Policy{{Name: "cpu-50", Metric: scaling.CPUUtilization, Target: 50}}},
		Source:  tr, Actuator: tr,
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.loop = loop
	if _, err := loop.Tick(context.Background()); err != nil { // the first sight: nothing runs retroactively
		t.Fatal(err)
	}
	ev := &eventLog{}
	mux := http.NewServeMux()
	var running Scaling
	ScalingRoutes(mux, func() Scaling { return running }, ev)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	call := func(method, path string, in, out any) int {
		t.Helper()
		var body bytes.Buffer
		if in != nil {
			json.NewEncoder(&body).Encode(in)
		}
		req, _ := http.NewRequest(method, srv.URL+path, &body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	if code := call("GET", "/v1/fleet/activity", nil, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("before the tier runs: %d, want 503", code)
	}
	running = tr
	at := time.Now().Add(50 * time.Millisecond)
	if code := call("PUT", "/v1/fleet/scheduled-actions/prescale", api.ScheduledActionRequest{StartTime: at, Min: ip(6)}, nil); code != 200 {
		t.Fatalf("put: %d", code)
	}
	var errBody api.Error
	if code := call("PUT", "/v1/fleet/scheduled-actions/bad", api.ScheduledActionRequest{StartTime: at, Min: ip(6), Max: ip(3)}, &errBody); code != 400 || !strings.Contains(errBody.Message, "max") {
		t.Errorf("min above max: %d %q", code, errBody.Message)
	}
	var sched api.FleetSchedule
	call("GET", "/v1/fleet/schedule", nil, &sched)
	if len(sched.Runs) != 1 || sched.Runs[0].Action != "prescale" || *sched.Runs[0].Min != 6 {
		t.Fatalf("schedule = %+v", sched)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := loop.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	var acts []api.ScalingActivity
	call("GET", "/v1/fleet/activity", nil, &acts)
	if len(acts) != 1 || acts[0].Kind != "scheduled" || acts[0].From != 2 || acts[0].To != 6 || !strings.Contains(acts[0].Cause, "scheduled action prescale") {
		t.Fatalf("activity = %+v", acts)
	}
	var st api.ScalingStatus
	call("GET", "/v1/fleet/scaling", nil, &st)
	if st.Min != 6 || st.Desired != 6 || st.PeriodMS != 3000 || st.WarmupMS != 6000 || len(st.Policies) != 1 || st.AvgCPU != nil {
		t.Errorf("scaling status = %+v", st)
	}
	if code := call("POST", "/v1/fleet/scaling", api.ScalingSuspendRequest{Suspended: true}, nil); code != 200 || !loop.Snapshot().Suspended {
		t.Errorf("suspend: %d, suspended %v", code, loop.Snapshot().Suspended)
	}
	call("POST", "/v1/fleet/scaling", api.ScalingSuspendRequest{Suspended: false}, nil)
	if code := call("DELETE", "/v1/fleet/scheduled-actions/prescale", nil, nil); code != 200 {
		t.Errorf("delete: %d", code)
	}
	if code := call("DELETE", "/v1/fleet/scheduled-actions/prescale", nil, &errBody); code != 404 || !strings.Contains(errBody.Message, "not found") {
		t.Errorf("delete again: %d %q", code, errBody.Message)
	}
	want := "scaling/scheduled-action-put scaling/suspended scaling/resumed scaling/scheduled-action-deleted"
	if got := strings.Join(ev.kinds, " "); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}
