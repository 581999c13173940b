package region

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/haven-platform/haven/internal/backup"
	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/dbsecret"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/pgha/endpoint"
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
}

// Configs is every component's configuration, before the region attaches
// what only exists at run time (loggers, the endpoint, certificates,
// callbacks between tiers).
type Configs struct {
	Zones    zone.Config
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
}

// configs derives every component's configuration from the spec and the
// layout. It is pure: no file, process or network is touched.
func configs(s spec.Spec, l Layout) (Configs, error) {
	ep, err := netip.ParseAddrPort(s.Database.Endpoint)
	if err != nil {
		return Configs{}, fmt.Errorf("database.endpoint: %w", err)
	}
	c := Configs{
		Zones:    zone.Config{Region: s.AWS.Region, Names: s.Zones},
		Cgroup:   cgroup.RegionRoot(s.Name, l.StateDir),
		Endpoint: endpoint.NATConfig{Listen: s.Database.Endpoint, Table: endpoint.NATTableName(l.StateDir)},
	}

	// Database: one node per zone (the first zone alone without Multi-AZ),
	// each on the first address of its zone, one port above the endpoint's.
	zones, err := zone.New(c.Zones)
	if err != nil {
		return Configs{}, err
	}
	if !s.Database.MultiAZ {
		zones = zones[:1]
	}
	var nodes []pgha.Node
	for _, z := range zones {
		addr, err := z.Allocate("db-" + z.Name)
		if err != nil {
			return Configs{}, err
		}
		base := filepath.Join(l.PGRoot, "db")
		nodes = append(nodes, pgha.Node{
			Name: "db_" + z.Name, Zone: z.Name, ListenAddr: addr, Port: int(ep.Port()) + 1,
			DataDir:   filepath.Join(base, "db_"+z.Name, "data"),
			SocketDir: filepath.Join(base, "db_"+z.Name, "run"),
			LogFile:   filepath.Join(l.StateDir, "logs", "db_"+z.Name+".log"),
		})
	}
	dur := pgha.DurabilityPreferred
	if s.Database.Durability == "required" {
		dur = pgha.DurabilityRequired
	}
	var nets []netip.Prefix
	all, _ := zone.New(c.Zones)
	for _, z := range all {
		nets = append(nets, z.CIDR)
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

	// Identity and secrets.
	c.Secrets = secrets.Config{Dir: filepath.Join(l.StateDir, "secrets"), Region: s.AWS.Region, Addr: s.Secrets.Listen}
	c.AppRole = s.Name + "-app"
	c.DBSecret = dbsecret.Config{
		Name: s.Name + "/db", Owner: s.Database.User, Database: s.Database.Name, Endpoint: s.Database.Endpoint,
		Strategy:    s.Secrets.DB.Strategy,
		Description: "PostgreSQL login of the " + s.Name + " app (alternating users, rotated by haven)",
	}
	if every := s.Secrets.DB.Rotation.D(); every > 0 {
		c.Rotation, c.RotationCheck = every, min(max(every/4, 5*time.Second), time.Minute)
	}

	// The app's environment: where the database and the secret are, never
	// a credential.
	c.AppEnv = map[string]string{
		"PGHOST": ep.Addr().String(), "PGPORT": strconv.Itoa(int(ep.Port())),
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
	}
	if len(s.App.Release) > 0 {
		c.Release, c.ReleaseLog = l.ReleaseCommand, filepath.Join(l.StateDir, "logs", "release.log")
	}
	return c, nil
}
