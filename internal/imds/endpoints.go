package imds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/peercred"
)

// Revoker forgets the credentials issued to an instance (*iam.Issuer).
type Revoker interface {
	RevokeInstance(instanceID string) int
}

// EndpointsConfig configures Endpoints.
type EndpointsConfig struct {
	// Region, Role and Account are what every instance's metadata says.
	Region, Role, Account string
	// Issuer issues the role's credentials and revokes them. Required.
	Issuer interface {
		CredentialIssuer
		Revoker
	}
	// Clock dates the endpoints. Default: the wall clock.
	Clock clock.Clock
	// Logger receives refused callers and ended identities. Default: discard.
	Logger *slog.Logger
}

// Endpoints runs one metadata endpoint per instance (and one for a one-off
// task): in a region's VPC, inside the instance's own network namespace
// at 169.254.169.254 (Serve), where the namespace identifies the caller;
// without one, on the instance's own loopback address, answering only the
// processes its allow function accepts (Start).
type Endpoints struct {
	cfg EndpointsConfig
	log *slog.Logger

	mu   sync.Mutex
	byID map[string]*running
}

type running struct {
	srv     *Server
	started time.Time
}

// NewEndpoints returns an empty set of endpoints.
func NewEndpoints(cfg EndpointsConfig) *Endpoints {
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Endpoints{cfg: cfg, log: cfg.Logger.With("component", "imds"), byID: map[string]*running{}}
}

// Start starts the endpoint of instance id (in availability zone az) on
// host, answering only connections whose peer processes pass allow, and
// returns its URL. candidates, when not nil, lists the instance's
// processes: a caller is looked for among them alone (peercred.Guard's
// Candidates), not in every process. An id that has one already gets an
// error.
func (e *Endpoints) Start(ctx context.Context, id, az, host string, allow func(pid int) error, candidates func() []int) (string, error) {
	e.mu.Lock()
	_, dup := e.byID[id]
	e.mu.Unlock()
	if dup {
		return "", fmt.Errorf("metadata endpoint of %s: already running", id)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("listen for the metadata endpoint of %s on %s: %w", id, host, err)
	}
	g := &peercred.Guard{Listener: ln, Allow: allow, Candidates: candidates, Log: e.log.With("instance", id)}
	srv := New(Config{
		Instance: Instance{ID: id, AvailabilityZone: az, Region: e.cfg.Region, Role: e.cfg.Role, AccountID: e.cfg.Account, PrivateIP: host},
		Issuer:   e.cfg.Issuer, Listener: g, Clock: e.cfg.Clock, Logger: e.cfg.Logger,
	})
	if err := srv.Start(ctx); err != nil {
		ln.Close()
		return "", err
	}
	e.mu.Lock()
	e.byID[id] = &running{srv: srv, started: e.cfg.Clock.Now()}
	e.mu.Unlock()
	return srv.Endpoint(), nil
}

// Serve starts the endpoint of instance id (in availability zone az, at
// address privateIP) on ln, a listener the caller opened inside the
// instance's own network namespace at 169.254.169.254:80
// (vpc.Namespace.Listen): a connection it accepts comes from that
// namespace, by the kernel's word, so it is the instance's and needs no
// further identification. Its URL is http://169.254.169.254, where the AWS
// SDKs look by default. An id that has an endpoint already gets an error,
// and ln is closed.
func (e *Endpoints) Serve(ctx context.Context, id, az, privateIP string, ln net.Listener) (string, error) {
	e.mu.Lock()
	_, dup := e.byID[id]
	e.mu.Unlock()
	if dup {
		ln.Close()
		return "", fmt.Errorf("metadata endpoint of %s: already running", id)
	}
	srv := New(Config{
		Instance: Instance{ID: id, AvailabilityZone: az, Region: e.cfg.Region, Role: e.cfg.Role, AccountID: e.cfg.Account, PrivateIP: privateIP},
		Issuer:   e.cfg.Issuer, Listener: ln, Clock: e.cfg.Clock, Logger: e.cfg.Logger,
	})
	if err := srv.Start(ctx); err != nil {
		ln.Close()
		return "", err
	}
	e.mu.Lock()
	e.byID[id] = &running{srv: srv, started: e.cfg.Clock.Now()}
	e.mu.Unlock()
	return srv.Endpoint(), nil
}

// Endpoint is the URL of id's endpoint, "" when it has none.
func (e *Endpoints) Endpoint(id string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.byID[id]; r != nil {
		return r.srv.Endpoint()
	}
	return ""
}

// List maps every id with an endpoint to its URL.
func (e *Endpoints) List() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]string, len(e.byID))
	for id, r := range e.byID {
		out[id] = r.srv.Endpoint()
	}
	return out
}

// End stops id's endpoint and revokes the credentials issued to it.
func (e *Endpoints) End(ctx context.Context, id string) error {
	e.mu.Lock()
	r := e.byID[id]
	delete(e.byID, id)
	e.mu.Unlock()
	var err error
	if r != nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = r.srv.Stop(ctx)
		cancel()
	}
	n := e.cfg.Issuer.RevokeInstance(id)
	e.log.Info("instance identity ended", "instance", id, "revoked", n)
	return err
}

// EndStale ends the endpoints of ids that are not known and are older than
// age: what a launch that failed before the fleet knew its id left.
func (e *Endpoints) EndStale(ctx context.Context, known func(id string) bool, age time.Duration) {
	now := e.cfg.Clock.Now()
	e.mu.Lock()
	var stale []string
	for id, r := range e.byID {
		if !known(id) && now.Sub(r.started) > age {
			stale = append(stale, id)
		}
	}
	e.mu.Unlock()
	sort.Strings(stale)
	for _, id := range stale {
		_ = e.End(ctx, id)
	}
}

// StopAll stops every endpoint (credentials stay issued until they expire).
func (e *Endpoints) StopAll(ctx context.Context) error {
	e.mu.Lock()
	rs := e.byID
	e.byID = map[string]*running{}
	e.mu.Unlock()
	var errs []error
	for _, r := range rs {
		errs = append(errs, r.srv.Stop(ctx))
	}
	return errors.Join(errs...)
}
