package drill

import (
	"context"

	"github.com/haven-platform/haven/internal/load"
)

// LoadJourney adapts a site's logged-in users to the load generator:
// request n is the next step of user n mod len(Users), judged by the
// workload's Check.
type LoadJourney struct {
	Site  *Site
	Users []*User
}

var _ load.Journey = LoadJourney{}

// Step performs request n.
func (j LoadJourney) Step(ctx context.Context, n uint64) load.Outcome {
	u := j.Users[n%uint64(len(j.Users))]
	_, status, err := j.Site.StepStatus(ctx, u)
	return load.Outcome{Status: status, Err: err}
}
