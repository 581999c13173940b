package routes

import (
	"context"
	"net/http"

	"github.com/haven-platform/haven/internal/api"
)

// Identity is what the identity routes need of the identity tier.
type Identity interface {
	// RotateKey makes the provider sign with a new key at once.
	RotateKey(ctx context.Context) (api.IdentityRotation, error)
}

// IdentityTier gives the routes the tier, nil when it does not run.
type IdentityTier func() Identity

// IdentityRoutes adds the identity routes (operator-only, as every route
// on the 0600 socket).
func IdentityRoutes(mux *http.ServeMux, tier IdentityTier) {
	mux.HandleFunc("POST /v1/identity/rotate-key", func(w http.ResponseWriter, req *http.Request) {
		id := tier()
		if id == nil {
			replyErr(w, 0, unavailable("the identity provider is not running: set identity.enabled in the spec (and wait for `haven status` to say ready)"))
			return
		}
		out, err := id.RotateKey(req.Context())
		if err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		reply(w, http.StatusOK, out)
	})
}
