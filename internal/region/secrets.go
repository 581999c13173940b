package region

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/imds"
	"github.com/haven-platform/haven/internal/peercred"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/secrets"
)

// secretsExtras holds the identity and secrets tier. secrets.go owns it.
type secretsExtras struct {
	log      *slog.Logger
	issuer   *iam.Issuer
	policies *iam.Policies
	server   *secrets.Server
	sched    *secrets.Scheduler
	started  bool

	dbSecret    string // name
	dbSecretARN string
	appRole     string

	mu      sync.Mutex
	imds    map[string]*metadataServer // by instance id
	release *metadataServer
}

// metadataServer is one instance's IMDS endpoint and when it was started.
type metadataServer struct {
	srv     *imds.Server
	started time.Time
}

// appAuth is the pg_hba method for the app's roles: SCRAM passwords only.
func (r *Region) appAuth() string { return pgha.AuthSCRAM }

// dbUsers are the two alternating login roles of the app's owner role.
func (r *Region) dbUsers() [2]string {
	u := r.spec.Database.User
	return [2]string{u + "_a", u + "_b"}
}

// openSecrets builds the issuer, the policies and the secrets server (its
// store and audit log) once; it does not listen yet.
func (r *Region) openSecrets() error {
	x := &r.secx
	if x.server != nil {
		return nil
	}
	x.log = r.opts.Logger.With("component", "secrets-tier")
	x.imds = map[string]*metadataServer{}
	x.dbSecret = r.spec.Name + "/db"
	x.appRole = r.spec.Name + "-app"
	var err error
	x.issuer, err = iam.NewIssuer(iam.IssuerConfig{Logger: r.opts.Logger})
	if err != nil {
		return fmt.Errorf("start identity issuer: %w", err)
	}
	x.policies = iam.NewPolicies()
	if err := x.policies.Set(x.issuer.OperatorRole(), iam.Policy{Version: "2012-10-17", Statement: []iam.Statement{{
		Sid: "Operator", Effect: iam.Allow, Action: iam.StringList{"secretsmanager:*"}, Resource: iam.StringList{"*"},
	}}}); err != nil {
		return err
	}
	dir := filepath.Join(r.opts.StateDir, "secrets")
	x.server, err = secrets.New(secrets.Config{
		Dir: dir, Region: r.spec.AWS.Region, Account: x.issuer.Account(),
		Keys: x.issuer, Policies: x.policies, Addr: r.spec.Secrets.Listen, Logger: r.opts.Logger, Failpoint: r.failpoints,
	})
	if err != nil {
		return fmt.Errorf("open secrets store in %s: %w", dir, err)
	}
	x.server.Driver().Register(x.dbSecret, &pgRotator{r: r})
	return nil
}

// bootstrapDBLogins creates the app's two alternating login roles (members of
// the owner role, which owns the database and everything in it), the database
// secret on first start, and makes the database agree with AWSCURRENT.
func (r *Region) bootstrapDBLogins(ctx context.Context) error {
	if err := r.openSecrets(); err != nil {
		return err
	}
	x := &r.secx
	users := r.dbUsers()
	if err := r.db.EnsureLoginRoles(ctx, r.spec.Database.User, users[:]); err != nil {
		return fmt.Errorf("bootstrap database logins: %w", err)
	}
	st := x.server.Store()
	cur, err := st.GetSecretValue(secrets.GetSecretValueInput{SecretId: x.dbSecret})
	var ae *secrets.APIError
	switch {
	case errors.As(err, &ae) && ae.Code == secrets.CodeResourceNotFound:
		sec := r.newDBSecret(r.dbUsers()[0], "")
		if err := r.db.SetPassword(ctx, sec.Username, sec.Password); err != nil {
			return err
		}
		val, err := json.Marshal(sec)
		if err != nil {
			return err
		}
		s := string(val)
		out, err := st.CreateSecret(secrets.CreateSecretInput{
			Name: x.dbSecret, SecretString: &s,
			Description: "PostgreSQL login of the " + r.spec.Name + " app (alternating users, rotated by haven)",
			Tags:        []secrets.Tag{{Key: "haven:rotation", Value: r.spec.Secrets.DB.Strategy}},
		})
		if err != nil {
			return fmt.Errorf("create database secret: %w", err)
		}
		x.dbSecretARN = out.ARN
		r.say("secrets: created %s (user %s)", x.dbSecret, sec.Username)
	case err != nil:
		return fmt.Errorf("read database secret: %w", err)
	default:
		x.dbSecretARN = cur.ARN
		sec, err := parseDBSecret(*cur.SecretString)
		if err != nil {
			return fmt.Errorf("read database secret: %w", err)
		}
		// The database may have been restored or recreated: AWSCURRENT must log in.
		if err := r.db.SetPassword(ctx, sec.Username, sec.Password); err != nil {
			return err
		}
	}
	return nil
}

// startSecrets serves the Secrets Manager API, finishes or rolls back a
// rotation a crash interrupted, starts the rotation schedule and the release
// task's metadata endpoint.
func (r *Region) startSecrets(ctx context.Context) error {
	if err := r.openSecrets(); err != nil {
		return err
	}
	x := &r.secx
	if err := x.policies.Set(x.appRole, iam.Policy{Version: "2012-10-17", Statement: []iam.Statement{{
		Sid: "ReadOwnDBSecret", Effect: iam.Allow,
		Action:   iam.StringList{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
		Resource: iam.StringList{x.dbSecretARN},
	}}}); err != nil {
		return err
	}
	if err := x.server.Start(ctx); err != nil {
		return fmt.Errorf("start secrets API on %s: %w (set secrets.listen to a free address)", r.spec.Secrets.Listen, err)
	}
	x.started = true
	r.say("secrets: Secrets Manager API at %s, database secret %s", x.server.Endpoint(), x.dbSecret)
	if pending, err := r.pendingRotation(); err != nil {
		return err
	} else if pending {
		if _, err := x.server.Driver().Rotate(ctx, x.dbSecret); err != nil {
			x.log.Warn("resume interrupted rotation failed; rolling back", "secret", x.dbSecret, "err", err)
			if _, cerr := x.server.Driver().Cancel(ctx, x.dbSecret); cerr != nil {
				return fmt.Errorf("roll back interrupted rotation of %s: %w", x.dbSecret, cerr)
			}
			r.say("secrets: rolled back the interrupted rotation of %s (AWSCURRENT unchanged)", x.dbSecret)
		} else {
			r.say("secrets: finished the interrupted rotation of %s", x.dbSecret)
		}
	}
	if every := r.spec.Secrets.DB.Rotation.D(); every > 0 {
		x.sched = secrets.NewScheduler(secrets.SchedulerConfig{
			Driver: x.server.Driver(), Every: map[string]time.Duration{x.dbSecret: every},
			CheckInterval: min(max(every/4, 5*time.Second), time.Minute),
		})
		if err := x.sched.Start(ctx); err != nil {
			return err
		}
	}
	if len(r.spec.App.Release) > 0 {
		srv, err := r.startMetadata(ctx, "release", r.spec.AWS.AvailabilityZones[0], "127.0.0.1", r.releaseCaller)
		if err != nil {
			return err
		}
		x.mu.Lock()
		x.release = srv
		x.mu.Unlock()
	}
	return nil
}

// pendingRotation reports whether the database secret has an AWSPENDING
// version other than AWSCURRENT (a rotation that did not finish).
func (r *Region) pendingRotation() (bool, error) {
	out, err := r.secx.server.Store().ListSecretVersionIds(secrets.ListSecretVersionIdsInput{SecretId: r.secx.dbSecret})
	if err != nil {
		return false, fmt.Errorf("list versions of %s: %w", r.secx.dbSecret, err)
	}
	for _, v := range out.Versions {
		if slices.Contains(v.VersionStages, secrets.StagePending) && !slices.Contains(v.VersionStages, secrets.StageCurrent) {
			return true, nil
		}
	}
	return false, nil
}

func (r *Region) stopSecrets(ctx context.Context) error {
	x := &r.secx
	var errs []error
	if x.sched != nil {
		errs = append(errs, x.sched.Stop(ctx))
	}
	x.mu.Lock()
	servers := make([]*metadataServer, 0, len(x.imds)+1)
	for id, s := range x.imds {
		servers = append(servers, s)
		delete(x.imds, id)
	}
	if x.release != nil {
		servers = append(servers, x.release)
		x.release = nil
	}
	x.mu.Unlock()
	for _, s := range servers {
		errs = append(errs, s.srv.Stop(ctx))
	}
	if x.server != nil {
		errs = append(errs, x.server.Stop(ctx))
	}
	return errors.Join(errs...)
}

// secretsEnv is the non-secret environment every app process (release task
// and instances) gets from the secrets tier: endpoint URLs and the secret id.
func (r *Region) secretsEnv() map[string]string {
	x := &r.secx
	if x.server == nil {
		return nil
	}
	env := map[string]string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": x.server.Endpoint(),
		"COURSES_DB_SECRET_ID":             x.dbSecret,
		"PGUSER":                           r.dbUsers()[0], // the secret's username wins
	}
	x.mu.Lock()
	if x.release != nil {
		env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = x.release.srv.Endpoint()
	}
	x.mu.Unlock()
	return env
}

// instanceEnv starts the instance's own metadata endpoint on its own address
// and points the SDK at it. The first instance also ends the release task's endpoint.
func (r *Region) instanceEnv(info fleet.InstanceInfo) map[string]string {
	x := &r.secx
	if x.issuer == nil {
		return nil
	}
	x.mu.Lock()
	rel := x.release
	x.release = nil
	x.mu.Unlock()
	if rel != nil {
		_ = rel.srv.Stop(context.Background())
		x.issuer.RevokeInstance("release")
	}
	az := r.spec.AWS.Region + "a"
	if info.Zone != nil {
		az = info.Zone.AZ
	}
	id := info.ID
	srv, err := r.startMetadata(context.Background(), id, az, info.Host, func(pid int) error { return r.instanceCaller(id, pid) })
	if err != nil {
		// The instance starts without identity and fails its health check; the
		// fleet replaces it. Say why.
		x.log.Error("start metadata endpoint", "instance", id, "err", err)
		return map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://" + net.JoinHostPort(info.Host, "1")}
	}
	x.mu.Lock()
	x.imds[id] = srv
	x.mu.Unlock()
	return map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": srv.srv.Endpoint()}
}

// startMetadata starts a metadata endpoint on host that accepts only
// connections whose peer process passes allow.
func (r *Region) startMetadata(ctx context.Context, id, az, host string, allow func(pid int) error) (*metadataServer, error) {
	x := &r.secx
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("listen for the metadata endpoint of %s on %s: %w", id, host, err)
	}
	g := &peercred.Guard{Listener: ln, Allow: allow, Log: x.log.With("instance", id)}
	srv := imds.New(imds.Config{
		Instance: imds.Instance{ID: id, AvailabilityZone: az, Region: r.spec.AWS.Region, Role: x.appRole, AccountID: x.issuer.Account(), PrivateIP: host},
		Issuer:   x.issuer, Listener: g, Logger: r.opts.Logger,
	})
	if err := srv.Start(ctx); err != nil {
		ln.Close()
		return nil, err
	}
	return &metadataServer{srv: srv, started: time.Now()}, nil
}

// onFleetEvent ends an instance's metadata endpoint and revokes its
// credentials when it terminates.
func (r *Region) onFleetEvent(e fleet.Event) {
	x := &r.secx
	if x.issuer == nil {
		return
	}
	switch e.Type {
	case fleet.EventTerminated:
		r.dropMetadata(e.Instance)
	case fleet.EventLaunchFailed:
		// The failed launch's id is not in the event: drop endpoints of
		// instances the fleet does not know that are older than any launch.
		if r.fleet == nil {
			return
		}
		known := map[string]bool{}
		for _, in := range r.fleet.Instances() {
			known[in.ID] = true
		}
		x.mu.Lock()
		var stale []string
		for id, s := range x.imds {
			if !known[id] && time.Since(s.started) > 30*time.Second {
				stale = append(stale, id)
			}
		}
		x.mu.Unlock()
		for _, id := range stale {
			r.dropMetadata(id)
		}
	}
}

func (r *Region) dropMetadata(id string) {
	x := &r.secx
	x.mu.Lock()
	s := x.imds[id]
	delete(x.imds, id)
	x.mu.Unlock()
	if s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Stop(ctx)
	}
	n := x.issuer.RevokeInstance(id)
	x.log.Info("instance identity ended", "instance", id, "revoked", n)
}

// --- who may call a metadata endpoint ---------------------------------------

// instanceCaller allows pid if it runs inside instance id: its process group
// is led by a process the daemon started with HAVEN_INSTANCE_ID=id (every
// instance runs in its own process group).
func (r *Region) instanceCaller(id string, pid int) error {
	leader, env, err := peercred.Started(pid)
	if err != nil {
		return err
	}
	if !peercred.HasEnv(env, "HAVEN_INSTANCE_ID="+id) {
		return fmt.Errorf("process %d belongs to another instance or none", pid)
	}
	if r.fleet != nil {
		for _, in := range r.fleet.Instances() {
			if in.ID == id && in.PID != 0 && in.PID != leader {
				return fmt.Errorf("process %d is not in instance %s's process group %d", pid, id, in.PID)
			}
		}
	}
	return nil
}

// releaseCaller allows the release task: a process group the daemon started
// that is not an instance and runs the release command.
func (r *Region) releaseCaller(pid int) error {
	leader, env, err := peercred.Started(pid)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HAVEN_INSTANCE_ID=") }) {
		return fmt.Errorf("process %d is an instance, not the release task", pid)
	}
	want, err := r.resolveCommand(r.spec.App.Release)
	if err != nil {
		return err
	}
	cl, err := proc.Cmdline(leader)
	if err != nil || !slices.Equal(cl, want) {
		return fmt.Errorf("process %d is not the release task", pid)
	}
	return nil
}

// --- the database secret and its rotation ------------------------------------

// dbSecret is the RDS-shaped secret value.
type dbSecret struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	DBName   string `json:"dbname"`
	Engine   string `json:"engine"`
}

func parseDBSecret(s string) (dbSecret, error) {
	var d dbSecret
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return dbSecret{}, errors.New("secret value is not the database JSON") // never echo the value
	}
	if d.Username == "" || d.Password == "" {
		return dbSecret{}, errors.New("secret value lacks username or password")
	}
	return d, nil
}

// newDBSecret returns a secret for user with a fresh random password and the
// current endpoint.
func (r *Region) newDBSecret(user, _ string) dbSecret {
	ep, _ := netip.ParseAddrPort(r.spec.Database.Endpoint)
	return dbSecret{Username: user, Password: pgha.NewPassword(), Host: ep.Addr().String(), Port: int(ep.Port()), DBName: r.spec.Database.Name, Engine: "postgres"}
}

// testLogin logs in through the database endpoint as the secret says.
func (r *Region) testLogin(ctx context.Context, s dbSecret) (loggedIn bool, reason string, err error) {
	return pgha.TestLogin(ctx, r.spec.Database.Endpoint, s.DBName, s.Username, s.Password)
}

// pgRotator rotates the database secret with alternating users: the new
// password goes to the role that is NOT in AWSCURRENT, so AWSCURRENT keeps
// working throughout.
type pgRotator struct{ r *Region }

var _ secrets.Rotator = (*pgRotator)(nil)

func (p *pgRotator) CreateSecret(ctx context.Context, in secrets.StepInput) (string, error) {
	cur, err := parseDBSecret(in.Current)
	if err != nil {
		return "", err
	}
	next := cur.Username
	if p.r.spec.Secrets.DB.Strategy != "single_user" {
		u := p.r.dbUsers()
		next = u[0]
		if cur.Username == u[0] {
			next = u[1]
		}
	}
	s := p.r.newDBSecret(next, "")
	b, err := json.Marshal(s)
	return string(b), err
}

func (p *pgRotator) SetSecret(ctx context.Context, in secrets.StepInput) error {
	s, err := parseDBSecret(in.Pending)
	if err != nil {
		return err
	}
	if err := p.r.db.SetPassword(ctx, s.Username, s.Password); err != nil {
		return err
	}
	// A crash drill dies here like a power loss, between setSecret and finishSecret.
	return p.r.failpoints.Hit(failpoint.SecretsCrashAfterSetSecret)
}

func (p *pgRotator) TestSecret(ctx context.Context, in secrets.StepInput) error {
	s, err := parseDBSecret(in.Pending)
	if err != nil {
		return err
	}
	ok, reason, err := p.r.testLogin(ctx, s)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("pending credential of %s does not log in: %s", s.Username, reason)
	}
	return nil
}

func (p *pgRotator) FinishSecret(ctx context.Context, in secrets.StepInput) error { return nil }

// --- daemon API ---------------------------------------------------------------

// routesSecrets adds the secrets routes of the daemon API. The socket is 0600:
// every route here is operator-only.
func (r *Region) routesSecrets(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/secrets", func(w http.ResponseWriter, _ *http.Request) {
		x := &r.secx
		if !x.started {
			replyErr(w, http.StatusServiceUnavailable, errors.New("the secrets service is not running yet"))
			return
		}
		info := api.SecretsInfo{
			Endpoint: x.server.Endpoint(), Region: r.spec.AWS.Region, DBSecret: x.dbSecret, DBSecretARN: x.dbSecretARN,
			AppRole: x.appRole, RotationS: r.spec.Secrets.DB.Rotation.D().Seconds(), Strategy: r.spec.Secrets.DB.Strategy,
			AuditLog: x.server.AuditPath(), Metadata: map[string]string{},
		}
		if r.opts.SpecFile != "" {
			info.SpecFile, _ = filepath.Abs(r.opts.SpecFile)
		}
		x.mu.Lock()
		for id, s := range x.imds {
			info.Metadata[id] = s.srv.Endpoint()
		}
		x.mu.Unlock()
		reply(w, http.StatusOK, info)
	})
	mux.HandleFunc("POST /v1/secrets/operator-credentials", func(w http.ResponseWriter, req *http.Request) {
		var in api.OperatorCredentialsRequest
		if !decode(w, req, &in) {
			return
		}
		x := &r.secx
		if !x.started {
			replyErr(w, http.StatusServiceUnavailable, errors.New("the secrets service is not running yet"))
			return
		}
		ttl := time.Duration(in.TTLSeconds) * time.Second
		if ttl == 0 {
			ttl = 15 * time.Minute
		}
		if ttl < time.Second || ttl > 12*time.Hour {
			replyErr(w, http.StatusBadRequest, fmt.Errorf("ttl_seconds: must be 1-43200, got %d", in.TTLSeconds))
			return
		}
		c, err := x.issuer.IssueOperator(ttl)
		if err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		reply(w, http.StatusOK, api.OperatorCredentials{
			AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
			Expiration: c.Expiration, Endpoint: x.server.Endpoint(), Region: r.spec.AWS.Region,
		})
	})
	mux.HandleFunc("POST /v1/secrets/test-login", func(w http.ResponseWriter, req *http.Request) {
		var in api.TestLoginRequest
		if !decode(w, req, &in) {
			return
		}
		x := &r.secx
		if !x.started {
			replyErr(w, http.StatusServiceUnavailable, errors.New("the secrets service is not running yet"))
			return
		}
		if in.SecretID == "" {
			in.SecretID = x.dbSecret
		}
		v, err := x.server.Store().GetSecretValue(secrets.GetSecretValueInput{SecretId: in.SecretID, VersionId: in.VersionID, VersionStage: in.VersionStage})
		if err != nil {
			replyErr(w, http.StatusNotFound, err)
			return
		}
		if v.SecretString == nil {
			replyErr(w, http.StatusBadRequest, errors.New("the secret version is binary, not a database login"))
			return
		}
		s, err := parseDBSecret(*v.SecretString)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		ok, reason, err := r.testLogin(req.Context(), s)
		if err != nil {
			replyErr(w, http.StatusBadGateway, err)
			return
		}
		reply(w, http.StatusOK, api.TestLoginResult{VersionID: v.VersionId, Username: s.Username, LoggedIn: ok, Reason: reason})
	})
	mux.HandleFunc("GET /v1/secrets/audit", func(w http.ResponseWriter, req *http.Request) {
		x := &r.secx
		if !x.started {
			replyErr(w, http.StatusServiceUnavailable, errors.New("the secrets service is not running yet"))
			return
		}
		q, err := api.ParseAuditQuery(req.URL.Query())
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		recs, err := secrets.ReadAuditFile(x.server.AuditPath(), secrets.AuditFilter{Since: q.Since, Action: q.Action, Principal: q.Principal, SecretARN: q.Secret, FailedOnly: q.Failed})
		if err != nil {
			replyErr(w, http.StatusInternalServerError, fmt.Errorf("read audit trail: %w", err))
			return
		}
		out := make([]api.AuditRecord, 0, len(recs))
		for _, r := range recs {
			out = append(out, api.AuditRecord(r))
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/instances/{id}/run", func(w http.ResponseWriter, req *http.Request) {
		var in api.RunRequest
		if !decode(w, req, &in) {
			return
		}
		res, err := r.runOnInstance(req.Context(), req.PathValue("id"), in)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		reply(w, http.StatusOK, res)
	})
}

// runOnInstance runs a command in an instance's process group (so its
// metadata endpoint serves it, as on the instance itself).
func (r *Region) runOnInstance(ctx context.Context, id string, in api.RunRequest) (api.RunResult, error) {
	if len(in.Argv) == 0 {
		return api.RunResult{}, errors.New("argv: required")
	}
	if r.fleet == nil {
		return api.RunResult{}, fmt.Errorf("instance %s: the fleet is not running", id)
	}
	pid := 0
	for _, i := range r.fleet.Instances() {
		if i.ID == id && i.State == "in-service" {
			pid = i.PID
		}
	}
	if pid == 0 {
		return api.RunResult{}, fmt.Errorf("instance %s: not found or not in service", id)
	}
	timeout := time.Duration(in.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := exec.CommandContext(ctx, in.Argv[0], in.Argv[1:]...)
	c.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range r.secretsEnv() {
		if k != "AWS_EC2_METADATA_SERVICE_ENDPOINT" {
			c.Env = append(c.Env, k+"="+v)
		}
	}
	c.Env = append(c.Env, "AWS_REGION="+r.spec.AWS.Region, "AWS_DEFAULT_REGION="+r.spec.AWS.Region)
	r.secx.mu.Lock()
	if s := r.secx.imds[id]; s != nil {
		c.Env = append(c.Env, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+s.srv.Endpoint())
	}
	r.secx.mu.Unlock()
	for k, v := range in.Env {
		c.Env = append(c.Env, k+"="+v)
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: pid, Pdeathsig: syscall.SIGKILL}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &limitedBuffer{b: &out}, &limitedBuffer{b: &errb}
	err := c.Run()
	res := api.RunResult{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
	case err != nil:
		return api.RunResult{}, fmt.Errorf("run %s on %s: %w", in.Argv[0], id, err)
	}
	r.events.Add("secrets", "run", id, "ran "+in.Argv[0])
	return res, nil
}

// limitedBuffer keeps the first 1 MiB written to it.
type limitedBuffer struct{ b *bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 1<<20 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
