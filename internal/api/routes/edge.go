package routes

import (
	"net/http"
	"time"

	"github.com/haven-platform/haven/internal/api"
)

// Edge is what the edge routes need of the edge tier.
type Edge interface {
	// Invalidate drops the cached objects of paths; they are gone when it returns.
	Invalidate(paths ...string) (int, error)
}

// EdgeRoutes adds the edge's routes. edge returns nil while the edge does
// not run (not started yet, or edge.listen is empty). The edge records each
// invalidation in the event log itself.
func EdgeRoutes(mux *http.ServeMux, edge func() Edge) {
	mux.HandleFunc("POST /v1/edge/invalidations", func(w http.ResponseWriter, req *http.Request) {
		var in api.InvalidationRequest
		if !decode(w, req, &in) {
			return
		}
		e := edge()
		if e == nil {
			replyErr(w, 0, unavailable("invalidate: the edge is not running (edge.listen is empty, or the region is still starting): `haven status` says which"))
			return
		}
		start := time.Now()
		n, err := e.Invalidate(in.Paths...)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		reply(w, http.StatusOK, api.InvalidationResult{Paths: in.Paths, Objects: n, TookMS: float64(time.Since(start).Microseconds()) / 1000})
	})
}
