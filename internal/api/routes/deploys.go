package routes

import (
	"context"
	"errors"
	"net/http"

	"github.com/haven-platform/haven/internal/release"
)

// Releases is the release tier's narrow interface (*release.Controller).
type Releases interface {
	Deploy(ctx context.Context, req release.DeployRequest) (release.Rollout, error)
	Rollback(ctx context.Context, to string) (release.Rollout, error)
	Status() release.Status
	History() []release.Rollout
	Versions() []release.Version
}

// RollbackRequest names the version to roll back to ("": the previous one).
type RollbackRequest struct {
	To string `json:"to,omitempty"`
}

// DeployHistory is every rollout and version, newest first.
type DeployHistory struct {
	Rollouts []release.Rollout `json:"rollouts"`
	Versions []release.Version `json:"versions"`
}

// DeployRoutes adds the release routes; get returns nil while the fleet is not up.
func DeployRoutes(mux *http.ServeMux, get func() Releases) {
	tier := func(w http.ResponseWriter) Releases {
		r := get()
		if r == nil {
			replyErr(w, http.StatusServiceUnavailable, unavailable("releases are not running yet: the fleet starts them; wait for haven status to say ready"))
		}
		return r
	}
	mux.HandleFunc("POST /v1/deploys", func(w http.ResponseWriter, req *http.Request) {
		r := tier(w)
		if r == nil {
			return
		}
		var in release.DeployRequest
		if !decode(w, req, &in) {
			return
		}
		out, err := r.Deploy(req.Context(), in)
		if err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, release.ErrInProgress) {
				code = http.StatusConflict
			}
			replyErr(w, code, err)
			return
		}
		reply(w, http.StatusAccepted, out)
	})
	mux.HandleFunc("POST /v1/deploys/rollback", func(w http.ResponseWriter, req *http.Request) {
		r := tier(w)
		if r == nil {
			return
		}
		var in RollbackRequest
		if !decode(w, req, &in) {
			return
		}
		out, err := r.Rollback(req.Context(), in.To)
		if err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, release.ErrInProgress) {
				code = http.StatusConflict
			}
			replyErr(w, code, err)
			return
		}
		reply(w, http.StatusAccepted, out)
	})
	mux.HandleFunc("GET /v1/deploys/status", func(w http.ResponseWriter, _ *http.Request) {
		if r := tier(w); r != nil {
			reply(w, http.StatusOK, r.Status())
		}
	})
	mux.HandleFunc("GET /v1/deploys", func(w http.ResponseWriter, _ *http.Request) {
		if r := tier(w); r != nil {
			reply(w, http.StatusOK, DeployHistory{Rollouts: r.History(), Versions: r.Versions()})
		}
	})
}
