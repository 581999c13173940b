package routes

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/scaling"
	"github.com/haven-platform/haven/internal/spec"
)

// Scaling is the scaling tier as its routes see it: the loop's published
// snapshot, the sampler's readings, and the operator's controls.
type Scaling interface {
	// Snapshot is the loop's latest snapshot.
	Snapshot() *scaling.Snapshot
	// Readings are the sampler's latest readings.
	Readings() scaling.Readings
	// Info is what the routes report beside the snapshot: the warmup, the
	// time scale, CPU accounting and notes.
	Info() ScalingInfo
	// SetSuspended suspends or resumes scaling.
	SetSuspended(suspended bool)
	// PutScheduledAction adds or replaces a scheduled action.
	PutScheduledAction(a scaling.ScheduledAction) error
	// DeleteScheduledAction removes one; false when there is none of that name.
	DeleteScheduledAction(name string) bool
}

// ScalingInfo is the scaler's fixed facts.
type ScalingInfo struct {
	Warmup        time.Duration
	TimeScale     float64
	CPUAccounting bool
	Notes         []string
}

var actionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ScalingRoutes adds the scaling routes. get returns the scaling tier, nil
// while it is not running; events records what operators change.
func ScalingRoutes(mux *http.ServeMux, get func() Scaling, ev Events) {
	tier := func(w http.ResponseWriter) Scaling {
		s := get()
		if s == nil {
			replyErr(w, http.StatusServiceUnavailable, unavailable("scaling is not running (yet): `haven status` shows the region's phase"))
		}
		return s
	}
	mux.HandleFunc("GET /v1/fleet/activity", func(w http.ResponseWriter, _ *http.Request) {
		s := tier(w)
		if s == nil {
			return
		}
		out := []api.ScalingActivity{}
		for _, a := range s.Snapshot().Activities {
			out = append(out, Activity(a))
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/fleet/schedule", func(w http.ResponseWriter, _ *http.Request) {
		s := tier(w)
		if s == nil {
			return
		}
		snap := s.Snapshot()
		out := api.FleetSchedule{Suspended: snap.Suspended, Actions: append([]string{}, snap.Scheduled...), Runs: []api.ScheduledRun{}}
		for _, r := range snap.NextRuns {
			out.Runs = append(out.Runs, api.ScheduledRun{Action: r.Action, At: r.At, Min: r.Min, Max: r.Max, Desired: r.Desired})
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/fleet/scaling", func(w http.ResponseWriter, _ *http.Request) {
		s := tier(w)
		if s == nil {
			return
		}
		reply(w, http.StatusOK, Status(s))
	})
	mux.HandleFunc("POST /v1/fleet/scaling", func(w http.ResponseWriter, req *http.Request) {
		var in api.ScalingSuspendRequest
		if !decode(w, req, &in) {
			return
		}
		s := tier(w)
		if s == nil {
			return
		}
		s.SetSuspended(in.Suspended)
		what := map[bool]string{true: "suspended", false: "resumed"}[in.Suspended]
		ev.Add("scaling", what, "", "scaling "+what+" by the operator")
		reply(w, http.StatusOK, map[string]string{"status": what})
	})
	mux.HandleFunc("PUT /v1/fleet/scheduled-actions/{name}", func(w http.ResponseWriter, req *http.Request) {
		var in api.ScheduledActionRequest
		if !decode(w, req, &in) {
			return
		}
		name := req.PathValue("name")
		a, err := ScheduledAction(name, in)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		s := tier(w)
		if s == nil {
			return
		}
		if err := s.PutScheduledAction(a); err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		when := "once at " + in.StartTime.UTC().Format(time.RFC3339)
		if in.Recurrence != "" {
			when = fmt.Sprintf("%q", in.Recurrence)
		}
		ev.Add("scaling", "scheduled-action-put", name, fmt.Sprintf("scheduled action %s put: %s, %s", name, when, constraints(in.Min, in.Max, in.Desired)))
		reply(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("DELETE /v1/fleet/scheduled-actions/{name}", func(w http.ResponseWriter, req *http.Request) {
		s := tier(w)
		if s == nil {
			return
		}
		name := req.PathValue("name")
		if !s.DeleteScheduledAction(name) {
			replyErr(w, http.StatusNotFound, fmt.Errorf("scheduled action %s: not found; `haven fleet schedule` lists them", name))
			return
		}
		ev.Add("scaling", "scheduled-action-deleted", name, "scheduled action "+name+" deleted")
		reply(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// ScheduledAction turns a request into a scheduled action, checking what
// the loop's own validation cannot name: the name, the recurrence and its
// time zone, and a one-time action's moment.
func ScheduledAction(name string, in api.ScheduledActionRequest) (scaling.ScheduledAction, error) {
	var errs []error
	if !actionName.MatchString(name) {
		errs = append(errs, fmt.Errorf("name: must be 1–64 letters, digits, - or _, starting with a letter or digit, got %q", name))
	}
	a := scaling.ScheduledAction{Name: name, Start: in.StartTime, End: in.EndTime, Min: in.Min, Max: in.Max, Desired: in.Desired}
	switch {
	case in.Recurrence != "":
		c, err := spec.ParseCron(in.Recurrence)
		if err != nil {
			errs = append(errs, fmt.Errorf("recurrence: %w", err))
		}
		tz := in.TimeZone
		if tz == "" {
			tz = "UTC"
		}
		loc, err := time.LoadLocation(tz)
		if err != nil {
			errs = append(errs, fmt.Errorf("time_zone: must be an IANA time zone such as UTC or Europe/Dublin, got %q", in.TimeZone))
		} else {
			c = c.In(loc)
		}
		a.Schedule = c
	case in.StartTime.IsZero():
		errs = append(errs, errors.New("start_time: a one-time action (no recurrence) needs its moment"))
	default:
		if !in.EndTime.IsZero() {
			errs = append(errs, errors.New("end_time: only a recurring action has an end"))
		}
		a.Schedule = scaling.Once(in.StartTime)
		a.Start = time.Time{}
	}
	return a, errors.Join(errs...)
}

// Activity converts a scaling activity to its wire form.
func Activity(a scaling.Activity) api.ScalingActivity {
	out := api.ScalingActivity{ID: a.ID, At: a.At, Kind: string(a.Kind), Source: a.Source, Metric: string(a.Metric), From: a.From, To: a.To, Cause: a.Cause}
	if a.Kind == scaling.KindTargetTracking {
		out.Value = finite(a.Value)
	}
	return out
}

// Status assembles the scaler's status from its snapshot and readings.
func Status(s Scaling) api.ScalingStatus {
	snap, info := s.Snapshot(), s.Info()
	out := api.ScalingStatus{
		Suspended: snap.Suspended, PeriodMS: snap.Period.Milliseconds(), WarmupMS: info.Warmup.Milliseconds(),
		TimeScale: info.TimeScale, CPUAccounting: info.CPUAccounting, Notes: info.Notes, Policies: []api.ScalingPolicy{},
		Min: snap.State.Min, Max: snap.State.Max, Desired: snap.State.Desired,
		LastReason: snap.LastDecision.Reason, Failures: snap.Failures, LastError: snap.LastError,
		AvgCPU: finite(s.Readings().AvgCPU),
	}
	for _, p := range snap.Policies {
		out.Policies = append(out.Policies, api.ScalingPolicy{Name: p.Name, Metric: string(p.Metric), Target: p.Target})
	}
	for _, v := range snap.LastDecision.Verdicts {
		out.Verdicts = append(out.Verdicts, api.ScalingVerdict{Policy: v.Policy, Kind: string(v.Kind), Desired: v.Desired, Value: finite(v.Value), Reason: v.Reason})
	}
	return out
}

func constraints(minC, maxC, desired *int) string {
	out := ""
	for _, v := range []struct {
		n string
		p *int
	}{{"min", minC}, {"max", maxC}, {"desired", desired}} {
		if v.p != nil {
			if out != "" {
				out += ", "
			}
			out += fmt.Sprintf("%s: %d", v.n, *v.p)
		}
	}
	return out
}

func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	v := math.Round(f*100) / 100
	return &v
}
