// Package region wires every tier of a local region together from one spec; only cmd/ imports it.
package region

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/events"
	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/pgha/endpoint"
	"github.com/haven-platform/haven/internal/spec"
	"github.com/haven-platform/haven/internal/zone"
)

// Options configures a region.
type Options struct {
	// Spec is the validated spec.
	Spec spec.Spec
	// SpecFile is where the spec came from, for messages.
	SpecFile string
	// StateDir holds everything the region writes. Required, absolute.
	StateDir string
	// BinDir is searched for the app's program before PATH (the directory of
	// the haven binary, where `courses` is built next to it).
	BinDir string
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for fleet.min healthy instances. Default 10m.
	ReadyTimeout time.Duration
}

// Region is a running local region: the daemon holds every tier.
type Region struct {
	opts    Options
	spec    spec.Spec
	log     *slog.Logger
	events  *events.Log
	started time.Time

	mu       sync.Mutex
	phase    string
	err      string
	progress []string
	warnings []string

	// pgRoot holds what the postgres OS user must reach: database nodes and
	// the backup repository. See postgresRoot.
	pgRoot string

	zones   []*zone.Zone
	cgroups *cgroup.Manager
	ca      *ca.CA
	db      *pgha.Cluster
	dbProxy dbEndpoint
	// dbEndpointKind is "nat" (kernel DNAT) or "proxy" (user space).
	dbEndpointKind string
	lb             *lb.LB
	fleet          *fleet.Fleet

	shutdown     chan struct{}
	shutdownOnce sync.Once

	// failpoints are the code points HAVEN_FAILPOINT armed (none normally).
	failpoints *failpoint.Set

	dbx  dbExtras      // owned by db.go
	secx secretsExtras // owned by secrets.go

	// pub is what API handlers read while start() is still assigning the
	// fields above: start publishes a copy after each tier comes up.
	pub atomic.Pointer[published]
}

// published is the set of running tiers API handlers may use.
type published struct {
	zones           []*zone.Zone
	lb              *lb.LB
	fleet           *fleet.Fleet
	db              *pgha.Cluster
	secretsEndpoint string
}

// publish makes the tiers started so far visible to API handlers. Only the
// goroutine running start calls it.
func (r *Region) publish() {
	p := &published{zones: r.zones, lb: r.lb, fleet: r.fleet, db: r.db}
	if r.secx.server != nil {
		p.secretsEndpoint = r.secx.server.Endpoint()
	}
	r.pub.Store(p)
}

// view returns the published tiers (never nil).
func (r *Region) view() *published {
	if p := r.pub.Load(); p != nil {
		return p
	}
	return &published{}
}

// Run brings the region up, serves the daemon API on the state directory's
// socket and blocks until ctx is done or a shutdown is requested; then it
// stops every tier, so no process of the region is left behind.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 10 * time.Minute
	}
	if !filepath.IsAbs(opts.StateDir) {
		return fmt.Errorf("state dir %q: must be an absolute path", opts.StateDir)
	}
	// 0711: the postgres OS user must traverse the state dir to reach its data
	// directories; nothing in it can be listed, and every file is 0600.
	if err := os.MkdirAll(opts.StateDir, 0o711); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := os.Chmod(opts.StateDir, 0o711); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	unlock, err := lockStateDir(opts.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	for _, d := range []string{"logs/instances", "ca"} {
		if err := os.MkdirAll(filepath.Join(opts.StateDir, d), 0o700); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
	}
	fps, err := failpoint.Parse(os.Getenv(failpoint.Env))
	if err != nil {
		return err
	}
	pgRoot, err := postgresRoot(opts.StateDir)
	if err != nil {
		return err
	}
	evf, err := os.OpenFile(filepath.Join(opts.StateDir, "logs", "events.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open event log: %w", err)
	}
	defer evf.Close()
	r := &Region{
		opts: opts, spec: opts.Spec, log: opts.Logger.With("component", "region"),
		events: events.New(evf, 20000), started: time.Now(), phase: api.PhaseStarting, pgRoot: pgRoot,
		shutdown: make(chan struct{}), failpoints: fps,
	}
	if armed := fps.Armed(); len(armed) > 0 {
		r.log.Warn("failpoints armed", "points", armed)
	}
	if killed := sweepLeftovers(pgRoot); len(killed) > 0 {
		r.log.Warn("killed processes a previous daemon left behind", "pids", killed)
	}
	closeAPI, err := r.serveAPI()
	if err != nil {
		return err
	}
	defer closeAPI()
	_ = os.WriteFile(filepath.Join(opts.StateDir, "daemon.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	defer os.Remove(filepath.Join(opts.StateDir, "daemon.pid"))

	startErr := r.start(ctx)
	if startErr != nil {
		r.setFailed(startErr)
		r.log.Error("start region", "err", startErr)
	} else {
		r.setPhase(api.PhaseReady)
		r.say("region %s is ready at %s", r.spec.Name, r.lb.HTTPSURL())
	}
	select {
	case <-ctx.Done():
	case <-r.shutdown:
	}
	r.setPhase(api.PhaseStopping)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	stopErr := r.stop(stopCtx)
	if startErr != nil {
		return startErr
	}
	return stopErr
}

// start brings up every tier in dependency order.
func (r *Region) start(ctx context.Context) error {
	s := r.spec
	var err error
	r.zones, err = zone.New(zone.Config{Region: s.AWS.Region, Names: s.Zones})
	if err != nil {
		return err
	}
	for i, z := range r.zones {
		z.AZ = s.AWS.AvailabilityZones[i]
	}
	r.publish()
	r.say("zones: %s", zoneList(r.zones))

	// The region's cgroups are named for the region and its state dir, so two
	// regions never share one; sweeping them reaps what a crashed daemon left.
	r.cgroups, err = cgroup.NewManager("haven-"+s.Name+"-"+stateDirTag(r.opts.StateDir), r.opts.Logger)
	if err != nil {
		return fmt.Errorf("set up cgroups: %w", err)
	}
	if !r.cgroups.Enabled() {
		r.warn("no usable cgroup v1 or v2 hierarchy: instances run without CPU and memory limits")
		r.cgroups = nil
	} else if err := r.cgroups.Sweep(ctx); err != nil {
		r.log.Warn("sweep leftover cgroups", "err", err)
	}

	r.ca, err = ca.LoadOrCreate(filepath.Join(r.opts.StateDir, "ca"))
	if err != nil {
		return fmt.Errorf("load region CA: %w", err)
	}

	if err := r.startDatabase(ctx); err != nil {
		return err
	}
	r.publish()
	if err := r.startBackups(ctx); err != nil {
		return err
	}
	if err := r.startSecrets(ctx); err != nil {
		return err
	}
	r.publish()
	if len(s.App.Release) > 0 {
		if err := r.runRelease(ctx); err != nil {
			return err
		}
	}
	if err := r.startLB(ctx); err != nil {
		return err
	}
	r.publish()
	if err := r.startFleet(ctx); err != nil {
		return err
	}
	r.publish()
	r.warnInertScaling()
	return r.waitHealthy(ctx)
}

func zoneList(zs []*zone.Zone) string {
	out := ""
	for i, z := range zs {
		if i > 0 {
			out += ", "
		}
		out += z.AZ + " " + z.CIDR.String()
	}
	return out
}

func (r *Region) startDatabase(ctx context.Context) error {
	s := r.spec
	ep, err := netip.ParseAddrPort(s.Database.Endpoint)
	if err != nil {
		return fmt.Errorf("database.endpoint: %w", err)
	}
	nodeZones := r.zones
	if !s.Database.MultiAZ {
		nodeZones = r.zones[:1]
	}
	var nodes []pgha.Node
	for _, z := range nodeZones {
		addr, err := z.Allocate("db-" + z.Name)
		if err != nil {
			return err
		}
		base := filepath.Join(r.pgRoot, "db")
		nodes = append(nodes, pgha.Node{
			Name: "db_" + z.Name, Zone: z.Name, ListenAddr: addr, Port: int(ep.Port()) + 1,
			DataDir:   filepath.Join(base, "db_"+z.Name, "data"),
			SocketDir: filepath.Join(base, "db_"+z.Name, "run"),
			LogFile:   filepath.Join(r.opts.StateDir, "logs", "db_"+z.Name+".log"),
		})
	}
	// The kernel forwards endpoint traffic (nftables DNAT) when it can: a
	// user-space hop costs about half of the database's throughput on loopback.
	epLog := r.opts.Logger // the endpoint names its own component
	if natErr := endpoint.NATAvailable(ctx); natErr == nil {
		r.dbProxy, err = endpoint.NewNAT(endpoint.NATConfig{Listen: s.Database.Endpoint, Table: endpoint.NATTableName(r.opts.StateDir), Logger: epLog})
		r.dbEndpointKind = "nat"
	} else {
		r.warn(fmt.Sprintf("database endpoint: kernel forwarding unavailable (%v); using the user-space proxy, which costs throughput", natErr))
		r.dbProxy, err = endpoint.New(endpoint.Config{Listen: s.Database.Endpoint, Logger: epLog})
		r.dbEndpointKind = "proxy"
	}
	if err != nil {
		return err
	}
	if err := r.dbProxy.Start(ctx); err != nil {
		return fmt.Errorf("start database endpoint on %s: %w", s.Database.Endpoint, err)
	}
	dur := pgha.DurabilityPreferred
	if s.Database.Durability == "required" {
		dur = pgha.DurabilityRequired
	}
	var nets []netip.Prefix
	for _, z := range r.zones {
		nets = append(nets, z.CIDR)
	}
	nets = append(nets, netip.PrefixFrom(ep.Addr(), ep.Addr().BitLen()))
	r.db, err = pgha.New(pgha.Config{
		Nodes: nodes, StateFile: filepath.Join(r.pgRoot, "db", "controller.json"),
		Durability: dur, AppDatabase: s.Database.Name, AppNetworks: nets,
		AppAuth: r.appAuth(), ArchiveCommand: r.archiveCommand(nodes),
		Endpoint: r.dbProxy, Logger: r.opts.Logger,
	})
	if err != nil {
		return err
	}
	if len(nodes) > 1 {
		r.say("database: starting PostgreSQL 15 primary in zone %s and synchronous standby in zone %s", nodes[0].Zone, nodes[1].Zone)
	} else {
		r.say("database: starting PostgreSQL 15 in zone %s (multi_az: false)", nodes[0].Zone)
	}
	if err := r.db.Start(ctx); err != nil {
		return fmt.Errorf("start database: %w", err)
	}
	if err := r.db.Bootstrap(ctx, s.Database.Name, s.Database.User); err != nil {
		return err
	}
	if err := r.bootstrapDBLogins(ctx); err != nil {
		return err
	}
	r.say("database: endpoint %s → %s (epoch %d, %s)", s.Database.Endpoint, r.db.Primary().Addr(), r.db.Status().State.Epoch, r.dbEndpointKind)
	return nil
}

// appEnv is the non-secret environment every app process gets.
func (r *Region) appEnv() map[string]string {
	s := r.spec
	ep, _ := netip.ParseAddrPort(s.Database.Endpoint)
	env := map[string]string{
		"PGHOST": ep.Addr().String(), "PGPORT": strconv.Itoa(int(ep.Port())),
		"PGUSER": s.Database.User, "PGDATABASE": s.Database.Name, "PGSSLMODE": "disable",
		"PGCONNECT_TIMEOUT": "3", "AWS_REGION": s.AWS.Region,
	}
	for k, v := range s.App.Env {
		env[k] = v
	}
	for k, v := range r.secretsEnv() {
		env[k] = v
	}
	return env
}

func (r *Region) startLB(ctx context.Context) error {
	s := r.spec
	host, _, err := net.SplitHostPort(s.LoadBalancer.HTTPS)
	if err != nil {
		return fmt.Errorf("load_balancer.https: %w", err)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	if ip := net.ParseIP(host); ip != nil {
		ips = append(ips, ip)
	}
	cert, err := r.ca.IssueServer([]string{"localhost", s.Name + ".haven.local"}, ips, 90*24*time.Hour)
	if err != nil {
		return fmt.Errorf("issue load balancer certificate: %w", err)
	}
	accessLog, err := os.OpenFile(filepath.Join(r.opts.StateDir, "logs", "access.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	hc := s.App.HealthCheck
	r.lb, err = lb.New(lb.Config{
		Name: s.Name, HTTPSAddr: s.LoadBalancer.HTTPS, HTTPAddr: s.LoadBalancer.HTTP,
		TLS: tlsConfig(cert),
		HealthCheck: lb.HealthCheck{
			Path: hc.Path, Interval: hc.Interval.D(), Timeout: hc.Timeout.D(),
			HealthyThreshold: hc.Healthy, UnhealthyThreshold: hc.Unhealthy, Matcher: hc.Matcher,
		},
		Algorithm: s.LoadBalancer.Algorithm, DeregistrationDelay: s.LoadBalancer.DeregistrationDelay.D(),
		SlowStart: s.LoadBalancer.SlowStart.D(), IdleTimeout: s.LoadBalancer.IdleTimeout.D(),
		AccessLog: accessLog, Logger: r.opts.Logger,
	})
	if err != nil {
		accessLog.Close()
		return err
	}
	r.lb.OnChange(func(t lb.TargetStatus) {
		r.events.Add("lb", "target-"+string(t.State), t.ID, t.Reason)
	})
	if err := r.lb.Start(ctx); err != nil {
		return fmt.Errorf("start load balancer on %s: %w (is another region using this port? set load_balancer.https)", s.LoadBalancer.HTTPS, err)
	}
	r.say("load balancer: %s (CA %s)", r.lb.HTTPSURL(), r.caPath())
	return nil
}

func (r *Region) caPath() string { return filepath.Join(r.opts.StateDir, "ca", "ca.pem") }

func (r *Region) startFleet(ctx context.Context) error {
	s := r.spec
	cmd, err := r.resolveCommand(s.App.Command)
	if err != nil {
		return err
	}
	r.fleet, err = fleet.New(fleet.Config{
		Name:  s.Name,
		Zones: r.zones,
		Template: fleet.LaunchTemplate{
			Command: cmd, Env: r.appEnv(), Port: s.App.Port,
			CPU: s.App.Instance.CPU, MemoryBytes: int64(s.App.Instance.Memory),
		},
		Min: s.Fleet.Min, Max: s.Fleet.Max, Desired: s.Fleet.Desired,
		HealthCheckType: s.Fleet.HealthCheckType, GracePeriod: s.Fleet.GracePeriod.D(),
		StopTimeout: 30 * time.Second,
		LogDir:      filepath.Join(r.opts.StateDir, "logs", "instances"),
		Balancer:    balancer{r.lb},
		Cgroups:     r.cgroups,
		EnvFunc:     r.instanceEnv,
		OnEvent: func(e fleet.Event) {
			r.events.Add("fleet", e.Type, e.Instance, "zone "+e.Zone+" "+e.Reason)
			r.onFleetEvent(e)
		},
		Logger: r.opts.Logger,
	})
	if err != nil {
		return err
	}
	if err := r.fleet.Start(ctx); err != nil {
		return fmt.Errorf("start fleet: %w", err)
	}
	r.say("fleet: launching %d instances of %v across zones %v", s.Fleet.Desired, s.App.Command, s.Zones)
	return nil
}

// waitHealthy waits until fleet.min instances are in service and healthy.
func (r *Region) waitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.ReadyTimeout)
	defer cancel()
	last := -1
	for {
		st := r.Status()
		if st.Fleet.Healthy != last {
			last = st.Fleet.Healthy
			r.say("fleet: %d/%d instances healthy behind the load balancer", st.Fleet.Healthy, st.Fleet.Desired)
		}
		if st.Fleet.Healthy >= max(r.spec.Fleet.Min, 1) || (r.spec.Fleet.Min == 0 && st.Fleet.Desired == 0) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d healthy instances: %w; the instance logs in %s say why",
				r.spec.Fleet.Min, ctx.Err(), filepath.Join(r.opts.StateDir, "logs", "instances"))
		case <-r.shutdown:
			return errors.New("shutdown requested while starting")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop stops every tier in reverse order. Each step runs even if an earlier one failed.
func (r *Region) stop(ctx context.Context) error {
	var errs []error
	if r.fleet != nil {
		errs = append(errs, r.fleet.Stop(ctx))
	}
	if r.lb != nil {
		errs = append(errs, r.lb.Stop(ctx))
	}
	errs = append(errs, r.stopSecrets(ctx), r.stopBackups(ctx))
	if r.db != nil {
		errs = append(errs, r.db.Stop(ctx))
	}
	if r.dbProxy != nil {
		errs = append(errs, r.dbProxy.Stop(ctx))
	}
	if r.cgroups != nil {
		errs = append(errs, r.cgroups.Remove(ctx))
	}
	r.say("region stopped")
	return errors.Join(errs...)
}

func (r *Region) requestShutdown() { r.shutdownOnce.Do(func() { close(r.shutdown) }) }

func (r *Region) say(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	r.mu.Lock()
	r.progress = append(r.progress, msg)
	if len(r.progress) > 200 {
		r.progress = r.progress[len(r.progress)-200:]
	}
	r.mu.Unlock()
	r.log.Info(msg)
	r.events.Add("region", "progress", "", msg)
}

func (r *Region) warn(msg string) {
	r.mu.Lock()
	r.warnings = append(r.warnings, msg)
	r.mu.Unlock()
	r.log.Warn(msg)
}

func (r *Region) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

func (r *Region) setFailed(err error) {
	r.mu.Lock()
	r.phase, r.err = api.PhaseFailed, err.Error()
	r.mu.Unlock()
}

// postgresRoot returns the directory for everything the postgres OS user must
// reach (database nodes, the backup repository), creating it. PostgreSQL
// refuses to run as root, so that user must be able to traverse every parent
// directory. <state-dir>/pg is used when it can; when a parent is closed to
// others (a checkout under /root, mode 0700), the data goes to
// /var/lib/haven/<hash of the state dir> and <state-dir>/pg is a symlink to it.
func postgresRoot(stateDir string) (string, error) {
	link := filepath.Join(stateDir, "pg")
	if target, err := os.Readlink(link); err == nil {
		return target, os.MkdirAll(filepath.Join(target, "db"), 0o711)
	}
	dir := link
	if !traversable(stateDir) {
		sum := sha256.Sum256([]byte(stateDir))
		dir = filepath.Join("/var/lib/haven", hex.EncodeToString(sum[:8]))
		if err := os.MkdirAll("/var/lib/haven", 0o711); err != nil {
			return "", fmt.Errorf("create %s for the database (the postgres user cannot enter %s): %w", dir, stateDir, err)
		}
		if err := os.Symlink(dir, link); err != nil && !os.IsExist(err) {
			return "", fmt.Errorf("link %s: %w", link, err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "db")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return "", fmt.Errorf("create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// traversable reports whether others may search every directory from / to dir.
func traversable(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" || d == "." {
			return true
		}
	}
}

// dbEndpoint is the database's one endpoint: kernel NAT or the user-space proxy.
type dbEndpoint interface {
	pgha.Endpoint
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Addr() string
}

var (
	_ dbEndpoint = (*endpoint.NAT)(nil)
	_ dbEndpoint = (*endpoint.Proxy)(nil)
)

// lockStateDir takes an exclusive lock on the state directory, so two daemons
// never share one.
// ErrStateDirLocked means a live daemon holds the state dir.
var ErrStateDirLocked = errors.New("another haven daemon is using it")

func lockStateDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "haven.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	// A daemon that was just killed may hold the lock a moment longer (its
	// threads are still exiting): wait a little before calling it alive.
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	for deadline := time.Now().Add(3 * time.Second); errors.Is(err, syscall.EWOULDBLOCK) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock state dir %s: %w; stop it with `haven down --state-dir %s` or use another --state-dir", dir, ErrStateDirLocked, dir)
	}
	return func() { f.Close() }, nil
}
