// Package region wires every tier of a local region together from one spec; only cmd/ imports it.
//
// Region does: derive each tier's configuration from the spec (configs, a
// pure function with golden tests), start the tiers in dependency order and
// stop them in reverse, connect them through their narrow interfaces (the
// fleet registers with the load balancer, the archiver asks the database
// for its primary, instances get their metadata endpoint), publish the
// running tiers to the API handlers (internal/api/routes) and turn the
// tiers' events into the region's event log.
//
// Region does not: run SQL, read /proc, do crypto, or decide anything a
// tier decides. That lives in the tiers (pgha, backup, secrets, dbsecret,
// imds, peercred, fleet, lb, ...), which never import region.
package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/events"
	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/sandbox"
	"github.com/haven-platform/haven/internal/secrets"
	"github.com/haven-platform/haven/internal/spec"
)

// Options configures a region.
type Options struct {
	// Spec is the validated spec.
	Spec spec.Spec
	// SpecFile is where the spec came from, for messages.
	SpecFile string
	// SpecSHA256 is the hex SHA-256 of the spec file (drill reports name
	// the spec by it). Default: empty.
	SpecSHA256 string
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
	cfg     Configs
	log     *slog.Logger
	events  *events.Log
	started time.Time

	mu       sync.Mutex
	readyAt  time.Time
	phase    string
	err      string
	progress []string
	warnings []string

	// failpoints are the code points HAVEN_FAILPOINT armed (none normally).
	failpoints *failpoint.Set

	// netWarning says why the region has no VPC ("" when it has one).
	netWarning string
	// zoneFaults are the zones' current faults (zone-power, ...), under
	// zoneMu; zoneView is what the status reads.
	zoneMu     sync.Mutex
	zoneFaults map[string]string
	zoneView   atomic.Pointer[map[string]string]

	// t holds the tiers; only the goroutine running start and stop writes
	// it, and an apply (which never overlaps them, applyMu) when it
	// replaces the alarm engine; handlers read what was published of it.
	t   tiers
	pub atomic.Pointer[tiers]

	shutdown     chan struct{}
	shutdownOnce sync.Once
	// handover is closed when another daemon takes over (POST
	// /v1/handover): this one stops its control loops and exits, leaving
	// the data plane running for the other to adopt.
	handover     chan struct{}
	handoverOnce sync.Once

	// pgRoot is the postgres user's tree (pgha.PrepareRoot).
	pgRoot string

	// adoptedVPC is set by the network step when the VPC was adopted;
	// adoption is what the start adopted, published for the status.
	adoptedVPC bool
	adoption   atomic.Pointer[api.Adoption]

	// layout is the machine's layout configs was given at start.
	layout Layout
	// cur is the spec and configuration the region runs since the last
	// apply (nil: the ones it started with, spec and cfg).
	cur atomic.Pointer[running]
	// applyMu is held by an apply, and by the stop, so they never overlap.
	applyMu sync.Mutex
	// roller replaces the fleet's instances on a launch template change.
	roller Roller
	// sched is the database secret's rotation schedule (nil: off), under
	// schedMu: an apply replaces it.
	schedMu sync.Mutex
	sched   *secrets.Scheduler
	// alarmsSince is when the alarm step started: no alarm judges the
	// samples of the region's start (alarms.Config.NotBefore).
	alarmsSince time.Time
	// specSHA256 is the hex SHA-256 of the spec text the region runs (the
	// file it started with, then the last one applied); drill reports
	// carry it.
	specSHA256 atomic.Pointer[string]
	// specState is what the status shows of the spec record (SpecState),
	// refreshed when the record or the journal changes.
	specState atomic.Pointer[api.SpecState]
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
	pgRoot, err := pgha.PrepareRoot(opts.StateDir)
	if err != nil {
		return err
	}
	layout := Layout{StateDir: opts.StateDir, PGRoot: pgRoot}
	if layout.Sandbox, err = instanceSandbox(opts.StateDir); err != nil {
		return err
	}
	layout.PublicDir = publicDir(opts.StateDir, layout.Sandbox != nil)
	var netWarning string
	if layout.VPC, netWarning, err = claimVPC(opts.StateDir); err != nil {
		return err
	}
	if layout.VPC.IsValid() {
		// Normally the network step releases it; a start that fails
		// before that step must not keep it.
		defer func() { _ = releaseLease(opts.StateDir) }()
	}
	if layout.AppCommand, err = resolveCommand(opts.BinDir, opts.Spec.App.Command); err != nil {
		return err
	}
	if len(opts.Spec.App.Release) > 0 {
		if layout.ReleaseCommand, err = resolveCommand(opts.BinDir, opts.Spec.App.Release); err != nil {
			return fmt.Errorf("app.release: %w", err)
		}
	}
	cfg, err := configs(opts.Spec, layout)
	if err != nil {
		return err
	}
	evf, err := os.OpenFile(filepath.Join(opts.StateDir, "logs", "events.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open event log: %w", err)
	}
	defer evf.Close()
	r := &Region{
		opts: opts, spec: opts.Spec, cfg: cfg, log: opts.Logger.With("component", "region"),
		events: events.New(evf, 20000), started: time.Now(), phase: api.PhaseStarting,
		shutdown: make(chan struct{}), handover: make(chan struct{}), failpoints: fps, netWarning: netWarning, zoneFaults: map[string]string{},
		layout: layout, roller: fleetRoller{timeout: opts.ReadyTimeout},
	}
	r.pgRoot = pgRoot
	if armed := fps.Armed(); len(armed) > 0 {
		r.log.Warn("failpoints armed", "points", armed)
	}
	closeAPI, err := r.serveAPI()
	if err != nil {
		return err
	}
	defer closeAPI()
	_ = os.WriteFile(filepath.Join(opts.StateDir, "daemon.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	defer os.Remove(filepath.Join(opts.StateDir, "daemon.pid"))

	running, startErr := r.start(ctx)
	if startErr != nil {
		r.setFailed(startErr)
		r.log.Error("start region", "err", startErr)
	} else {
		r.mu.Lock()
		r.readyAt = time.Now()
		r.mu.Unlock()
		r.recordUp()
		r.setPhase(api.PhaseReady)
		r.say("region %s is ready at %s (%d ms after the daemon started)", r.spec.Name, r.t.lb.HTTPSURL(), time.Since(r.started).Milliseconds())
	}
	select {
	case <-ctx.Done():
	case <-r.shutdown:
	case <-r.handover:
		// Another daemon takes over: leave the data plane running for it.
		r.setPhase(api.PhaseHandingOver)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		err := r.detach(dctx, running)
		r.log.Info("handed over: the data plane keeps running for the next daemon")
		if startErr != nil {
			return startErr
		}
		if err != nil {
			return err
		}
		return ErrHandedOver
	}
	r.setPhase(api.PhaseStopping)
	r.applyMu.Lock() // an apply in progress ends first
	defer r.applyMu.Unlock()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	stopErr := r.stop(stopCtx, running)
	if startErr != nil {
		return startErr
	}
	return stopErr
}

// step is one tier's start and stop.
type step struct {
	name  string
	start func(ctx context.Context) error
	// stop undoes start; nil when there is nothing to undo.
	stop func(ctx context.Context) error
	// detach lets go of what the step started without stopping its data
	// plane, for a hand-over to another daemon (an upgrade): nil runs stop
	// (the step has nothing that must outlive the daemon); keep leaves
	// everything as it is.
	detach func(ctx context.Context) error
}

// keep is the detach of a step whose data plane lives in the kernel or in
// processes of its own: nothing to do.
func keep(context.Context) error { return nil }

// steps lists the tiers in dependency order: each needs only those before it.
func (r *Region) steps() []step {
	return []step{
		{"zones", r.startZones, nil, nil},
		{"metrics", r.startMetrics, r.stopMetrics, nil},
		{"console", r.startConsole, r.stopConsole, nil},
		{"network", r.startNetwork, r.stopNetwork, keep},
		{"cgroups", r.startCgroups, r.stopCgroups, keep},
		{"certificate authority", r.startCA, nil, nil},
		{"backup configuration", r.prepareBackups, nil, nil}, // the database's archive command needs it
		{"database endpoint", r.startEndpoint, r.stopEndpoint, r.detachEndpoint},
		{"database", r.startDatabase, r.stopDatabase, r.detachDatabase},
		{"identity and secrets", r.openSecrets, r.closeSecrets, nil},
		{"database credential", r.bootstrapCredential, nil, nil},
		{"identity provider", r.startIdentity, r.stopIdentity, nil}, // before the secrets API: the app role may read its client secret
		{"backups", r.startBackups, r.stopBackups, nil},
		{"secrets API", r.startSecrets, r.stopSecrets, nil},
		{"object store", r.startObjStore, r.stopObjStore, r.detachObjStore},
		{"signing key", r.startSigningKey, nil, nil},
		{"release task", r.runRelease, nil, nil},
		{"load balancer", r.startLB, r.stopLB, r.detachLB},
		{"edge", r.startEdge, r.stopEdge, nil},
		{"fleet", r.startFleet, r.stopFleet, r.detachFleet},
		{"scaling", r.startScaling, r.stopScaling, nil},
		{"releases", r.startReleases, r.stopReleases, nil}, // a rollout the next daemon resumes
		{"health", r.waitHealthy, nil, nil},
		{"adoption report", r.reportAdoption, nil, nil},
		{"alarms", r.startAlarms, r.stopAlarms, nil},
	}
}

// start starts the tiers in dependency order, publishing each to the API
// as it comes up. It returns the steps that started, for stop.
func (r *Region) start(ctx context.Context) ([]step, error) {
	var done []step
	for _, s := range r.steps() {
		if err := s.start(ctx); err != nil {
			return done, err
		}
		done = append(done, s)
		r.publish()
	}
	return done, nil
}

// stop stops the steps that started, in reverse order. Each stop runs even
// when an earlier one failed.
func (r *Region) stop(ctx context.Context, started []step) error {
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		if s := started[i]; s.stop != nil {
			if err := s.stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", s.name, err))
			}
		}
	}
	r.say("region stopped")
	return errors.Join(errs...)
}

// noteAdoption records part of what this start adopted, for the status.
// Only the start goroutine calls it.
func (r *Region) noteAdoption(f func(*api.Adoption)) {
	a := &api.Adoption{}
	if cur := r.adoption.Load(); cur != nil {
		c := *cur
		a = &c
	}
	f(a)
	r.adoption.Store(a)
}

// reportAdoption, the last step, says what this start took over from an
// earlier daemon and what it left alone, and publishes it in the status.
// A fresh start (nothing adopted) reports nothing.
func (r *Region) reportAdoption(context.Context) error {
	v := r.t
	r.noteAdoption(func(a *api.Adoption) {
		a.VPC = r.adoptedVPC
		if v.db != nil {
			if m := v.db.Adopted(); len(m) > 0 {
				a.DBNodes = m
			}
		}
		if ep, ok := v.dbEP.(interface{ Adopted() bool }); ok {
			a.Endpoint = ep.Adopted()
		}
		if v.epProc != nil {
			a.EndpointProxy = v.epProc.Adopted()
		}
	})
	a := r.adoption.Load()
	if !a.VPC && len(a.Instances) == 0 && len(a.DBNodes) == 0 && a.LB == 0 && a.EndpointProxy == 0 && len(a.LeftAlone)+len(a.Relaunched)+len(a.Failed) == 0 {
		r.adoption.Store(nil)
		return nil
	}
	r.say("adopted from the earlier daemon: VPC %v, %d instances, database nodes %v, endpoint rules %v (proxy pid %d), load balancer pid %d; relaunched %d; left alone %d",
		a.VPC, len(a.Instances), a.DBNodes, a.Endpoint, a.EndpointProxy, a.LB, len(a.Relaunched), len(a.LeftAlone))
	for _, la := range a.LeftAlone {
		r.warn("left alone (not provably this region's): " + la)
	}
	r.events.Add("region", "adopted", "", fmt.Sprintf("adopted %d instances, %d database nodes, load balancer %d; left alone %d", len(a.Instances), len(a.DBNodes), a.LB, len(a.LeftAlone)))
	return nil
}

// detach lets go of the steps that started, in reverse order, leaving
// their data plane running (see step.detach).
func (r *Region) detach(ctx context.Context, started []step) error {
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		s := started[i]
		f := s.detach
		if f == nil {
			f = s.stop
		}
		if f == nil {
			continue
		}
		if err := f(ctx); err != nil {
			errs = append(errs, fmt.Errorf("hand over %s: %w", s.name, err))
		}
	}
	r.say("region handed over: instances, database, load balancer and network keep running")
	return errors.Join(errs...)
}

func (r *Region) requestShutdown() { r.shutdownOnce.Do(func() { close(r.shutdown) }) }

func (r *Region) requestHandover() { r.handoverOnce.Do(func() { close(r.handover) }) }

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

// instanceSandbox is how the app's processes drop privileges: as root,
// to the region's own unprivileged uid (sandbox.RegionID); otherwise they
// run as haven's user (nil), which already is not root.
func instanceSandbox(stateDir string) (*sandbox.Profile, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	id, err := sandbox.RegionID(stateDir)
	if err != nil {
		return nil, fmt.Errorf("choose the instances' user: %w", err)
	}
	return &sandbox.Profile{UID: id, GID: id}, nil
}

// resolveCommand finds the program next to the haven binary first, then on PATH.
func resolveCommand(binDir string, cmd []string) ([]string, error) {
	out := append([]string(nil), cmd...)
	prog := cmd[0]
	if strings.ContainsRune(prog, '/') {
		abs, err := filepath.Abs(prog)
		if err != nil {
			return nil, err
		}
		out[0] = abs
		return out, nil
	}
	if binDir != "" {
		p := filepath.Join(binDir, prog)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			out[0] = p
			return out, nil
		}
	}
	p, err := exec.LookPath(prog)
	if err != nil {
		return nil, fmt.Errorf("app.command: program %q is neither next to haven (%s) nor on PATH; build it (go build -o bin/ ./cmd/...) or give a path", prog, binDir)
	}
	out[0] = p
	return out, nil
}

// ErrHandedOver is what Run returns when the region was handed over to
// another daemon (POST /v1/handover): everything keeps running.
var ErrHandedOver = errors.New("region handed over to another daemon; it keeps running")

// ErrStateDirLocked means a live daemon holds the state dir.
var ErrStateDirLocked = errors.New("another haven daemon is using it")

// lockStateDir takes an exclusive lock on the state directory, so two daemons
// never share one.
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
		holder := "another process"
		if b, rerr := os.ReadFile(filepath.Join(dir, "daemon.pid")); rerr == nil {
			if pid, aerr := strconv.Atoi(strings.TrimSpace(string(b))); aerr == nil && pid > 0 {
				holder = fmt.Sprintf("the daemon with pid %d", pid)
			}
		}
		return nil, fmt.Errorf("lock state dir %s: %w (%s holds it); stop it with `haven down --state-dir %s`, hand over to this binary with `haven up --takeover`, or use another --state-dir", dir, ErrStateDirLocked, holder, dir)
	}
	return func() { f.Close() }, nil
}
