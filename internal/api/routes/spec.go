package routes

import (
	"context"
	"net/http"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/plan"
)

// Specs is what the plan and apply routes need of the region.
type Specs interface {
	// SpecState is the recorded spec's hash and last apply.
	SpecState() api.SpecState
	// Plan compares the recorded spec and the live region with r's spec.
	Plan(ctx context.Context, r api.SpecRequest) (plan.Plan, error)
	// Apply carries r's plan out; a refused plan is an error and changes nothing.
	Apply(ctx context.Context, r api.SpecRequest) (api.ApplyResult, error)
}

// SpecRoutes adds GET /v1/spec, POST /v1/plan and POST /v1/apply.
func SpecRoutes(mux *http.ServeMux, s Specs) {
	mux.HandleFunc("GET /v1/spec", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, s.SpecState())
	})
	mux.HandleFunc("POST /v1/plan", func(w http.ResponseWriter, req *http.Request) {
		var in api.SpecRequest
		if !decode(w, req, &in) {
			return
		}
		p, err := s.Plan(req.Context(), in)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		reply(w, http.StatusOK, p)
	})
	mux.HandleFunc("POST /v1/apply", func(w http.ResponseWriter, req *http.Request) {
		var in api.SpecRequest
		if !decode(w, req, &in) {
			return
		}
		res, err := s.Apply(req.Context(), in)
		if err != nil {
			replyErr(w, http.StatusConflict, err)
			return
		}
		reply(w, http.StatusOK, res)
	})
}
