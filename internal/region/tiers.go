package region

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/api/routes"
	"github.com/haven-platform/haven/internal/backup"
	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/console"
	"github.com/haven-platform/haven/internal/dbsecret"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/idp"
	"github.com/haven-platform/haven/internal/imds"
	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/metrics"
	"github.com/haven-platform/haven/internal/parity"
	"github.com/haven-platform/haven/internal/peercred"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/pgha/endpoint"
	"github.com/haven-platform/haven/internal/release"
	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/secrets"
	"github.com/haven-platform/haven/internal/version"
	"github.com/haven-platform/haven/internal/vpc"
	"github.com/haven-platform/haven/internal/zone"
)

// tiers are the running tiers. Fields are set by the start goroutine; API
// handlers read a published copy (Region.view).
type tiers struct {
	zones []*zone.Zone
	// The operations tier: the metrics endpoint and its sampler, the
	// alarm store it fills and the engine evaluating it, the console.
	metrics    *metrics.Metrics
	sampler    *metrics.Sampler
	alarmStore *alarms.Store
	alarms     *alarms.Engine
	console    *console.Console
	// vpc is the region's VPC (nil on loopback ranges); lbNode, vpce and
	// dbNodes are its fixed nodes.
	vpc     *vpc.VPC
	lbNode  *vpc.Node
	vpce    *vpc.Node
	dbNodes map[string]*vpc.Node
	cgroups *cgroup.Manager
	ca      *ca.CA
	dbEP    dbEndpoint
	epKind  string // "vpc" (the router), "nat" (kernel DNAT) or "proxy" (user space)
	// epProc is the endpoint's proxy process (the host's path in a VPC,
	// the whole endpoint in proxy mode); nil with NAT.
	epProc   *endpoint.ProxyProcess
	db       *pgha.Cluster
	backups  *backup.Manager // nil when backups are off
	bkOff    string          // why backups are off
	bkUp     bool            // the backup tier started
	restores *backup.Restores
	issuer   *iam.Issuer
	policies *iam.Policies
	secrets  *secrets.Server
	secUp    bool // the Secrets Manager API serves
	cred     *dbsecret.Credential
	imds     *imds.Endpoints
	// idp is the identity provider (nil: identity is off);
	// idpSecretARN the ARN of the app's client secret.
	idp          *idp.Provider
	idpSecretARN string
	lb           *lb.Process
	fleet        *fleet.Fleet
	releases     *release.Controller
	scaling      *scalingTier
	st           storageTiers // the object store and the edge (storage.go)
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
	_ dbEndpoint = (*endpoint.ProxyProcess)(nil)
	_ dbEndpoint = (*endpoint.Routed)(nil)
)

// publish makes the tiers started so far visible to API handlers.
func (r *Region) publish() {
	t := r.t
	r.pub.Store(&t)
}

// view returns the published tiers (never nil).
func (r *Region) view() *tiers {
	if p := r.pub.Load(); p != nil {
		return p
	}
	return &tiers{}
}

func (r *Region) startZones(context.Context) error {
	zs, err := zone.New(r.cfg.Zones)
	if err != nil {
		return err
	}
	for i, z := range zs {
		z.AZ = r.spec.AWS.AvailabilityZones[i]
	}
	// The database nodes hold the addresses configs gave them (in a VPC,
	// their nodes take them in the network step).
	for _, n := range r.cfg.DB.Nodes {
		if r.cfg.Network.VPC {
			break
		}
		for _, z := range zs {
			if z.Name != n.Zone {
				continue
			}
			if a, err := z.Allocate("db-" + z.Name); err != nil || a != n.ListenAddr {
				return fmt.Errorf("zone %s: the database address %s is not free (got %v, %v)", z.Name, n.ListenAddr, a, err)
			}
		}
	}
	r.t.zones = zs
	out := ""
	for i, z := range zs {
		if i > 0 {
			out += ", "
		}
		if r.cfg.Network.VPC {
			out += fmt.Sprintf("%s public %s app %s db %s", z.AZ, z.Subnet(zone.Public), z.Subnet(zone.App), z.Subnet(zone.DB))
		} else {
			out += z.AZ + " " + z.CIDR.String()
		}
	}
	r.say("zones: %s", out)
	return nil
}

// startCgroups sets up the region's cgroup root.
func (r *Region) startCgroups(ctx context.Context) error {
	m, err := cgroup.NewManager(r.cfg.Cgroup, r.opts.Logger)
	if err != nil {
		return fmt.Errorf("set up cgroups: %w", err)
	}
	if !m.Enabled() {
		r.warn("no usable cgroup v1 or v2 hierarchy: instances run without CPU and memory limits")
		return nil
	}
	// The groups an earlier daemon left stay until the fleet has adopted
	// the instances running in them; it removes the others (fleet.Start).
	r.t.cgroups = m
	return nil
}

func (r *Region) stopCgroups(ctx context.Context) error {
	if r.t.cgroups == nil {
		return nil
	}
	return r.t.cgroups.Remove(ctx)
}

func (r *Region) startCA(context.Context) error {
	c, err := ca.LoadOrCreate(filepath.Join(r.opts.StateDir, "ca"))
	if err != nil {
		return fmt.Errorf("load region CA: %w", err)
	}
	r.t.ca = c
	return nil
}

func (r *Region) caPath() string { return filepath.Join(r.opts.StateDir, "ca", ca.CertFile) }

// prepareBackups writes pgBackRest's configuration: the database archives
// WAL through it from its first start. Without pgBackRest, backups are off.
func (r *Region) prepareBackups(context.Context) error {
	cfg := r.cfg.Backup
	cfg.Logger = r.opts.Logger
	cfg.OnEvent = r.backupEvent
	// The archiver switches WAL on the current primary: the controller's
	// snapshot, which never waits on a failover.
	cfg.Primary = func() pgha.Node { return r.t.db.Primary() }
	m, err := backup.New(cfg)
	if err != nil {
		r.t.bkOff = err.Error()
		r.warn("backups are off: " + err.Error())
		return nil
	}
	r.t.backups = m
	r.t.restores = &backup.Restores{Manager: m, Dir: r.cfg.RestoresDir}
	return nil
}

// startEndpoint starts the database endpoint: the kernel forwards (nftables
// DNAT) when it can, since a user-space hop costs about half of the
// database's throughput on loopback.
func (r *Region) startEndpoint(ctx context.Context) error {
	var err error
	if r.t.vpc != nil {
		// The router forwards the endpoint's address in the VPC; the host
		// keeps database.endpoint through a proxy to it, a process of its
		// own so the host's connections outlive the daemon.
		if r.t.epProc, err = r.endpointProcess(); err != nil {
			return err
		}
		r.t.dbEP, err = endpoint.NewRouted(endpoint.RoutedConfig{Router: r.t.vpc, Name: secgroup.DBEndpoint,
			Listen: r.cfg.Endpoint.Listen, HostProxy: r.t.epProc, StateFile: r.cfg.Records.Endpoint, Logger: r.opts.Logger})
		r.t.epKind = "vpc"
	} else if natErr := endpoint.NATAvailable(ctx); natErr == nil {
		c := r.cfg.Endpoint
		c.Logger = r.opts.Logger
		r.t.dbEP, err = endpoint.NewNAT(c)
		r.t.epKind = "nat"
	} else {
		r.warn(fmt.Sprintf("database endpoint: kernel forwarding unavailable (%v); using the user-space proxy, which costs throughput", natErr))
		r.t.epProc, err = r.endpointProcess()
		r.t.dbEP = r.t.epProc
		r.t.epKind = "proxy"
	}
	if err != nil {
		return err
	}
	if err := r.t.dbEP.Start(ctx); err != nil {
		return fmt.Errorf("start database endpoint on %s: %w", r.cfg.Endpoint.Listen, err)
	}
	return nil
}

func (r *Region) stopEndpoint(ctx context.Context) error { return r.t.dbEP.Stop(ctx) }

// endpointProcess is the endpoint's proxy process on database.endpoint.
func (r *Region) endpointProcess() (*endpoint.ProxyProcess, error) {
	return endpoint.NewProcess(endpoint.ProcessConfig{Dir: r.cfg.Records.EndpointDir, Listen: r.cfg.Endpoint.Listen, Logger: r.opts.Logger})
}

// detachEndpoint leaves the endpoint as it is for the next daemon: the
// router's rules (or NAT table) in the kernel, the proxy process running.
func (r *Region) detachEndpoint(context.Context) error {
	if r.t.epProc != nil {
		r.t.epProc.Detach()
	}
	return nil
}

func (r *Region) startDatabase(ctx context.Context) error {
	cfg := r.cfg.DB
	cfg.Endpoint, cfg.Logger, cfg.OnEvent = r.t.dbEP, r.opts.Logger, r.dbEvent
	cfg.Certificates = r.t.ca // replication logs in with the region CA's client certificates
	if r.t.vpc != nil {
		cfg.Spawn, cfg.Dial = r.spawnDB, r.t.vpc.DialContext
	}
	if r.t.backups != nil {
		cfg.ArchiveCommand = r.t.backups.ArchiveCommand()
	}
	db, err := pgha.New(cfg)
	if err != nil {
		return err
	}
	nodes := cfg.Nodes
	if len(nodes) > 1 {
		r.say("database: starting PostgreSQL 15 primary in zone %s and synchronous standby in zone %s", nodes[0].Zone, nodes[1].Zone)
	} else {
		r.say("database: starting PostgreSQL 15 in zone %s (multi_az: false)", nodes[0].Zone)
	}
	r.t.db = db
	if err := db.Start(ctx); err != nil {
		return fmt.Errorf("start database: %w", err)
	}
	// What a crashed daemon left under the database's files and no
	// server of this controller runs (restored servers, pgBackRest
	// workers, backends of a server that was not adopted) goes; the
	// servers running now, adopted or started, and their children stay.
	var keepPIDs []int
	for _, n := range db.Status().Nodes {
		if n.Pid > 0 {
			keepPIDs = append(keepPIDs, n.Pid)
		}
	}
	if killed := sweepLeftovers(r.pgRoot, keepPIDs); len(killed) > 0 {
		r.log.Warn("killed processes a previous daemon left behind", "pids", killed)
	}
	if adopted := db.Adopted(); len(adopted) > 0 {
		r.say("database: adopted the running servers %v of epoch %d (nothing restarted)", adopted, db.Status().State.Epoch)
		return nil
	}
	if err := db.Bootstrap(ctx, r.spec.Database.Name, r.spec.Database.User); err != nil {
		return err
	}
	where := r.spec.Database.Endpoint
	if r.t.vpc != nil {
		where += " (" + r.cfg.Network.DBEndpoint.String() + " in the VPC)"
	}
	r.say("database: endpoint %s → %s (epoch %d, %s)", where, db.Primary().Addr(), db.Status().State.Epoch, r.t.epKind)
	return nil
}

func (r *Region) stopDatabase(ctx context.Context) error { return r.t.db.Stop(ctx) }

// detachDatabase stops the failover controller and leaves the servers
// running for the next daemon's controller, which adopts them.
func (r *Region) detachDatabase(context.Context) error {
	r.t.db.Detach()
	return nil
}

// openSecrets builds the credential issuer, the policies and the secrets
// server (its store and audit log); it does not listen yet.
func (r *Region) openSecrets(context.Context) error {
	var err error
	dir := r.cfg.Secrets.Dir
	var saveMu sync.Mutex
	var issuer *iam.Issuer
	issuer, err = iam.NewIssuer(iam.IssuerConfig{Account: account, Logger: r.opts.Logger, OnChange: func() {
		// Sealed under the secrets' root key, so a daemon that restarts
		// (a crash, an upgrade) keeps accepting what instances hold.
		saveMu.Lock()
		defer saveMu.Unlock()
		if err := secrets.SaveCredentials(dir, issuer.Snapshot()); err != nil {
			r.log.Warn("save the issued credentials", "err", err)
		}
	}})
	if err != nil {
		return fmt.Errorf("start identity issuer: %w", err)
	}
	r.t.issuer = issuer
	if creds, err := secrets.LoadCredentials(dir); err != nil {
		r.warn("the credentials an earlier daemon issued cannot be read (" + err.Error() + "): instances get new ones from their metadata endpoint when theirs are refused")
	} else if n := issuer.Restore(creds); n > 0 {
		r.log.Info("restored the credentials an earlier daemon issued", "count", n)
	}
	r.t.policies = iam.NewPolicies()
	if err := r.t.policies.Set(r.t.issuer.OperatorRole(), iam.Policy{Version: "2012-10-17", Statement: []iam.Statement{{
		Sid: "Operator", Effect: iam.Allow, Action: iam.StringList{"secretsmanager:*"}, Resource: iam.StringList{"*"},
	}}}); err != nil {
		return err
	}
	cfg := r.cfg.Secrets
	cfg.Account, cfg.Keys, cfg.Policies, cfg.Failpoint, cfg.Logger = r.t.issuer.Account(), r.t.issuer, r.t.policies, r.failpoints, r.opts.Logger
	r.t.secrets, err = secrets.New(cfg)
	if err != nil {
		return fmt.Errorf("open secrets store in %s: %w", cfg.Dir, err)
	}
	// Credentials are issued through the registrar, so the object store,
	// in its own process, verifies them too.
	r.t.imds = imds.NewEndpoints(imds.EndpointsConfig{Region: r.spec.AWS.Region, Role: r.cfg.AppRole, Account: r.t.issuer.Account(),
		Issuer: r.newRegistrar(r.t.issuer), Logger: r.opts.Logger})
	return nil
}

// closeSecrets stops every metadata endpoint still running (the fleet's
// stop has ended its instances' already) and the Secrets Manager API, and
// closes its audit log.
func (r *Region) closeSecrets(ctx context.Context) error {
	return errors.Join(r.t.imds.StopAll(ctx), r.t.secrets.Stop(ctx))
}

// bootstrapCredential creates the app's two alternating login roles and,
// on first start, the database secret; the database then agrees with AWSCURRENT.
func (r *Region) bootstrapCredential(ctx context.Context) error {
	cfg := r.cfg.DBSecret
	cfg.Store, cfg.Driver, cfg.Roles = r.t.secrets.Store(), r.t.secrets.Driver(), r.t.db
	cfg.TestLogin, cfg.NewPassword, cfg.Failpoints = pgha.TestLogin, pgha.NewPassword, r.failpoints
	cfg.OnStep = func(step, user string) {
		r.events.Add("secrets", "rotation-"+step, cfg.Name, step+" done for user "+user)
	}
	r.t.cred = dbsecret.New(cfg)
	created, err := r.t.cred.Bootstrap(ctx)
	if err != nil {
		return err
	}
	if created {
		r.say("secrets: created %s (user %s)", cfg.Name, r.t.cred.Users()[0])
	}
	return nil
}

// startBackups creates the stanza, then the archive ticker and the
// scheduler run (the first full backup starts at once, in the background).
// A failure leaves the region serving, with backups off and the reason in
// the status.
func (r *Region) startBackups(ctx context.Context) error {
	m := r.t.backups
	if m == nil {
		return nil
	}
	start := m.Start
	if r.t.db != nil && len(r.t.db.Adopted()) > 0 {
		start = m.Resume // archiving into the stanza already: no stanza-create and check again
	}
	if err := start(ctx); err != nil {
		r.t.bkOff = "start backups: " + err.Error()
		r.warn("backups are off: " + r.t.bkOff + "; see " + filepath.Join(r.cfg.Backup.Dir, "log"))
		return nil
	}
	r.t.bkUp = true
	r.say("backups: pgBackRest stanza %s in %s; WAL archived from every node; full backups %q, retention %s",
		m.Stanza(), filepath.Join(r.cfg.Backup.Dir, "repo"), r.spec.Database.BackupSchedule, r.spec.Database.BackupRetention)
	return nil
}

func (r *Region) stopBackups(ctx context.Context) error {
	var errs []error
	if r.t.restores != nil {
		errs = append(errs, r.t.restores.StopAll(ctx))
	}
	if r.t.bkUp {
		errs = append(errs, r.t.backups.Stop(ctx))
	}
	return errors.Join(errs...)
}

// startSecrets lets the app role read its own secret, serves the Secrets
// Manager API, finishes or rolls back a rotation a crash interrupted and
// starts the rotation schedule.
func (r *Region) startSecrets(ctx context.Context) error {
	if err := r.derive(ctx, &r.t, r.cfg); err != nil { // the app role's policy, the secret's endpoint
		return err
	}
	if err := r.t.secrets.Start(ctx); err != nil {
		return fmt.Errorf("start secrets API on %s: %w (set secrets.listen to a free address)", r.spec.Secrets.Listen, err)
	}
	r.t.secUp = true
	r.say("secrets: Secrets Manager API at %s, database secret %s", r.t.secrets.Endpoint(), r.cfg.DBSecret.Name)
	if r.t.vpc != nil {
		if err := r.serveVPCE(ctx); err != nil {
			return err
		}
		r.say("secrets: interface endpoint for the instances at %s (vpce-sg)", r.vpceURL(r.t.zones[0].Name))
	}
	if what, err := r.t.cred.Resume(ctx); err != nil {
		return err
	} else if what != "" {
		r.say("secrets: %s", what)
	}
	if r.cfg.Rotation > 0 {
		s := secrets.NewScheduler(secrets.SchedulerConfig{
			Driver: r.t.secrets.Driver(), Every: map[string]time.Duration{r.cfg.DBSecret.Name: r.cfg.Rotation}, CheckInterval: r.cfg.RotationCheck,
		})
		if err := s.Start(ctx); err != nil {
			return err
		}
		r.schedMu.Lock()
		r.sched = s
		r.schedMu.Unlock()
	}
	return nil
}

// stopSecrets stops the rotation schedule (closeSecrets stops the API).
func (r *Region) stopSecrets(ctx context.Context) error {
	r.schedMu.Lock()
	defer r.schedMu.Unlock()
	if r.sched == nil {
		return nil
	}
	err := r.sched.Stop(ctx)
	r.sched = nil
	return err
}

// appEnv is the whole environment of an app process: the daemon's PATH and
// HOME, the spec's non-secret settings, the Secrets Manager endpoint.
func (r *Region) appEnv() map[string]string { return r.appEnvOf(&r.t, r.cfg) }

// appEnvOf is appEnv for configuration c (an apply's).
func (r *Region) appEnvOf(t *tiers, c Configs) map[string]string {
	env := map[string]string{}
	for k, v := range c.AppEnv {
		env[k] = v
	}
	env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = t.secrets.Endpoint()
	storageEnv(t, env)
	return env
}

// runRelease runs app.release once, with an instance's environment and its
// own metadata endpoint, and streams its output into the progress log.
func (r *Region) runRelease(ctx context.Context) error {
	if len(r.cfg.Release) == 0 {
		return nil
	}
	if _, ok := r.t.db.Adopted()[r.t.db.Status().State.Primary]; ok {
		// The region was running: its release ran when it started, and
		// the instances running now use what it did. No re-seeding.
		r.say("release: skipped (the database was adopted running; %s ran when the region started)", strings.Join(r.spec.App.Release, " "))
		r.noteAdoption(func(a *api.Adoption) { a.ReleaseSkipped = true })
		return nil
	}
	r.say("release: running %s", strings.Join(r.spec.App.Release, " "))
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range r.appEnv() {
		env = append(env, k+"="+v)
	}
	start := (*exec.Cmd).Start
	md := r.releaseEndpoints()
	if r.t.vpc != nil {
		// The task runs as an instance does: in its own namespace in the
		// first zone's app subnet, with its metadata at 169.254.169.254.
		z := r.t.zones[0]
		node, err := r.t.vpc.AddNode(ctx, vpc.NodeSpec{Name: releaseNode, Attach: []vpc.Attach{{Zone: z.Name, Tier: zone.App}}, Groups: []string{secgroup.App}, Metadata: true})
		if err != nil {
			return fmt.Errorf("app.release: %w", err)
		}
		defer r.t.vpc.RemoveNode(context.WithoutCancel(ctx), releaseNode)
		// The release role's metadata (storage.go), at 169.254.169.254.
		ln, err := node.Listen(ctx, "tcp", net.JoinHostPort(vpc.MetadataAddr.String(), "80"))
		if err != nil {
			return fmt.Errorf("metadata endpoint of %s: %w", releaseNode, err)
		}
		if _, err := md.Serve(ctx, releaseNode, z.AZ, node.Addr().String(), ln); err != nil {
			return err
		}
		defer md.End(context.WithoutCancel(ctx), releaseNode)
		env = append(env, "AWS_ENDPOINT_URL_SECRETS_MANAGER="+r.vpceURL(z.Name), "AWS_ENDPOINT_URL_S3="+r.s3URL(z.Name))
		start = node.Start
	} else {
		url, err := md.Start(ctx, releaseNode, r.spec.AWS.AvailabilityZones[0], "127.0.0.1", peercred.TaskCaller(r.cfg.Release), nil)
		if err != nil {
			return err
		}
		defer md.End(context.WithoutCancel(ctx), releaseNode)
		env = append(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+url)
	}
	logf, err := os.OpenFile(r.cfg.ReleaseLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	err = fleet.RunTask(ctx, fleet.Task{Command: r.cfg.Release, Env: env, Log: logf, Start: start, Progress: func(l string) { r.say("release: %s", l) },
		Sandbox: r.cfg.Fleet.Sandbox}) // app code: as unprivileged as the instances
	if err != nil {
		return fmt.Errorf("app.release %v failed: %w; its output is in %s", r.spec.App.Release, err, r.cfg.ReleaseLog)
	}
	r.say("release: done")
	return nil
}

func (r *Region) startLB(ctx context.Context) error {
	tlsCfg, err := r.t.ca.ServerTLS(r.cfg.LBNames, r.cfg.LBIPs, 90*24*time.Hour)
	if err != nil {
		return fmt.Errorf("issue load balancer certificate: %w", err)
	}
	cfg := r.cfg.LB
	cfg.TLS = tlsCfg
	pc := lb.ProcessConfig{
		Dir: r.cfg.Records.LBDir, Config: cfg, AccessLogPath: r.cfg.AccessLog, Version: version.String(), Logger: r.opts.Logger,
		OnEvent: func(e lb.ProcessEvent) { r.events.Add("lb", e.Kind, strconv.Itoa(e.PID), e.Message) },
	}
	if r.t.lbNode != nil {
		// The process lives in the load balancer's namespace and reaches
		// targets from its address in each zone's public subnet (alb-sg);
		// its listeners are the host's (127.0.0.1:8443, :8080), bound by
		// the daemon and inherited.
		pc.Start = r.t.lbNode.Start
	}
	l, err := lb.NewProcess(pc)
	if err != nil {
		return err
	}
	l.OnChange(func(t lb.TargetStatus) {
		r.events.Add("lb", "target-"+string(t.State), t.ID, t.Reason)
	})
	if err := l.Start(ctx); err != nil {
		return err
	}
	r.t.lb = l
	a := l.Adoption()
	switch {
	case a.Replaced != 0:
		r.say("load balancer: adopted process %d and replaced it by a hot restart (%s): process %d serves %s (CA %s)", a.Replaced, a.ReplacedReason, l.PID(), l.HTTPSURL(), r.caPath())
	case a.Adopted != 0:
		r.say("load balancer: adopted process %d serving %s (CA %s)", a.Adopted, l.HTTPSURL(), r.caPath())
	default:
		r.say("load balancer: process %d serves %s (CA %s)", l.PID(), l.HTTPSURL(), r.caPath())
	}
	r.noteAdoption(func(ad *api.Adoption) {
		ad.LB, ad.LBReplaced, ad.LBReplacedWhy = a.Adopted, a.Replaced, a.ReplacedReason
		ad.LeftAlone = append(ad.LeftAlone, prefixed("load balancer ", a.LeftAlone)...)
	})
	return nil
}

func (r *Region) stopLB(ctx context.Context) error { return r.t.lb.Stop(ctx) }

// detachLB leaves the load balancer process serving for the next daemon,
// which adopts it (and replaces it by a hot restart if it is of another
// version).
func (r *Region) detachLB(context.Context) error {
	r.t.lb.Detach()
	return nil
}

func prefixed(p string, l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = p + s
	}
	return out
}

// balancer adapts the load balancer's target group to the fleet's Balancer.
type balancer struct{ l *lb.Process }

func (b balancer) Register(t fleet.Target) error {
	return b.l.Register(lb.Target{ID: t.ID, Zone: t.Zone, Addr: t.Addr})
}

func (b balancer) Deregister(ctx context.Context, id string) error { return b.l.Deregister(ctx, id) }

func (b balancer) TargetHealth(id string) (string, bool) {
	s, ok := b.l.TargetHealth(id)
	return string(s), ok
}

func (r *Region) startFleet(ctx context.Context) error {
	cfg := r.cfg.Fleet
	cfg.Template.Env = r.appEnv()
	cfg.Zones, cfg.Balancer, cfg.Cgroups, cfg.Logger = r.t.zones, balancer{r.t.lb}, r.t.cgroups, r.opts.Logger
	cfg.EnvFunc = r.instanceEnv
	if r.t.vpc != nil {
		cfg.Network = instanceNet{r}
	} else {
		cfg.AdoptFunc = r.adoptInstanceIdentity
	}
	cfg.OnEvent = func(e fleet.Event) {
		r.events.Add("fleet", e.Type, e.Instance, "zone "+e.Zone+" "+e.Reason)
		r.endIdentity(e)
	}
	// The fleet launches the current version: the spec's at first, the
	// last rollout's outcome after that.
	store, err := release.OpenStore(r.cfg.ReleasesDir)
	if err != nil {
		return err
	}
	relCfg := release.Config{
		Store: store, Fleet: releaseFleet{r}, Zones: r.spec.Zones, Policy: r.cfg.Releases,
		Targets: r.targetCounts, LatencyBounds: lb.LatencyBounds, Alarms: r.alarmStates, Logger: r.opts.Logger,
		OnEvent: func(kind, subject, msg string) { r.events.Add("deploy", kind, subject, msg) },
	}
	if len(r.spec.App.Migrations) > 0 {
		relCfg.Breaking = r.breakingMigrations
	}
	rel, err := release.New(relCfg)
	if err != nil {
		return err
	}
	cur, err := rel.Ensure(release.Template{Command: cfg.Template.Command, Env: r.spec.App.Env})
	if err != nil {
		return err
	}
	cfg.Template = r.versionTemplate(cur)
	f, err := fleet.New(cfg)
	if err != nil {
		return err
	}
	r.t.fleet, r.t.releases = f, rel
	if err := f.Start(ctx); err != nil {
		return fmt.Errorf("start fleet: %w", err)
	}
	a := f.Adoption()
	known := map[string]bool{}
	for _, in := range f.Instances() {
		known[in.ID] = true
	}
	for _, t := range r.t.lb.Targets() {
		if !known[t.ID] && t.State != lb.StateDraining {
			// A target of an instance the earlier daemon launched but never
			// recorded: the load balancer outlived it; the target goes.
			go func(id string) {
				dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = r.t.lb.Deregister(dctx, id)
			}(t.ID)
		}
	}
	if len(a.Adopted) > 0 || len(a.Gone)+len(a.LeftAlone)+len(a.Failed) > 0 {
		c := f.Capacity()
		r.say("fleet: adopted %d running instances %v (desired %d); %d gone (replaced), %d left alone, %d not taken over",
			len(a.Adopted), a.Adopted, c.Desired, len(a.Gone), len(a.LeftAlone), len(a.Failed))
		r.noteAdoption(func(ad *api.Adoption) {
			ad.Instances, ad.Relaunched = a.Adopted, a.Gone
			ad.LeftAlone = append(ad.LeftAlone, prefixed("instance ", a.LeftAlone)...)
			ad.Failed = append(ad.Failed, prefixed("instance ", a.Failed)...)
		})
	} else {
		r.say("fleet: launching %d instances of %v across zones %v", r.spec.Fleet.Desired, r.spec.App.Command, r.spec.Zones)
		if sb := cfg.Sandbox; sb != nil {
			r.say("fleet: instances run as uid %d: no capabilities, no_new_privs, a private /tmp; no access to the state dir", sb.UID)
		} else {
			r.warn("fleet: haven is not root, so instances run as its own user, without a sandbox of their own")
		}
	}
	r.warnNotBuilt()
	return nil
}

func (r *Region) stopFleet(ctx context.Context) error { return r.t.fleet.Stop(ctx) }

// detachFleet ends the fleet's control loop and leaves every instance
// running for the next daemon, which adopts them.
func (r *Region) detachFleet(context.Context) error {
	r.t.fleet.Detach()
	return nil
}

// adoptInstanceIdentity serves an adopted instance's metadata endpoint
// again, on loopback: at the address and port its environment names (the
// instance keeps the URL it was started with).
func (r *Region) adoptInstanceIdentity(info fleet.InstanceInfo, env map[string]string) error {
	u, err := url.Parse(env["AWS_EC2_METADATA_SERVICE_ENDPOINT"])
	if err != nil || u.Port() == "" {
		return fmt.Errorf("metadata endpoint of %s: its environment names none (%q)", info.ID, env["AWS_EC2_METADATA_SERVICE_ENDPOINT"])
	}
	port, _ := strconv.Atoi(u.Port())
	az := r.spec.AWS.Region + "a"
	if info.Zone != nil {
		az = info.Zone.AZ
	}
	groups := r.instanceGroups(info.ID)
	_, err = r.t.imds.StartAt(context.Background(), info.ID, az, info.Host, port, peercred.InstanceCaller(info.ID, groups), peercred.InstanceProcesses(groups))
	return err
}

// instanceGroups returns the process groups of instance id as the fleet
// knows them (fleet.ProcessGroups): the metadata endpoint's callers.
func (r *Region) instanceGroups(id string) func() []int {
	return func() []int {
		if r.t.fleet == nil {
			return nil
		}
		return r.t.fleet.ProcessGroups(id)
	}
}

// startReleases resumes a rollout a previous daemon left unfinished and
// serves haven deploy.
func (r *Region) startReleases(ctx context.Context) error {
	if err := r.t.releases.Start(ctx); err != nil {
		return fmt.Errorf("start releases: %w", err)
	}
	if st := r.t.releases.Status(); st.Active != nil {
		r.say("releases: resumed rollout %s (%s → %s)", st.Active.ID, st.Active.From, st.Active.Target)
	} else {
		// No rollout to resume: the fleet's plan owns launches again (an
		// adopted fleet keeps a refresh's hold until this point).
		r.t.fleet.SetRefresh(false)
	}
	return nil
}

func (r *Region) stopReleases(ctx context.Context) error { return r.t.releases.Stop(ctx) }

// versionTemplate is the launch template of release version v: the
// spec's template with v's command and v's environment over the region's.
func (r *Region) versionTemplate(v release.Version) fleet.LaunchTemplate {
	t := r.cfg.Fleet.Template
	t.Command, t.Version = slices.Clone(v.Command), v.ID
	t.Env = maps.Clone(r.appEnv())
	maps.Copy(t.Env, v.Env)
	return t
}

// targetCounts are the load balancer's per-target counts for rollouts.
func (r *Region) targetCounts() []release.TargetCounts {
	var out []release.TargetCounts
	for _, t := range r.t.lb.Targets() {
		out = append(out, release.TargetCounts{ID: t.ID, Requests: t.Requests, Errors5xx: t.Responses5xx, Latency: t.Latency})
	}
	return out
}

// releaseFleet adapts the fleet to what rollouts drive.
type releaseFleet struct{ r *Region }

func (a releaseFleet) Instances() []release.FleetInstance {
	var out []release.FleetInstance
	for _, in := range a.r.t.fleet.Instances() {
		out = append(out, release.FleetInstance{ID: in.ID, Zone: in.Zone, Version: in.Version, State: string(in.State),
			Health: string(in.Health), Reason: in.Reason, LaunchedAt: in.LaunchedAt})
	}
	return out
}

func (a releaseFleet) Desired() int { return a.r.t.fleet.Capacity().Desired }

func (a releaseFleet) Launch(ctx context.Context, v release.Version, zone string) (string, error) {
	return a.r.t.fleet.Launch(ctx, a.r.versionTemplate(v), zone)
}

func (a releaseFleet) Terminate(ctx context.Context, id string) error {
	return a.r.t.fleet.Terminate(ctx, id, false)
}

func (a releaseFleet) Use(v release.Version) error {
	return a.r.t.fleet.SetTemplate(a.r.versionTemplate(v))
}

func (a releaseFleet) SetRefresh(on bool) { a.r.t.fleet.SetRefresh(on) }

// instanceEnv starts the instance's own metadata endpoint on its own
// address, answering only the instance's processes, and points the SDK at it.
func (r *Region) instanceEnv(info fleet.InstanceInfo) map[string]string {
	if r.t.vpc != nil {
		// The metadata endpoint is at 169.254.169.254 inside the instance
		// (Attach started it), where the SDK looks without a variable; the
		// Secrets Manager API is the interface endpoint in its zone.
		return map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": r.vpceURL(info.Zone.Name), "AWS_ENDPOINT_URL_S3": r.s3URL(info.Zone.Name)}
	}
	az := r.spec.AWS.Region + "a"
	if info.Zone != nil {
		az = info.Zone.AZ
	}
	id := info.ID
	groups := r.instanceGroups(id)
	md, err := r.t.imds.Start(context.Background(), id, az, info.Host, peercred.InstanceCaller(id, groups), peercred.InstanceProcesses(groups))
	if err != nil {
		// The instance starts without identity and fails its health check; the
		// fleet replaces it. Say why.
		r.log.Error("start metadata endpoint", "instance", id, "err", err)
		return map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://" + net.JoinHostPort(info.Host, "1")}
	}
	return map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": md}
}

// endIdentity ends an instance's metadata endpoint and revokes its
// credentials when it terminates; a failed launch's id is not in its event,
// so endpoints of ids the fleet does not know are ended after a while.
func (r *Region) endIdentity(e fleet.Event) {
	switch e.Type {
	case fleet.EventTerminated:
		if r.t.vpc == nil { // in a VPC, the network's Detach ended it
			_ = r.t.imds.End(context.Background(), e.Instance)
		}
	case fleet.EventLaunchFailed:
		known := map[string]bool{}
		for _, in := range r.t.fleet.Instances() {
			known[in.ID] = true
		}
		r.t.imds.EndStale(context.Background(), func(id string) bool { return known[id] }, 30*time.Second)
	}
}

// warnNotBuilt says plainly which spec settings the local region does not
// act on yet: one line per capability internal/parity marks not built
// locally whose fields the spec sets (the edge, say).
func (r *Region) warnNotBuilt() {
	for _, w := range parity.LocalWarnings(r.spec) {
		r.warn(w)
	}
}

// waitHealthy waits until fleet.min instances are in service and healthy.
func (r *Region) waitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.ReadyTimeout)
	defer cancel()
	last := -1
	for {
		st := r.Status()
		// Healthy behind the load balancer: with EC2 health checks the fleet
		// calls an instance healthy once its process runs, but the LB routes
		// to it only after its own checks pass.
		routed := 0
		for _, in := range st.Instances {
			if in.State == string(fleet.StateInService) && in.Target == "healthy" {
				routed++
			}
		}
		if routed != last {
			last = routed
			r.say("fleet: %d/%d instances healthy behind the load balancer", routed, st.Fleet.Desired)
		}
		if routed >= max(r.spec.Fleet.Min, 1) || (r.spec.Fleet.Min == 0 && st.Fleet.Desired == 0) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d healthy instances: %w; the instance logs in %s say why",
				r.spec.Fleet.Min, ctx.Err(), r.cfg.Fleet.LogDir)
		case <-r.shutdown:
			return errors.New("shutdown requested while starting")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var (
	_ routes.Region  = (*regionAPI)(nil)
	_ routes.DBTiers = (*regionAPI)(nil)
)
