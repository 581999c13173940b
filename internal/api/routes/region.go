package routes

import (
	"context"
	"net/http"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/failpoint"
)

// Region is what the region-wide routes need: a status assembled from the
// tiers' snapshots, the event log, faults, capacity and run-command.
type Region interface {
	// Status is the whole region from the tiers' snapshots; it never waits on a tier.
	Status() api.Status
	// Shutdown asks the daemon to stop the region.
	Shutdown()
	// Handover asks the daemon to exit, leaving the data plane running for
	// another daemon to adopt.
	Handover()
	// Events returns the events q selects.
	Events(q api.EventQuery) []api.Event
	// Inject injects an external fault scenario.
	Inject(ctx context.Context, in api.FaultRequest) (api.FaultResult, error)
	// SetCapacity changes the fleet's capacity.
	SetCapacity(in api.CapacityRequest) error
	// RunOnInstance runs a command inside an instance.
	RunOnInstance(ctx context.Context, id string, in api.RunRequest) (api.RunResult, error)
}

// RegionRoutes adds the region-wide routes.
func RegionRoutes(mux *http.ServeMux, r Region) {
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, r.Status())
	})
	mux.HandleFunc("POST /v1/shutdown", func(w http.ResponseWriter, _ *http.Request) {
		r.Shutdown()
		reply(w, http.StatusAccepted, map[string]string{"status": "stopping"})
	})
	mux.HandleFunc("POST /v1/handover", func(w http.ResponseWriter, _ *http.Request) {
		r.Handover()
		reply(w, http.StatusAccepted, map[string]string{"status": "handing over"})
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, req *http.Request) {
		q, err := api.ParseEventQuery(req.URL.Query())
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		reply(w, http.StatusOK, r.Events(q))
	})
	mux.HandleFunc("GET /v1/faults", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, failpoint.Catalog)
	})
	mux.HandleFunc("POST /v1/faults", func(w http.ResponseWriter, req *http.Request) {
		var in api.FaultRequest
		if !decode(w, req, &in) {
			return
		}
		out, err := r.Inject(req.Context(), in)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/fleet/capacity", func(w http.ResponseWriter, req *http.Request) {
		var in api.CapacityRequest
		if !decode(w, req, &in) {
			return
		}
		if err := r.SetCapacity(in); err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		reply(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /v1/instances/{id}/run", func(w http.ResponseWriter, req *http.Request) {
		var in api.RunRequest
		if !decode(w, req, &in) {
			return
		}
		if in.TimeoutMS <= 0 {
			in.TimeoutMS = int((30 * time.Second).Milliseconds())
		}
		res, err := r.RunOnInstance(req.Context(), req.PathValue("id"), in)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		reply(w, http.StatusOK, res)
	})
}
