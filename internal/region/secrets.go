package region

import (
	"context"
	"net/http"

	"github.com/haven-platform/haven/internal/fleet"
)

// secretsExtras holds the identity and secrets tier. secrets.go owns it.
type secretsExtras struct{}

// appAuth is the pg_hba method for the app's roles.
func (r *Region) appAuth() string { return "trust" }

// bootstrapDBLogins creates the app's login roles once the database is up.
func (r *Region) bootstrapDBLogins(ctx context.Context) error { return nil }

// startSecrets starts the secrets service before anything that needs a credential.
func (r *Region) startSecrets(ctx context.Context) error { return nil }

func (r *Region) stopSecrets(ctx context.Context) error { return nil }

// secretsEnv is the non-secret environment every app process (release task
// and instances) gets from the secrets tier, e.g. endpoint URLs.
func (r *Region) secretsEnv() map[string]string { return nil }

// instanceEnv is the per-instance environment, e.g. its metadata endpoint.
func (r *Region) instanceEnv(fleet.InstanceInfo) map[string]string { return nil }

// onFleetEvent lets the secrets tier follow instance lifecycles (an
// instance's metadata endpoint lives and dies with it).
func (r *Region) onFleetEvent(fleet.Event) {}

// routesSecrets adds the secrets routes of the daemon API.
func (r *Region) routesSecrets(mux *http.ServeMux) {}
