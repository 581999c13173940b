package pgha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haven-platform/haven/internal/clock"
)

// Endpoint is the stable address clients use; endpoint.Proxy implements it.
type Endpoint interface {
	// SetTarget forwards new connections to addr for epoch and closes every
	// client connection of another epoch. addr "" means there is no primary.
	SetTarget(epoch uint64, addr string)
	// Pause closes every client connection and holds new ones until the next
	// SetTarget.
	Pause()
}

// Config configures a Cluster.
type Config struct {
	// Nodes are the database servers, one per zone. The first is the
	// primary at first bootstrap. One node (single-AZ) or two (Multi-AZ).
	Nodes []Node
	// BinDir holds the PostgreSQL 15 binaries. Default DefaultBinDir.
	BinDir string
	// StateFile is where the controller persists State. Required.
	StateFile string
	// Durability is what happens when the standby is lost. Default
	// DurabilityRequired.
	Durability Durability
	// AppAuth is the pg_hba method for application roles. Only
	// "scram-sha-256" (the default) is allowed: no role logs in without a
	// credential.
	AppAuth string
	// Certificates issues the TLS material of replication (the region CA):
	// every node serves TLS and a standby logs in as the replication role
	// with a client certificate (pg_hba method cert). Required with two
	// nodes; a single node allows no replication over TCP.
	Certificates Certificates
	// AppDatabase restricts application logins to one database. Default: all.
	AppDatabase string
	// AppNetworks may connect as application roles. Default DefaultAppNetworks.
	AppNetworks []netip.Prefix
	// ArchiveCommand, when set, turns on archive_mode=always with this
	// command (the pgBackRest hook). Default: archiving off.
	ArchiveCommand string
	// Endpoint is repointed at every epoch change. Optional.
	Endpoint Endpoint
	// Spawn starts a node's server (the postmaster) with cmd.Start, where
	// the node lives: inside its network namespace in a region's VPC
	// (vpc.Namespace.Start). It must keep cmd's SysProcAttr. Default:
	// cmd.Start in the controller's own network.
	Spawn func(node Node, cmd *exec.Cmd) error
	// Dial opens the controller's probe connections to a node's TCP
	// address: in a VPC, from outside every zone (vpc.VPC.DialContext), so
	// a zone cut off from the others looks dead to the controller as it
	// does to the apps. Default: a plain dial.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ProbeInterval is the time between probe rounds. Default 200ms.
	ProbeInterval time.Duration
	// ProbeTimeout bounds each probe (TCP connect, then SQL). Default 300ms.
	ProbeTimeout time.Duration
	// FailureThreshold is how many failed probes in a row make a node dead.
	// Default 3.
	FailureThreshold int
	// StandbyLossTimeout is how long the standby may be disconnected from
	// the primary before it counts as lost. Default 2s.
	StandbyLossTimeout time.Duration
	// Clock drives the loop. Default: the wall clock.
	Clock clock.Clock
	// OnEvent, when set, receives every failover, fence, rejoin and
	// rebuild as it happens, on the controller's goroutine: it must return
	// quickly. Default: none.
	OnEvent func(Event)
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.BinDir == "" {
		c.BinDir = DefaultBinDir
	}
	if c.Durability == "" {
		c.Durability = DurabilityRequired
	}
	if c.AppAuth == "" {
		c.AppAuth = AuthSCRAM
	}
	if c.AppNetworks == nil {
		c.AppNetworks = DefaultAppNetworks
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 200 * time.Millisecond
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 300 * time.Millisecond
	}
	if c.FailureThreshold == 0 {
		c.FailureThreshold = 3
	}
	if c.StandbyLossTimeout == 0 {
		c.StandbyLossTimeout = 2 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Spawn == nil {
		c.Spawn = func(_ Node, cmd *exec.Cmd) error { return cmd.Start() }
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if len(c.Nodes) < 1 || len(c.Nodes) > 2 {
		return fmt.Errorf("database.nodes: must be 1 or 2 nodes, got %d", len(c.Nodes))
	}
	seen := map[string]bool{}
	for _, n := range c.Nodes {
		if err := n.Validate(); err != nil {
			return fmt.Errorf("database.nodes: %w", err)
		}
		if seen[n.Name] {
			return fmt.Errorf("database.nodes: duplicate name %q", n.Name)
		}
		seen[n.Name] = true
	}
	if len(c.Nodes) == 2 && c.Nodes[0].Zone == c.Nodes[1].Zone {
		return fmt.Errorf("database.nodes: the two nodes must be in different zones, both are in %q", c.Nodes[0].Zone)
	}
	if !filepath.IsAbs(c.StateFile) {
		return fmt.Errorf("database.state_file: must be an absolute path, got %q", c.StateFile)
	}
	switch c.Durability {
	case "", DurabilityRequired, DurabilityPreferred:
	default:
		return fmt.Errorf("database.durability: must be required or preferred, got %q", c.Durability)
	}
	switch c.AppAuth {
	case "", AuthSCRAM:
	default:
		return fmt.Errorf("database.app_auth: must be scram-sha-256 (no role logs in without a credential), got %q", c.AppAuth)
	}
	if len(c.Nodes) == 2 && c.Certificates == nil {
		return errors.New("database.certificates: required with a standby: replication logs in with a client certificate of the region CA")
	}
	if c.FailureThreshold < 0 || c.ProbeInterval < 0 || c.ProbeTimeout < 0 {
		return errors.New("database.probe: intervals and thresholds must not be negative")
	}
	return nil
}

// NodeStatus is one node in Status.
type NodeStatus struct {
	Name       string `json:"name"`
	Zone       string `json:"zone"`
	Addr       string `json:"addr"`
	Role       string `json:"role"` // primary, standby, rebuilding, down
	Health     string `json:"health"`
	Pid        int    `json:"pid,omitempty"`
	InRecovery bool   `json:"in_recovery"`
}

// Status is a snapshot of the database tier.
type Status struct {
	State         State        `json:"state"`
	EndpointEpoch uint64       `json:"endpoint_epoch"`
	StandbySync   bool         `json:"standby_sync"`
	Nodes         []NodeStatus `json:"nodes"`
	LastPlan      string       `json:"last_plan,omitempty"`
	LastError     string       `json:"last_error,omitempty"`
	// Replication is the standby's row of the primary's
	// pg_stat_replication at the last probe round, nil when it is not
	// listed (no standby, not connected, primary down).
	Replication *ReplicationObs `json:"replication,omitempty"`
	// Connections is the primary's client connections at the last probe
	// round (the controller's own not counted).
	Connections int `json:"connections"`
	// Failovers and Switchovers count those completed by this controller
	// since the daemon started.
	Failovers   uint64 `json:"failovers"`
	Switchovers uint64 `json:"switchovers"`
}

// ErrNotEligible is returned by Switchover when the target is not a
// synchronous, eligible standby.
var ErrNotEligible = errors.New("target is not an eligible synchronous standby")

// Cluster is the database tier of the region: the servers, the failover
// controller and the endpoint it repoints.
type Cluster struct {
	cfg   Config
	log   *slog.Logger
	nodes map[string]Node
	inst  map[string]*instance

	// The control loop's goroutine owns everything from probe to failures
	// (Start and RestartController too, while no loop runs). Nothing here is
	// read by another goroutine: readers use snap.
	probe         map[string]*prober
	state         State
	endpointEpoch uint64
	rebuilding    map[string]bool
	missing       int // rounds the standby was absent from pg_stat_replication
	lastObs       Observed
	lastPlan      string
	lastErr       string
	failures      int // consecutive failed plans, for backoff

	// snap is the status the loop publishes after every change; primary
	// the current primary's node. Readers never wait on the loop.
	snap    atomic.Pointer[Status]
	primary atomic.Pointer[Node]

	// off holds the zones without power (SetZonePower); read by the loop
	// and by every start, written by SetZonePower.
	offMu sync.Mutex
	off   map[string]bool

	// failovers and switchovers count completions, for Status.
	failovers, switchoversDone atomic.Uint64

	faultMu     sync.Mutex // one injected fault at a time
	runMu       sync.Mutex // guards cancel: Start, Stop, Kill, RestartController
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	wake        chan struct{}
	switchovers chan switchoverReq
	rejoined    chan rejoinResult
}

// New builds a Cluster from cfg (defaults filled in) and validates it.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	c := &Cluster{cfg: cfg, log: cfg.Logger.With("component", "pgha"), nodes: map[string]Node{},
		inst: map[string]*instance{}, probe: map[string]*prober{}, rebuilding: map[string]bool{}, off: map[string]bool{}, wake: make(chan struct{}, 1),
		switchovers: make(chan switchoverReq), rejoined: make(chan rejoinResult)}
	for _, n := range cfg.Nodes {
		in, err := newInstance(n, cfg.BinDir, c.log)
		if err != nil {
			return nil, err
		}
		in.certs = cfg.Certificates
		in.spawn = func(cmd *exec.Cmd) error { return cfg.Spawn(n, cmd) }
		in.powered = func() bool { return !c.zoneOff(n.Zone) }
		c.nodes[n.Name], c.inst[n.Name] = n, in
		c.probe[n.Name] = &prober{node: n, in: in, timeout: cfg.ProbeTimeout, threshold: cfg.FailureThreshold, now: cfg.Clock.Now, dial: cfg.Dial}
	}
	return c, nil
}

func (c *Cluster) runConfig(standby bool, syncStandby string) runConfig {
	rc := runConfig{standby: standby, archiveCommand: c.cfg.ArchiveCommand, hba: c.hba(), tls: c.cfg.Certificates != nil}
	if !standby {
		rc.syncStandbyNames = syncNames(syncStandby)
	}
	return rc
}

func (c *Cluster) hba() HBAConfig {
	h := HBAConfig{AppDatabase: c.cfg.AppDatabase, AppNetworks: c.cfg.AppNetworks,
		ReplicationPeers: ReplicationPeers(c.cfg.Nodes), OperatorUsers: operatorUsers()}
	if c.cfg.Certificates == nil || len(c.cfg.Nodes) < 2 {
		h.ReplicationPeers = nil // no standby, or no TLS: no replication over TCP
	}
	return h
}

// ReplicationPeers are the addresses a standby's connections come from:
// each node's own address, and 127.0.0.1 when the nodes share the host's
// loopback (the kernel gives a connection to another 127/8 address the
// source 127.0.0.1, and libpq cannot bind a source address). Every peer
// still needs the replication client certificate: an address never
// authenticates.
func ReplicationPeers(nodes []Node) []netip.Prefix {
	var peers []netip.Prefix
	loopback := false
	for _, n := range nodes {
		peers = append(peers, netip.PrefixFrom(n.ListenAddr, n.ListenAddr.BitLen()))
		loopback = loopback || n.ListenAddr.IsLoopback()
	}
	if lo := netip.MustParsePrefix("127.0.0.1/32"); loopback && !slices.Contains(peers, lo) {
		peers = append(peers, lo)
	}
	return peers
}

// operatorUsers are the OS users that log in as postgres over the unix
// socket: the one running this process (the daemon) and postgres, the
// server's own user (its tools: pg_rewind, pg_basebackup, pgBackRest).
func operatorUsers() []string {
	users := []string{"postgres"}
	if u, err := user.Current(); err == nil {
		users = append(users, u.Username)
	}
	return users
}

func (c *Cluster) standbyRunConfig(name, primary string) runConfig {
	rc := c.runConfig(true, "")
	rc.primaryConnInfo = replConnInfo(c.nodes[primary], c.nodes[name])
	return rc
}

func (c *Cluster) primaryRunConfig(s State) runConfig {
	sync := ""
	if s.SyncEnabled {
		sync = s.Standby
	}
	return c.runConfig(false, sync)
}

// Start brings the database up: on first start it initialises the first
// node as primary and builds the standby from it; afterwards it rediscovers
// the roles from the persisted state (a node that is not the recorded
// primary only ever comes back as a standby). Then it starts the controller.
func (c *Cluster) Start(ctx context.Context) error {
	st, ok, err := loadState(c.cfg.StateFile)
	if err != nil {
		return err
	}
	if !ok {
		st = State{Epoch: 1, Primary: c.cfg.Nodes[0].Name}
		if len(c.cfg.Nodes) == 2 {
			st.Standby = c.cfg.Nodes[1].Name
		}
	}
	if _, known := c.nodes[st.Primary]; !known || (st.Standby != "" && c.nodes[st.Standby].Name == "") {
		return fmt.Errorf("state file %s names nodes %q/%q that are not configured", c.cfg.StateFile, st.Primary, st.Standby)
	}
	st.Durability = c.cfg.Durability
	c.state = st
	c.publish()

	p := c.inst[st.Primary]
	if !p.initialized() {
		if ok {
			return fmt.Errorf("primary %s of epoch %d has no data directory %s", st.Primary, st.Epoch, p.node.DataDir)
		}
		if err := p.initdb(ctx); err != nil {
			return err
		}
	}
	primaryDown := false
	if err := p.start(ctx, c.primaryRunConfig(st)); err != nil {
		if !ok || st.Standby == "" || !st.StandbyEligible {
			return fmt.Errorf("start primary: %w", err)
		}
		// The eligible standby has every acknowledged commit: start it as a
		// standby and let the controller fail over to it.
		c.log.Error("recorded primary does not start; failing over to the eligible standby", "primary", st.Primary, "err", err)
		primaryDown = true
	}
	if !primaryDown {
		if err := p.exec(ctx, `DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') THEN CREATE ROLE replicator WITH REPLICATION LOGIN; END IF; END$$`); err != nil {
			return fmt.Errorf("create replication role: %w", err)
		}
	}
	if err := saveState(c.cfg.StateFile, c.state); err != nil {
		return err
	}
	if !primaryDown {
		c.repoint(c.state.Primary, c.state.Epoch)
	}
	c.publish()
	if st.Standby != "" {
		if _, err := c.rejoin(ctx, st.Standby, st.Primary, false); err != nil {
			c.log.Warn("standby not started; the controller will retry", "node", st.Standby, "err", err)
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.runMu.Lock()
	c.cancel = cancel
	c.runMu.Unlock()
	c.wg.Add(1)
	go c.loop(runCtx)
	if primaryDown {
		// Callers bootstrap roles and databases on the primary right after
		// Start: return once the controller has promoted the standby and
		// repointed the endpoint, not while the failover is in flight.
		if err := c.waitFailedOver(ctx, 2*time.Minute); err != nil {
			return fmt.Errorf("recorded primary %s does not start and the failover to %s did not finish: %w", st.Primary, st.Standby, err)
		}
	}
	now := c.Status().State
	c.log.Info("database started", "epoch", now.Epoch, "primary", now.Primary, "standby", now.Standby, "durability", c.cfg.Durability)
	return nil
}

// waitFailedOver waits until the controller points the endpoint at a
// primary of the current epoch.
func (c *Cluster) waitFailedOver(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		// Usually the standby is promoted (a new epoch); when it cannot be,
		// the controller may start the old primary again in place (the same
		// epoch). Either way: a primary the endpoint points at.
		st := c.Status()
		if st.EndpointEpoch != 0 && st.EndpointEpoch == st.State.Epoch {
			return nil
		}
		select {
		case <-ctx.Done():
			if st.LastError != "" {
				return fmt.Errorf("%w (last controller error: %s)", ctx.Err(), st.LastError)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Stop stops the controller, then shuts every server down (fast shutdown,
// SIGKILL of the process group when ctx ends first).
func (c *Cluster) Stop(ctx context.Context) error {
	c.runMu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.runMu.Unlock()
	c.wg.Wait()
	var errs []error
	for _, in := range c.inst {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		errs = append(errs, in.stop(sctx))
		cancel()
	}
	for _, p := range c.probe {
		p.close()
	}
	return errors.Join(errs...)
}

// SetZonePower cuts (on false) or restores the power of zone: while it is
// off, every process of the zone's node is SIGKILLed, nothing starts it
// again (no restart, no rejoin, no rebuild), and the controller treats the
// node as dead: a primary there fails over to an eligible standby, a
// standby there is lost (in durability preferred the primary stops waiting
// for it). When the power returns, the node rejoins as a standby (pg_rewind
// or a fresh base backup), never as a primary. It returns the nodes of the
// zone (none: the database has no node there).
func (c *Cluster) SetZonePower(zone string, on bool) ([]string, error) {
	var nodes []string
	for _, n := range c.cfg.Nodes {
		if n.Zone == zone {
			nodes = append(nodes, n.Name)
		}
	}
	c.offMu.Lock()
	if on {
		delete(c.off, zone)
	} else {
		c.off[zone] = true
	}
	c.offMu.Unlock()
	if !on {
		// Marked off first, so that nothing starts them again meanwhile.
		for _, name := range nodes {
			if err := c.inst[name].signalAll(syscall.SIGKILL); err != nil {
				return nodes, fmt.Errorf("power off zone %s: %w", zone, err)
			}
		}
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nodes, nil
}

// zoneOff reports whether zone has no power.
func (c *Cluster) zoneOff(zone string) bool {
	c.offMu.Lock()
	defer c.offMu.Unlock()
	return c.off[zone]
}

// Kill SIGKILLs every server's process group at once (tests, emergencies).
func (c *Cluster) Kill() {
	c.runMu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.runMu.Unlock()
	for _, in := range c.inst {
		_ = in.kill()
	}
	c.wg.Wait()
	for _, in := range c.inst {
		_ = in.kill()
	}
}

// Signal sends sig to every process of node's server (postmaster and all
// its children). It is the failure injector for drills: SIGKILL crashes the
// server, SIGSTOP freezes it (a hung primary), SIGCONT thaws it.
func (c *Cluster) Signal(node string, sig syscall.Signal) error {
	in, ok := c.inst[node]
	if !ok {
		return fmt.Errorf("signal %s: no such node", node)
	}
	return in.signalAll(sig)
}

// Status returns the tier's latest published snapshot. It never waits on
// the controller: during a failover it shows the step the failover is at.
func (c *Cluster) Status() Status {
	p := c.snap.Load()
	if p == nil {
		return c.statusOf(State{}, 0, Observed{}, nil, "", "")
	}
	st := *p
	st.Failovers, st.Switchovers = c.failovers.Load(), c.switchoversDone.Load()
	if p.Replication != nil {
		r := *p.Replication
		st.Replication = &r
	}
	st.Nodes = append([]NodeStatus(nil), p.Nodes...)
	for i := range st.Nodes {
		st.Nodes[i].Pid = c.inst[st.Nodes[i].Name].livePid()
	}
	return st
}

// publish stores a snapshot of the controller's state (loop goroutine, or
// Start and RestartController while no loop runs).
func (c *Cluster) publish() {
	st := c.statusOf(c.state, c.endpointEpoch, c.lastObs, c.rebuilding, c.lastPlan, c.lastErr)
	c.snap.Store(&st)
	n := c.nodes[c.state.Primary]
	c.primary.Store(&n)
}

func (c *Cluster) statusOf(s State, endpointEpoch uint64, obs Observed, rebuilding map[string]bool, plan, lastErr string) Status {
	st := Status{State: s, EndpointEpoch: endpointEpoch, StandbySync: obs.StandbySync, LastPlan: plan, LastError: lastErr,
		Replication: obs.Replication, Connections: obs.Connections}
	for _, n := range c.cfg.Nodes {
		o := obs.Nodes[n.Name]
		ns := NodeStatus{Name: n.Name, Zone: n.Zone, Addr: n.Addr(), Health: o.Health.String(), Pid: c.inst[n.Name].livePid(), InRecovery: o.InRecovery}
		if o.Off {
			ns.Health = "no power"
		}
		switch {
		case rebuilding[n.Name]:
			ns.Role = "rebuilding"
		case !o.answering():
			ns.Role = "down"
		case o.InRecovery:
			ns.Role = "standby"
		default:
			ns.Role = "primary"
		}
		st.Nodes = append(st.Nodes, ns)
	}
	return st
}

// Primary returns the current primary's node configuration (the zero Node
// before Start). It never waits on the controller.
func (c *Cluster) Primary() Node {
	if p := c.primary.Load(); p != nil {
		return *p
	}
	return Node{}
}

// Bootstrap creates the application role (LOGIN, no password) and database
// (owned by the role) on the primary if they do not exist.
func (c *Cluster) Bootstrap(ctx context.Context, database, role string) error {
	conn, err := c.inst[c.Primary().Name].connect(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap %s: %w", database, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", role).Scan(&n); err != nil {
		return fmt.Errorf("bootstrap role %s: %w", role, err)
	}
	if n == 0 {
		if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN"); err != nil {
			return fmt.Errorf("create role %s: %w", role, err)
		}
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", database).Scan(&n); err != nil {
		return fmt.Errorf("bootstrap database %s: %w", database, err)
	}
	if n == 0 {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{database}.Sanitize()+" OWNER "+pgx.Identifier{role}.Sanitize()); err != nil {
			return fmt.Errorf("create database %s: %w", database, err)
		}
	}
	return nil
}

func (c *Cluster) repoint(node string, epoch uint64) {
	if c.cfg.Endpoint != nil {
		addr := ""
		if node != "" {
			addr = c.nodes[node].Addr()
		}
		c.cfg.Endpoint.SetTarget(epoch, addr)
	}
	if node != "" {
		c.endpointEpoch = epoch
	} else {
		c.endpointEpoch = 0
	}
	c.log.Info("endpoint repointed", "epoch", epoch, "primary", node)
}

// rejoin brings name back as a standby of primary: a plain restart when it
// was a standby, pg_rewind when it was a primary, a fresh base backup when
// those fail or fresh is set.
func (c *Cluster) rejoin(ctx context.Context, name, primary string, fresh bool) (rebuilt bool, err error) {
	in, src := c.inst[name], c.inst[primary]
	if err := in.kill(); err != nil {
		return false, err
	}
	rc := c.standbyRunConfig(name, primary)
	if !fresh && in.initialized() {
		if in.hasStandbySignal() {
			if err := in.start(ctx, rc); err == nil {
				return false, nil
			} else {
				in.log.Warn("restart as standby failed, rebuilding", "err", err)
			}
		} else {
			out, err := in.tool(ctx, "pg_rewind", "--target-pgdata="+in.node.DataDir, "--source-server="+src.node.AdminDSN(), "--progress")
			if err == nil {
				in.log.Info("pg_rewind done", "output", lastLines(out, 2))
				if err := in.start(ctx, rc); err == nil {
					return false, nil
				} else {
					in.log.Warn("start after pg_rewind failed, rebuilding", "err", err)
				}
			} else {
				in.log.Warn("pg_rewind failed, rebuilding with a base backup", "err", err)
			}
		}
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err := os.RemoveAll(in.node.DataDir); err != nil {
		return true, fmt.Errorf("remove %s: %w", in.node.DataDir, err)
	}
	if err := in.prepareDirs(); err != nil {
		return true, err
	}
	if err := os.MkdirAll(in.node.DataDir, 0o700); err != nil {
		return true, fmt.Errorf("create data dir: %w", err)
	}
	if err := in.chown(in.node.DataDir); err != nil {
		return true, err
	}
	if _, err := in.tool(ctx, "pg_basebackup", "-D", in.node.DataDir, "-d", src.node.AdminDSN(), "-X", "stream", "-c", "fast"); err != nil {
		return true, fmt.Errorf("base backup %s from %s: %w", name, primary, err)
	}
	in.log.Info("base backup done", "from", primary)
	return true, in.start(ctx, rc)
}

// dialCheck is the first probe layer: can the node's address be reached.
func dialCheck(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) error {
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}
