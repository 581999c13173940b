package region

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/haven-platform/haven/internal/backup"
	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/dbsecret"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/idp"
	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/pgha/endpoint"
	"github.com/haven-platform/haven/internal/release"
	"github.com/haven-platform/haven/internal/sandbox"
	"github.com/haven-platform/haven/internal/scaling"
	"github.com/haven-platform/haven/internal/secgroup"
	"github.com/haven-platform/haven/internal/secrets"
	"github.com/haven-platform/haven/internal/spec"
	"github.com/haven-platform/haven/internal/zone"
)

// Layout is where a region's files and programs are on this machine: what
// configs needs beyond the spec, found once at start.
type Layout struct {
	// StateDir holds everything the region writes (absolute).
	StateDir string
	// PGRoot holds what the postgres OS user must reach (pgha.PrepareRoot).
	PGRoot string
	// AppCommand and ReleaseCommand are the spec's commands with the
	// program resolved to an absolute path (ReleaseCommand nil: no release).
	AppCommand, ReleaseCommand []string
	// Sandbox is how the app's processes (instances, the release task)
	// drop privileges: the region's unprivileged user. Nil when haven is
	// not root: they run as haven's user.
	Sandbox *sandbox.Profile
	// PublicDir holds what the instances may read of the region's files:
	// the region CA's certificate, with which they trust the identity
	// provider. As root it is outside the state dir, which the instances
	// cannot read (/run/haven/<vpc.Prefix>); otherwise the CA's own
	// directory, since they run as haven's user.
	PublicDir string
	// VPC is the region's range of 198.18.0.0/15 (its lease, a /19) when
	// the region builds a VPC of network namespaces; the zero Prefix: no
	// VPC (no root or no namespaces), loopback ranges as the fallback.
	VPC netip.Prefix
}

// Configs is every component's configuration, before the region attaches
// what only exists at run time (loggers, the endpoint, certificates,
// callbacks between tiers).
type Configs struct {
	Zones zone.Config
	// Ops is the operations tier: metrics, alarms, console, reports.
	Ops OpsConfig
	// Network is the region's VPC (Network.VPC false: loopback ranges, the
	// fallback, where security groups are not enforced).
	Network  NetworkConfig
	Cgroup   string // the region's cgroup root
	Endpoint endpoint.NATConfig
	DB       pgha.Config
	// Backup is the backup tier; RestoresDir holds restored servers.
	Backup      backup.Config
	RestoresDir string
	Secrets     secrets.Config
	// AppRole is the instances' IAM role; DBSecret the database credential.
	AppRole  string
	DBSecret dbsecret.Config
	// Rotation is the database secret's rotation period (0: off),
	// checked every RotationCheck.
	Rotation, RotationCheck time.Duration
	LB                      lb.Config
	// LBNames and LBIPs are what the load balancer's certificate names.
	LBNames []string
	LBIPs   []net.IP
	// AccessLog is the load balancer's access log file.
	AccessLog string
	Fleet     fleet.Config
	// Release is the one-off task run before the fleet (nil: none), its
	// output in ReleaseLog.
	Release    []string
	ReleaseLog string
	// AppEnv is the non-secret environment of every app process.
	AppEnv map[string]string
	// Storage is the object store and the edge.
	Storage StorageConfigs
	// Scaling is fleet.scaling as the scaler's configuration, its metric
	// period (AWS's 60 s) divided by time_scale.
	Scaling scaling.Config
	// ScalingWarmup is the instance warmup: the largest of the policies'
	// warmups (AWS recommends one for the group), divided by time_scale.
	ScalingWarmup time.Duration
	// TimeScale is the spec's time_scale, for messages.
	TimeScale float64
	// Releases is the instance refresh policy of `haven deploy`, and
	// ReleasesDir where versions, artifacts and rollouts are kept.
	Releases    release.Policy
	ReleasesDir string
	// Identity is the identity provider; nil when identity.enabled is false.
	Identity *IdentityConfig
	// Records are the tiers' records for a later daemon to adopt the
	// running region from.
	Records Records
}

// Records are where the tiers keep what a daemon that starts on a state
// dir an earlier daemon left running (a crash, an upgrade) needs to adopt
// it instead of relaunching it: each process's identity, the VPC's nodes,
// the endpoint's epoch. The database's records sit next to its state file
// (pgha), the secrets' sealed credentials in the secrets directory.
type Records struct {
	// VPC is the VPC's nodes, endpoints and faults (vpc.Config.StateFile).
	VPC string
	// Fleet is the fleet's capacity and instances (fleet.Config.StateFile).
	Fleet string
	// Endpoint is the routed endpoint's epoch and primary
	// (endpoint.RoutedConfig.StateFile).
	Endpoint string
	// EndpointDir holds the endpoint's proxy process (control socket,
	// record, log).
	EndpointDir string
	// LBDir holds the load balancer processes (control sockets, records,
	// log).
	LBDir string
}

// IdentityConfig is the identity tier: the OpenID provider's settings
// (idp.Config without what exists only at run time: the certificate, the
// key store, the client secret's hash) and the app's client registration.
type IdentityConfig struct {
	// Listen is the provider's listen address; Issuer its issuer URL,
	// https://<Listen>. In a VPC, Listen is the host's address on its link
	// into the VPC (the instances reach it there, and so does the browser).
	Listen, Issuer string
	// CertIPs are the addresses its certificate names.
	CertIPs []net.IP
	// Name is the provider's name on its pages.
	Name string
	// ClientID is the app's client id; ClientSecret the name of its client
	// secret in the secrets store (made by the region on first start).
	ClientID, ClientSecret string
	// KeysSecret is the name of the secret holding the signing keys.
	KeysSecret string
	// PublicURL is the site's address as browsers reach it (the load
	// balancer); RedirectURIs and PostLogoutRedirectURIs derive from it.
	PublicURL                            string
	RedirectURIs, PostLogoutRedirectURIs []string
	// StaffSSOOnly refuses staff password logins in the app.
	StaffSSOOnly bool
	// KeyRotation is the signing key's rotation period (0: by hand only);
	// KeyRetention how long a replaced key stays published.
	KeyRotation, KeyRetention time.Duration
	// IDTokenLifetime is the ID tokens' lifetime.
	IDTokenLifetime time.Duration
	// Users is the directory: the spec's named and generated accounts.
	Users []idp.User
	// CAFile is the region CA's certificate as the instances read it
	// (SSL_CERT_FILE); PublishCA says the region writes it there (as root,
	// outside the state dir).
	CAFile    string
	PublishCA bool
}

// awsMetricPeriod is the period of the metrics AWS's target tracking
// alarms evaluate (one-minute datapoints).
const awsMetricPeriod = 60 * time.Second

// scalingConfig maps fleet.scaling onto the scaler's configuration and the
// group's warmup, compressing the period and the warmup by time_scale.
// Policies are named after their metric and target ("cpu-50").
func scalingConfig(s spec.Spec) (scaling.Config, time.Duration) {
	ts := s.TimeScale
	if !(ts >= 1) {
		ts = 1
	}
	scaled := func(d time.Duration) time.Duration { return time.Duration(float64(d) / ts) }
	c := scaling.Config{Period: scaled(awsMetricPeriod)}
	var warmup time.Duration
	names := map[string]int{}
	for _, p := range s.Fleet.Scaling {
		switch {
		case p.TargetTracking != "":
			m := scaling.CPUUtilization
			if p.TargetTracking == "request_count" {
				m = scaling.RequestCountPerTarget
			}
			name := p.TargetTracking + "-" + strconv.FormatFloat(p.Target, 'f', -1, 64)
			if names[name]++; names[name] > 1 {
				name += "-" + strconv.Itoa(names[name])
			}
			c.Policies = append(c.Policies, scaling.Policy{Name: name, Metric: m, Target: p.Target})
			warmup = max(warmup, p.Warmup.D())
		case p.Scheduled != "":
			c.Scheduled = append(c.Scheduled, scaling.ScheduledAction{
				Name: p.Scheduled, Schedule: p.Cron, Start: p.Start.T(), End: p.End.T(),
				Min: p.Min, Max: p.Max, Desired: p.Desired,
			})
		}
	}
	return c, scaled(warmup)
}

// NetworkConfig is the region's VPC: its namespaces, security groups and
// endpoints (package vpc), when it has one.
type NetworkConfig struct {
	// VPC is true when the region builds a VPC (Layout.VPC is set).
	VPC bool
	// Range is the VPC's range, the lease's /19.
	Range netip.Prefix
	// Groups are the security groups nftables enforces: the spec's, with
	// the local-only rules the local region needs (secgroup.WithLocal).
	Groups []secgroup.Group
	// DBEndpoint is the database endpoint's virtual address inside the VPC
	// (the RDS endpoint); the host reaches it on database.endpoint.
	DBEndpoint netip.AddrPort
	// Host is the host's address on its link into the VPC.
	Host netip.Addr
}

// configs derives every component's configuration from the spec and the
// layout. It is pure: no file, process or network is touched.
func configs(s spec.Spec, l Layout) (Configs, error) {
	ep, err := netip.ParseAddrPort(s.Database.Endpoint)
	if err != nil {
		return Configs{}, fmt.Errorf("database.endpoint: %w", err)
	}
	c := Configs{
		Zones:    zone.Config{Region: s.AWS.Region, Names: s.Zones, VPC: l.VPC},
		Cgroup:   cgroup.RegionRoot(s.Name, l.StateDir),
		Endpoint: endpoint.NATConfig{Listen: s.Database.Endpoint, Table: endpoint.NATTableName(l.StateDir), StateFile: filepath.Join(l.StateDir, "endpoint.json")},
	}

	// Database: one node per zone (the first zone alone without Multi-AZ).
	// In a VPC each has the first address of its zone's db subnet and
	// PostgreSQL's port, as on RDS; on loopback the first address of its
	// zone, one port above the endpoint's.
	zones, err := zone.New(c.Zones)
	if err != nil {
		return Configs{}, err
	}
	dbPort := int(ep.Port()) + 1
	if l.VPC.IsValid() {
		plan := zones[0].Plan()
		vip, err := plan.EndpointAddr(0)
		if err != nil {
			return Configs{}, err
		}
		groups, err := securityGroups(s)
		if err != nil {
			return Configs{}, err
		}
		c.Network = NetworkConfig{VPC: true, Range: plan.Region(), Groups: groups,
			DBEndpoint: netip.AddrPortFrom(vip, secgroup.PostgresPort), Host: plan.HostLink().Addr()}
		dbPort = secgroup.PostgresPort
	}
	if !s.Database.MultiAZ {
		zones = zones[:1]
	}
	var nodes []pgha.Node
	for _, z := range zones {
		addr, err := z.AllocateIn(zone.DB, "db_"+z.Name)
		if err != nil {
			return Configs{}, err
		}
		base := filepath.Join(l.PGRoot, "db")
		nodes = append(nodes, pgha.Node{
			Name: "db_" + z.Name, Zone: z.Name, ListenAddr: addr, Port: dbPort,
			DataDir:   filepath.Join(base, "db_"+z.Name, "data"),
			SocketDir: filepath.Join(base, "db_"+z.Name, "run"),
			LogFile:   filepath.Join(l.StateDir, "logs", "db_"+z.Name+".log"),
		})
	}
	dur := pgha.DurabilityPreferred
	if s.Database.Durability == "required" {
		dur = pgha.DurabilityRequired
	}
	// Who may log in as the app: the zones' app ranges, the endpoint's own
	// address (restored servers run on the host's loopback), and in a VPC
	// the host's link (the endpoint's host path) and the database subnets
	// (a client inside a database node's namespace, as the zone-loss
	// drill's split-brain writer is).
	var nets []netip.Prefix
	all, _ := zone.New(c.Zones)
	for _, z := range all {
		nets = append(nets, z.CIDR)
	}
	if c.Network.VPC {
		for _, z := range all {
			nets = append(nets, z.Subnet(zone.DB))
		}
		nets = append(nets, netip.PrefixFrom(c.Network.Host, 32))
	}
	nets = append(nets, netip.PrefixFrom(ep.Addr(), ep.Addr().BitLen()))
	c.DB = pgha.Config{
		Nodes: nodes, StateFile: filepath.Join(l.PGRoot, "db", "controller.json"),
		Durability: dur, AppDatabase: s.Database.Name, AppNetworks: nets,
		AppAuth: pgha.AuthSCRAM, // the app's roles log in with SCRAM passwords only
	}
	c.Backup = backup.Config{
		Dir: filepath.Join(l.PGRoot, "backup"), Stanza: s.Name, Nodes: nodes,
		RetentionDays: int(s.Database.BackupRetention.D() / (24 * time.Hour)),
		Schedule:      backup.Schedule{Full: s.Database.BackupSchedule},
	}
	c.RestoresDir = filepath.Join(l.PGRoot, "restores")

	// Identity and secrets. The database secret holds the endpoint as the
	// apps reach it: in a VPC its address there (the daemon reaches it
	// too, through the host's link).
	dbEndpointForApps := s.Database.Endpoint
	if c.Network.VPC {
		dbEndpointForApps = c.Network.DBEndpoint.String()
	}
	c.Secrets = secrets.Config{Dir: filepath.Join(l.StateDir, "secrets"), Region: s.AWS.Region, Addr: s.Secrets.Listen}
	c.AppRole = s.Name + "-app"
	c.DBSecret = dbsecret.Config{
		Name: s.Name + "/db", Owner: s.Database.User, Database: s.Database.Name, Endpoint: dbEndpointForApps,
		Strategy:    s.Secrets.DB.Strategy,
		Description: "PostgreSQL login of the " + s.Name + " app (alternating users, rotated by haven)",
	}
	if every := s.Secrets.DB.Rotation.D(); every > 0 {
		c.Rotation, c.RotationCheck = every, min(max(every/4, 5*time.Second), time.Minute)
	}

	// The app's environment: where the database and the secret are, never
	// a credential. In a VPC the database is its endpoint's address there.
	dbHost, dbPortEnv := ep.Addr().String(), strconv.Itoa(int(ep.Port()))
	if c.Network.VPC {
		dbHost, dbPortEnv = c.Network.DBEndpoint.Addr().String(), strconv.Itoa(int(c.Network.DBEndpoint.Port()))
	}
	c.AppEnv = map[string]string{
		"PGHOST": dbHost, "PGPORT": dbPortEnv,
		"PGUSER":     s.Database.User + "_a", // the secret's username wins
		"PGDATABASE": s.Database.Name, "PGSSLMODE": "disable",
		"PGCONNECT_TIMEOUT": "3", "AWS_REGION": s.AWS.Region,
		"COURSES_DB_SECRET_ID": c.DBSecret.Name,
	}
	if c.Storage, err = storageConfigs(s, l); err != nil {
		return Configs{}, err
	}
	for k, v := range appS3Env(s, c.Storage) {
		c.AppEnv[k] = v
	}
	if c.Storage.SigningKeySecret != "" {
		c.AppEnv["CLOUDFRONT_SIGNING_KEY_SECRET_ID"] = c.Storage.SigningKeySecret
	}
	if s.Identity.Enabled {
		c.Identity = identityConfig(s, l, c.Network)
		id := c.Identity
		c.AppEnv["COURSES_OIDC_ISSUER"] = id.Issuer
		c.AppEnv["COURSES_OIDC_CLIENT_ID"] = id.ClientID
		c.AppEnv["COURSES_OIDC_CLIENT_SECRET_ID"] = id.ClientSecret
		c.AppEnv["COURSES_PUBLIC_URL"] = id.PublicURL
		c.AppEnv["SSL_CERT_FILE"] = id.CAFile
		if id.StaffSSOOnly {
			c.AppEnv["COURSES_SSO_ONLY_STAFF"] = "true"
		}
	}
	for k, v := range s.App.Env {
		c.AppEnv[k] = v
	}

	// Load balancer.
	host, _, err := net.SplitHostPort(s.LoadBalancer.HTTPS)
	if err != nil {
		return Configs{}, fmt.Errorf("load_balancer.https: %w", err)
	}
	c.LBNames = []string{"localhost", s.Name + ".haven.local"}
	c.LBIPs = []net.IP{net.ParseIP("127.0.0.1")}
	if ip := net.ParseIP(host); ip != nil && !ip.Equal(c.LBIPs[0]) {
		c.LBIPs = append(c.LBIPs, ip)
	}
	hc := s.App.HealthCheck
	c.LB = lb.Config{
		Name: s.Name, HTTPSAddr: s.LoadBalancer.HTTPS, HTTPAddr: s.LoadBalancer.HTTP,
		HealthCheck: lb.HealthCheck{
			Path: hc.Path, Interval: hc.Interval.D(), Timeout: hc.Timeout.D(),
			HealthyThreshold: hc.Healthy, UnhealthyThreshold: hc.Unhealthy, Matcher: hc.Matcher,
		},
		Algorithm: s.LoadBalancer.Algorithm, DeregistrationDelay: s.LoadBalancer.DeregistrationDelay.D(),
		SlowStart: s.LoadBalancer.SlowStart.D(), IdleTimeout: s.LoadBalancer.IdleTimeout.D(),
	}
	c.AccessLog = filepath.Join(l.StateDir, "logs", "access.log")
	c.Records = Records{
		VPC: filepath.Join(l.StateDir, "vpc.json"), Fleet: filepath.Join(l.StateDir, "fleet.json"),
		Endpoint: filepath.Join(l.StateDir, "endpoint.json"), EndpointDir: filepath.Join(l.StateDir, "endpoint"),
		LBDir: filepath.Join(l.StateDir, "lb"),
	}

	// Fleet and the release task.
	c.Fleet = fleet.Config{
		Name: s.Name,
		Template: fleet.LaunchTemplate{
			Command: l.AppCommand, Env: c.AppEnv, Port: s.App.Port,
			CPU: s.App.Instance.CPU, MemoryBytes: int64(s.App.Instance.Memory),
		},
		Min: s.Fleet.Min, Max: s.Fleet.Max, Desired: s.Fleet.Desired,
		HealthCheckType: s.Fleet.HealthCheckType, GracePeriod: s.Fleet.GracePeriod.D(),
		StopTimeout: 30 * time.Second,
		LogDir:      filepath.Join(l.StateDir, "logs", "instances"),
		StateFile:   filepath.Join(l.StateDir, "fleet.json"),
		Sandbox:     l.Sandbox,
	}
	ir := s.Fleet.InstanceRefresh
	c.Releases = release.Policy{
		MinHealthy: ir.MinHealthyPercentage, MaxHealthy: ir.MaxHealthyPercentage, Checkpoints: ir.Checkpoints,
		Bake: ir.Bake.D(), Warmup: ir.InstanceWarmup.D(), HealthTimeout: ir.HealthTimeout.D(),
		Max5xxIncrease: ir.Max5xxIncrease, MaxP99Increase: ir.MaxP99Increase.D(), RollbackOn: ir.RollbackOn,
		NoAutoRollback: !ir.AutoRollback,
	}
	c.ReleasesDir = filepath.Join(l.StateDir, "releases")
	if len(s.App.Release) > 0 {
		c.Release, c.ReleaseLog = l.ReleaseCommand, filepath.Join(l.StateDir, "logs", "release.log")
	}
	c.Scaling, c.ScalingWarmup = scalingConfig(s)
	c.TimeScale = s.TimeScale
	if c.Ops, err = opsConfig(s, l); err != nil {
		return Configs{}, err
	}
	return c, nil
}

// identityConfig derives the identity tier from the spec: the provider on
// identity.listen (in a VPC, on the host's link address at that port), the
// app's client with the load balancer's URL as its public URL.
func identityConfig(s spec.Spec, l Layout, n NetworkConfig) *IdentityConfig {
	listen := netip.MustParseAddrPort(s.Identity.Listen) // validated by the spec
	if n.VPC {
		listen = netip.AddrPortFrom(n.Host, listen.Port())
	}
	public := "https://" + s.LoadBalancer.HTTPS
	id := &IdentityConfig{
		Listen: listen.String(), Issuer: "https://" + listen.String(), CertIPs: []net.IP{net.IP(listen.Addr().AsSlice())},
		Name: s.Identity.Name, ClientID: s.Identity.ClientID,
		ClientSecret: s.Name + "/oidc-client", KeysSecret: s.Name + "/idp-signing-keys",
		PublicURL:              public,
		RedirectURIs:           []string{public + "/login/sso/callback"},
		PostLogoutRedirectURIs: []string{public + "/login?msg=sso-logged-out"},
		StaffSSOOnly:           s.Identity.StaffSSOOnly,
		KeyRotation:            s.Identity.KeyRotation.D(), KeyRetention: s.Identity.KeyRetention.D(),
		IDTokenLifetime: s.Identity.IDTokenLifetime.D(),
		CAFile:          filepath.Join(l.PublicDir, ca.CertFile), PublishCA: l.Sandbox != nil,
	}
	for _, a := range s.Identity.Accounts() {
		id.Users = append(id.Users, idp.User{Username: a.Username, Name: a.Name, Groups: a.Groups, PasswordHash: a.PasswordHash})
	}
	return id
}

// securityGroups are the groups the region enforces: the spec's (the
// seed's chain by default) and the local-only rules the local region needs
// (secgroup.WithLocal: replication between database nodes, the host
// through the database endpoint).
func securityGroups(s spec.Spec) ([]secgroup.Group, error) {
	groups := secgroup.Seed(uint16(s.App.Port))
	for _, sg := range s.SecurityGroups {
		for i := range groups {
			if groups[i].Name != sg.Name {
				continue
			}
			for _, r := range sg.Ingress {
				groups[i].Ingress = append(groups[i].Ingress, specRule(r))
			}
			for _, r := range sg.Egress {
				groups[i].Egress = append(groups[i].Egress, specRule(r))
			}
		}
	}
	if s.Identity.Enabled {
		// The identity provider is on the host, outside the zones, as the
		// university's is outside the VPC on AWS (reached through its NAT).
		port := netip.MustParseAddrPort(s.Identity.Listen).Port()
		for i := range groups {
			if groups[i].Name == secgroup.App {
				groups[i].Egress = append(groups[i].Egress, secgroup.Rule{Description: "The identity provider on the host", FromPort: port, Host: true})
			}
		}
	}
	groups = secgroup.WithLocal(groups)
	if err := secgroup.Validate(groups, []string{secgroup.DBEndpoint}); err != nil {
		return nil, fmt.Errorf("security_groups: %w", err)
	}
	return groups, nil
}

// specRule is a spec's security group rule in secgroup's model.
func specRule(r spec.SecurityGroupRule) secgroup.Rule {
	out := secgroup.Rule{Description: r.Description, Protocol: secgroup.Protocol(r.Protocol), FromPort: uint16(r.Port), ToPort: uint16(r.ToPort), Group: r.Group}
	if r.CIDR != "" {
		out.CIDR, _ = netip.ParsePrefix(r.CIDR) // validated by the spec
	}
	return out
}
