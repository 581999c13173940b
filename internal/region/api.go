package region

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/api/routes"
	"github.com/haven-platform/haven/internal/backup"
	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/scaling"
	"github.com/haven-platform/haven/internal/secrets"
	"github.com/haven-platform/haven/internal/version"
	"github.com/haven-platform/haven/internal/vpc"
	"github.com/haven-platform/haven/internal/zone"
)

// finite returns &f rounded to two decimals, or nil when f is NaN or infinite.
func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	v := math.Round(f*100) / 100
	return &v
}

// serveAPI listens on the state directory's unix socket (mode 0600: only the
// region's owner may drive it) and serves the daemon API.
func (r *Region) serveAPI() (func(), error) {
	sock := filepath.Join(r.opts.StateDir, api.SocketName)
	_ = os.Remove(sock) // a stale socket from a crashed daemon; the state lock says we own it
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	a := &regionAPI{r}
	routes.RegionRoutes(mux, a)
	routes.DBRoutes(mux, routes.DBInfo{
		Endpoint: func() string { return r.now().spec.Database.Endpoint }, AppUser: r.spec.Database.User, AppDatabase: r.spec.Database.Name,
		AppAuth: r.cfg.DB.AppAuth, MultiAZ: r.spec.Database.MultiAZ,
		Repo: filepath.Join(r.cfg.Backup.Dir, "repo"), BackupLog: filepath.Join(r.cfg.Backup.Dir, "log"),
	}, a, r.events)
	routes.SecretsRoutes(mux, a.secrets)
	routes.EdgeRoutes(mux, a.edgeAPI)
	routes.ScalingRoutes(mux, a.scaling, r.events)
	routes.OpsRoutes(mux, a, r.events)
	routes.DeployRoutes(mux, func() routes.Releases {
		if rel := r.view().releases; rel != nil && r.view().fleet != nil {
			return rel
		}
		return nil
	})
	routes.IdentityRoutes(mux, a.identity)
	routes.SpecRoutes(mux, r)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close(); _ = os.Remove(sock) }, nil
}

// regionAPI gives the API routes the published tiers through their narrow
// interfaces.
type regionAPI struct{ r *Region }

func (a *regionAPI) Status() api.Status { return a.r.Status() }
func (a *regionAPI) Shutdown()          { a.r.requestShutdown() }
func (a *regionAPI) Handover()          { a.r.requestHandover() }

func (a *regionAPI) Events(q api.EventQuery) []api.Event { return a.r.events.Query(q) }

// scaling returns the scaling tier once it runs (nil before).
func (a *regionAPI) scaling() routes.Scaling {
	if s := a.r.view().scaling; s != nil {
		return s
	}
	return nil
}

func (a *regionAPI) DB() routes.DB {
	if db := a.r.view().db; db != nil {
		return db
	}
	return nil
}

func (a *regionAPI) Backups() (routes.Backups, *backup.Restores, string) {
	v := a.r.view()
	if v.backups == nil || !v.bkUp {
		return nil, nil, v.bkOff
	}
	return v.backups, v.restores, ""
}

// secretsTier is the identity and secrets tier as the secrets routes see it.
type secretsTier struct {
	r *Region
	v *tiers
}

func (a *regionAPI) secrets() routes.Secrets {
	v := a.r.view()
	if !v.secUp || v.cred == nil {
		return nil
	}
	return secretsTier{a.r, v}
}

func (s secretsTier) Info() api.SecretsInfo {
	info := api.SecretsInfo{
		Endpoint: s.v.secrets.Endpoint(), Region: s.r.spec.AWS.Region, DBSecret: s.r.cfg.DBSecret.Name, DBSecretARN: s.v.cred.ARN(),
		AppRole: s.r.cfg.AppRole, RotationS: s.r.now().cfg.Rotation.Seconds(), Strategy: s.r.now().spec.Secrets.DB.Strategy,
		AuditLog: s.v.secrets.AuditPath(), Metadata: s.v.imds.List(),
	}
	delete(info.Metadata, "release")
	info.AtRest = map[string]string{filepath.Join("ca", ca.KeyFile): "region CA private key (the local ACM key)"}
	for _, k := range secrets.KeyFiles {
		rel, err := filepath.Rel(s.r.opts.StateDir, filepath.Join(s.r.cfg.Secrets.Dir, k.Name))
		if err == nil {
			info.AtRest[rel] = k.What
			info.AtRest[rel+".*"] = k.What + ", a temp copy of a write in progress"
		}
	}
	for _, n := range s.r.cfg.DB.Nodes {
		for _, k := range pgha.TLSKeyFiles(n) {
			if rel, err := filepath.Rel(s.r.opts.StateDir, k); err == nil && !strings.HasPrefix(rel, "..") {
				info.AtRest[rel] = "database node TLS key (the postgres user's, 0600; replication logs in with it)"
				info.AtRest[rel+".tmp"] = "database node TLS key, a write in progress"
			}
		}
	}
	if s.r.opts.SpecFile != "" {
		info.SpecFile, _ = filepath.Abs(s.r.opts.SpecFile)
	}
	return info
}

func (s secretsTier) IssueOperator(ttl time.Duration) (iam.Credentials, error) {
	return s.v.issuer.IssueOperator(ttl)
}

func (s secretsTier) TestLogin(ctx context.Context, in secrets.GetSecretValueInput) (string, string, bool, string, error) {
	return s.v.cred.TestLogin(ctx, in)
}

// instanceSignals are the signals of the instance-* fault scenarios.
var instanceSignals = map[string]syscall.Signal{
	failpoint.InstanceKill: syscall.SIGKILL, failpoint.InstanceFreeze: syscall.SIGSTOP,
	failpoint.InstanceThaw: syscall.SIGCONT, failpoint.InstanceTerm: syscall.SIGTERM,
}

// Inject injects one external scenario of the failpoint catalogue into the
// tier it names.
func (a *regionAPI) Inject(ctx context.Context, in api.FaultRequest) (api.FaultResult, error) {
	r, v := a.r, a.r.view()
	sc, ok := failpoint.Lookup(in.Scenario)
	if !ok || sc.Kind != failpoint.External {
		return api.FaultResult{}, fmt.Errorf("fault %q: unknown; the scenarios are %s", in.Scenario, strings.Join(failpoint.Names(failpoint.External), ", "))
	}
	if sc.Tier == "zones" {
		return r.zoneFault(ctx, in)
	}
	if sig, ok := instanceSignals[in.Scenario]; ok {
		if v.fleet == nil {
			return api.FaultResult{}, &api.Error{Message: fmt.Sprintf("instance %s: the fleet is not running", in.Target), Status: http.StatusServiceUnavailable}
		}
		if err := v.fleet.Signal(in.Target, sig); err != nil {
			return api.FaultResult{}, &api.Error{Message: err.Error(), Status: http.StatusNotFound}
		}
		r.events.Add("drill", "fault", in.Target, fmt.Sprintf("%s: sent %s to %s", in.Scenario, sig, in.Target))
		return api.FaultResult{Scenario: in.Scenario, Target: in.Target, At: time.Now()}, nil
	}
	if v.db == nil {
		return api.FaultResult{}, &api.Error{Message: "the database is not running (yet): `haven status` shows the region's phase", Status: http.StatusServiceUnavailable}
	}
	res, err := v.db.Inject(ctx, in.Scenario, in.Target, time.Duration(in.DelayMS)*time.Millisecond)
	out := api.FaultResult{Scenario: in.Scenario, Target: res.Node, Zone: res.Zone, PID: res.PID, At: res.At, Epoch: int64(res.Epoch),
		RestartedAt: res.RestartedAt, RestartEpoch: int64(res.RestartEpoch)}
	if err != nil {
		return out, err
	}
	r.events.Add("drill", "fault", res.Node, fmt.Sprintf("%s on %s (zone %s, pid %d)", in.Scenario, res.Node, res.Zone, res.PID))
	return out, nil
}

func (a *regionAPI) SetCapacity(c api.CapacityRequest) error {
	f := a.r.view().fleet
	if f == nil {
		return fmt.Errorf("set capacity: the fleet is not running")
	}
	cur := f.Capacity()
	if c.Min != nil {
		cur.Min = *c.Min
	}
	if c.Desired != nil {
		cur.Desired = *c.Desired
	}
	if c.Max != nil {
		cur.Max = *c.Max
	}
	return f.SetCapacity(cur.Min, cur.Desired, cur.Max)
}

// RunOnInstance runs a command in an instance's process group, with the
// instance's own metadata endpoint and secrets settings.
func (a *regionAPI) RunOnInstance(ctx context.Context, id string, in api.RunRequest) (api.RunResult, error) {
	r, v := a.r, a.r.view()
	if v.fleet == nil || v.imds == nil {
		return api.RunResult{}, fmt.Errorf("instance %s: the fleet is not running", id)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "COURSES_DB_SECRET_ID=" + r.cfg.DBSecret.Name,
		"PGUSER=" + r.cfg.AppEnv["PGUSER"], "AWS_REGION=" + r.spec.AWS.Region, "AWS_DEFAULT_REGION=" + r.spec.AWS.Region}
	if v.vpc != nil {
		// Inside the instance's namespace: the metadata endpoint is at
		// 169.254.169.254, where the SDKs and the aws CLI look by
		// default; Secrets Manager is the interface endpoint of its zone.
		for _, in := range v.fleet.Instances() {
			if in.ID == id {
				env = append(env, "AWS_ENDPOINT_URL_SECRETS_MANAGER="+r.vpceURL(in.Zone), "AWS_ENDPOINT_URL_S3="+r.s3URL(in.Zone))
			}
		}
	} else {
		env = append(env, "AWS_ENDPOINT_URL_SECRETS_MANAGER="+v.secrets.Endpoint(), "AWS_ENDPOINT_URL_S3="+r.s3URL(""))
		if md := v.imds.Endpoint(id); md != "" {
			env = append(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+md)
		}
	}
	for k, val := range in.Env {
		env = append(env, k+"="+val)
	}
	res, err := v.fleet.Run(ctx, id, in.Argv, env, time.Duration(in.TimeoutMS)*time.Millisecond)
	if err != nil {
		return api.RunResult{}, err
	}
	r.events.Add("secrets", "run", id, "ran "+in.Argv[0])
	return api.RunResult{ExitCode: res.ExitCode, Stdout: res.Stdout, Stderr: res.Stderr}, nil
}

// Status is a snapshot of the whole region, assembled from each tier's
// published snapshot: it never waits on a tier.
func (r *Region) Status() api.Status {
	s := r.now().spec
	v := r.view()
	r.mu.Lock()
	st := api.Status{
		Region: s.Name, Phase: r.phase, Error: r.err, StartedAt: r.started, ReadyAt: r.readyAt, StateDir: r.opts.StateDir, SpecSHA256: r.runningSHA256(),
		PID: os.Getpid(), Version: version.String(), Progress: append([]string(nil), r.progress...), Warnings: append([]string(nil), r.warnings...),
		Endpoints: api.Endpoints{CACert: r.caPath(), Database: s.Database.Endpoint},
		Instances: []api.Instance{},
	}
	r.mu.Unlock()
	if ss := r.specState.Load(); ss != nil {
		st.Spec = *ss
	}
	hc := s.App.HealthCheck
	st.LB = api.LB{
		Algorithm: s.LoadBalancer.Algorithm, HealthCheckPath: hc.Path,
		IntervalMS: hc.Interval.D().Milliseconds(), TimeoutMS: hc.Timeout.D().Milliseconds(),
		HealthyThreshold: hc.Healthy, UnhealthyThreshold: hc.Unhealthy,
	}
	impaired := map[string]bool{}
	if v.fleet != nil {
		for _, z := range v.fleet.ImpairedZones() {
			impaired[z] = true
		}
	}
	for _, z := range v.zones {
		az := api.Zone{Name: z.Name, AZ: z.AZ, CIDR: z.CIDR.String(), Fault: r.zoneFaultOf(z.Name), Impaired: impaired[z.Name]}
		if z.Plan() != nil {
			az.Subnets = map[string]string{}
			for _, t := range zone.Tiers {
				az.Subnets[string(t)] = z.Subnet(t).String()
			}
		}
		st.Zones = append(st.Zones, az)
	}
	st.Network = api.Network{Mode: "loopback", Why: r.netWarning}
	if n := r.cfg.Network; n.VPC {
		st.Network = api.Network{Mode: "vpc", Range: n.Range.String(), Prefix: vpc.Prefix(r.opts.StateDir),
			HostAddr: n.Host.String(), DBEndpoint: n.DBEndpoint.String()}
		for _, g := range n.Groups {
			st.Network.SecurityGroups = append(st.Network.SecurityGroups, g.Name)
		}
	}
	st.Fleet = api.Fleet{Min: s.Fleet.Min, Desired: s.Fleet.Desired, Max: s.Fleet.Max, HealthCheckType: s.Fleet.HealthCheckType}
	if v.secUp {
		st.Endpoints.Secrets = v.secrets.Endpoint()
	}
	inflight := map[string]int64{}
	targets := map[string]string{}
	if v.lb != nil {
		st.Endpoints.HTTPS = v.lb.HTTPSURL()
		if a := v.lb.HTTPAddr(); a != "" {
			st.Endpoints.HTTP = "http://" + a
		}
		ps := v.lb.State()
		ls := ps.Stats
		st.LB.Requests, st.LB.Retries, st.LB.Ejections, st.LB.Errors5xx = int64(ls.Requests), int64(ls.Retries), int64(ls.Ejections), int64(ls.Responses5xx)
		st.LB.PID, st.LB.Version = v.lb.PID(), ps.Version
		for _, t := range v.lb.Targets() {
			inflight[t.ID] = t.InFlight
			targets[t.ID] = string(t.State)
		}
	}
	var readings scaling.Readings
	if v.scaling != nil {
		readings = v.scaling.Readings()
		st.Fleet.AvgCPU = finite(readings.AvgCPU)
		st.Fleet.Scaling = "on"
		if snap := v.scaling.Snapshot(); snap.Suspended {
			st.Fleet.Scaling = "suspended"
		} else if len(snap.Policies) == 0 && len(snap.Scheduled) == 0 {
			st.Fleet.Scaling = "off"
		}
	}
	if v.fleet != nil {
		c := v.fleet.Capacity()
		st.Fleet.Min, st.Fleet.Desired, st.Fleet.Max = c.Min, c.Desired, c.Max
		for _, in := range v.fleet.Instances() {
			ai := api.Instance{
				ID: in.ID, Zone: in.Zone, AZ: in.AZ, Address: in.Address, Subnet: in.Subnet, PID: in.PID,
				State: string(in.State), Health: string(in.Health), InFlight: int(inflight[in.ID]), Target: targets[in.ID], LaunchedAt: in.LaunchedAt,
				InServiceSince: in.InServiceSince,
			}
			if rd, ok := readings.Instances[in.ID]; ok {
				ai.CPU, ai.RPS, ai.Warming = finite(rd.CPU), finite(rd.RPS), rd.Warming
			}
			st.Instances = append(st.Instances, ai)
			switch in.State {
			case fleet.StateInService:
				st.Fleet.InService++
				if ai.Health == "healthy" {
					st.Fleet.Healthy++
				}
			case fleet.StatePending:
				st.Fleet.Pending++
			}
		}
	}
	r.storageStatus(&st, v)
	st.Identity = r.identityStatus(v)
	if v.db != nil {
		ds := v.db.Status()
		d := &api.Database{Endpoint: s.Database.Endpoint, Epoch: int64(ds.State.Epoch), Primary: ds.State.Primary}
		for _, n := range ds.Nodes {
			d.Nodes = append(d.Nodes, api.DBNode{Name: n.Name, Zone: n.Zone, Address: n.Addr, Role: n.Role, State: n.Health, PID: n.Pid})
		}
		st.Database = d
	}
	st.Adoption = r.adoption.Load()
	return st
}

// dbEvent records a failover controller event, with its facts as attrs.
func (r *Region) dbEvent(e pgha.Event) {
	attrs := map[string]any{"epoch": e.Epoch}
	if e.OldPrimary != "" {
		attrs["old_primary"], attrs["new_primary"] = e.OldPrimary, e.NewPrimary
	}
	if e.RTO > 0 {
		attrs["rto_ms"] = e.RTO.Milliseconds()
	}
	r.events.Emit(api.Event{Component: "db", Kind: e.Kind, Subject: e.Node, Message: e.Message, Attrs: attrs})
}

// backupEvent records a backup tier event.
func (r *Region) backupEvent(e backup.Event) {
	r.events.Emit(api.Event{Component: "backup", Kind: e.Kind, Subject: e.Label, Message: e.Message, Attrs: e.Attrs})
}
