package drill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/pgha/ledger"
)

// Kinds of control-plane-loss rounds.
const (
	// CPCrash: kill -9 of the daemon, a wait, then `haven up` of the same
	// binary, which adopts what runs.
	CPCrash = "crash"
	// CPUpgrade: `haven up --takeover` of another binary (another version):
	// the running daemon hands over and exits, the new one adopts what
	// runs and moves the load balancer to its own build by a hot restart.
	CPUpgrade = "upgrade"
	// CPLBKill: kill -9 of the load balancer process itself; the daemon
	// starts another on the same sockets.
	CPLBKill = "lb-kill"
)

// ControlPlaneLossConfig configures the control-plane-loss drill.
type ControlPlaneLossConfig struct {
	// Binary is the haven binary of the region (crash rounds restart it).
	// Required.
	Binary string
	// UpgradeBinary is another haven build (another version string) for
	// the upgrade rounds: they alternate between it and Binary, so each is
	// a change of version. Required when UpgradeRounds > 0.
	UpgradeBinary string
	// SpecFile and StateDir are the region's, for `haven up`. Required.
	SpecFile, StateDir string
	// Env is the environment of the haven commands the drill runs.
	// Default: the drill's own.
	Env []string
	// CrashRounds, UpgradeRounds and LBKillRounds say how many rounds of
	// each kind run. Defaults 5, 3 and 3 (a negative number: none).
	CrashRounds, UpgradeRounds, LBKillRounds int
	// Wait is how long the region runs without a daemon in a crash round,
	// between the kill and `haven up`. Default 1s.
	Wait time.Duration
	// Warmup and Hold are how long load runs before each fault and after
	// the region is ready again. Defaults 2s and 3s.
	Warmup, Hold time.Duration
	// Writers and Interval shape the ledger writers through the database
	// endpoint (defaults 4 and 10ms).
	Writers  int
	Interval time.Duration
	// Rate, Users and Workload shape the logged-in web load through the
	// load balancer (defaults 20/s and 10 users; Workload is required).
	Rate     int
	Users    int
	Workload Workload
	// ReadyTarget bounds the time from the new daemon's start to the
	// region ready. Default 2s.
	ReadyTarget time.Duration
	// LBBackTarget bounds the time from the load balancer's kill to the
	// site answering again. Default 1s.
	LBBackTarget time.Duration
	// UpTimeout bounds each `haven up`. Default 2m.
	UpTimeout time.Duration
	// Progress receives human-readable progress lines (may be nil).
	Progress io.Writer
}

func (cfg *ControlPlaneLossConfig) setDefaults() {
	def := func(n *int, d int) {
		if *n == 0 {
			*n = d
		}
		if *n < 0 {
			*n = 0
		}
	}
	def(&cfg.CrashRounds, 5)
	def(&cfg.UpgradeRounds, 3)
	def(&cfg.LBKillRounds, 3)
	if cfg.Wait <= 0 {
		cfg.Wait = time.Second
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 2 * time.Second
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 3 * time.Second
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 4
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 20
	}
	if cfg.Users <= 0 {
		cfg.Users = 10
	}
	if cfg.ReadyTarget <= 0 {
		cfg.ReadyTarget = 2 * time.Second
	}
	if cfg.LBBackTarget <= 0 {
		cfg.LBBackTarget = time.Second
	}
	if cfg.UpTimeout <= 0 {
		cfg.UpTimeout = 2 * time.Minute
	}
}

// TimelineEvent is one moment of a drill.
type TimelineEvent struct {
	At     time.Time `json:"at"`
	Event  string    `json:"event"`
	Detail string    `json:"detail,omitempty"`
}

// CPRound is one round of the control-plane-loss drill.
type CPRound struct {
	Round int    `json:"round"`
	Kind  string `json:"kind"`
	// DaemonBefore and DaemonAfter are the daemons' pids and versions.
	DaemonBefore  int    `json:"daemon_before"`
	DaemonAfter   int    `json:"daemon_after"`
	VersionBefore string `json:"version_before"`
	VersionAfter  string `json:"version_after"`
	// LBBefore and LBAfter are the load balancer processes' pids;
	// LBVersionAfter the build of the one serving after the round.
	LBBefore       int    `json:"lb_before"`
	LBAfter        int    `json:"lb_after"`
	LBVersionAfter string `json:"lb_version_after,omitempty"`
	// ReadyMS is the new daemon's start → the region ready (its own
	// clock); UpMS is `haven up` run → it returned ready.
	ReadyMS float64 `json:"ready_ms,omitempty"`
	UpMS    float64 `json:"up_ms,omitempty"`
	// LBBackMS is the load balancer's kill → the site answering again.
	LBBackMS float64 `json:"lb_back_ms,omitempty"`
	// Adopted counts the instances the new daemon adopted, Relaunched the
	// instances launched during the round (replacing one it could not
	// adopt);
	// DBNodesAdopted the database nodes adopted; Instances how many ran
	// before the fault.
	Instances      int `json:"instances"`
	Adopted        int `json:"adopted"`
	Relaunched     int `json:"relaunched"`
	DBNodes        int `json:"db_nodes"`
	DBNodesAdopted int `json:"db_nodes_adopted"`
	// SamePIDs says every instance and database node kept its id and pid.
	SamePIDs bool `json:"same_pids"`
	// EpochBefore and EpochAfter are the database's; Failovers counts
	// failovers the new daemon's controller began.
	EpochBefore int64 `json:"epoch_before"`
	EpochAfter  int64 `json:"epoch_after"`
	Failovers   int   `json:"failovers"`
	// LeftAlone is what the new daemon reported it could not prove its own.
	LeftAlone []string `json:"left_alone,omitempty"`
	// Web is what logged-in users saw during the round.
	Web      *WebWindow `json:"web,omitempty"`
	Problems []string   `json:"problems,omitempty"`
}

// ControlPlaneLossReport is the drill's result, in the common drill
// envelope (drill, started_at, ended_at, region, spec_sha256,
// haven_version, pass, timeline).
type ControlPlaneLossReport struct {
	Drill        string          `json:"drill"`
	StartedAt    time.Time       `json:"started_at"`
	EndedAt      time.Time       `json:"ended_at"`
	Region       string          `json:"region"`
	SpecSHA256   string          `json:"spec_sha256"`
	HavenVersion string          `json:"haven_version"`
	Pass         bool            `json:"pass"`
	Reasons      []string        `json:"reasons,omitempty"`
	Timeline     []TimelineEvent `json:"timeline"`
	// Versions are the haven builds the upgrade rounds moved between.
	Versions []string `json:"versions,omitempty"`
	// Totals over the crash and upgrade rounds: failed web requests must
	// be 0. The load balancer's kill rounds count theirs apart: requests
	// in flight on the killed process may fail.
	FailedRequests       int64   `json:"failed_requests"`
	Requests             int64   `json:"requests"`
	LBKillFailedRequests int64   `json:"lb_kill_failed_requests"`
	AcknowledgedLost     int     `json:"acknowledged_lost"`
	FailPresent          int     `json:"fail_present"`
	OK                   int     `json:"ok"`
	Fail                 int     `json:"fail"`
	Unknown              int     `json:"unknown"`
	Adopted              int     `json:"adopted"`
	Relaunched           int     `json:"relaunched"`
	DBNodesAdopted       int     `json:"db_nodes_adopted"`
	Failovers            int     `json:"failovers"`
	ReadyMSMax           float64 `json:"ready_ms_max"`
	LBBackMSMax          float64 `json:"lb_back_ms_max"`
	// Web is the whole run's web load.
	Web          *Summary  `json:"web,omitempty"`
	RoundResults []CPRound `json:"round_results"`
}

// ControlPlaneLoss runs the control-plane-loss drill: logged-in web load
// through the load balancer and ledger writers through the database
// endpoint, while the daemon is killed and started again (crash rounds),
// replaced by another build (upgrade rounds), and the load balancer
// process itself is killed (lb-kill rounds). The data plane must not
// notice the control plane: no failed request, no lost write, every
// instance and database node adopted (same ids, same pids), no failover,
// and the region ready again within ReadyTarget.
func ControlPlaneLoss(ctx context.Context, c *api.Client, cfg ControlPlaneLossConfig) (*ControlPlaneLossReport, error) {
	cfg.setDefaults()
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}
	if cfg.Binary == "" || cfg.SpecFile == "" || cfg.StateDir == "" {
		return nil, errors.New("drill control-plane-loss: the haven binary, the spec file and the state dir are required")
	}
	if cfg.UpgradeRounds > 0 && cfg.UpgradeBinary == "" {
		return nil, errors.New("drill control-plane-loss: upgrade rounds need another haven build: give --upgrade-binary (e.g. go build -ldflags \"-X github.com/haven-platform/haven/internal/version.Version=next\" -o /tmp/haven-next ./cmd/haven), or --upgrade-rounds 0")
	}
	spec, err := os.ReadFile(cfg.SpecFile)
	if err != nil {
		return nil, fmt.Errorf("drill control-plane-loss: %w", err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill control-plane-loss: %w", err)
	}
	if st.Phase != api.PhaseReady {
		return nil, fmt.Errorf("drill control-plane-loss: region is %s, not ready; wait for `haven status` to say ready", st.Phase)
	}
	sum := sha256.Sum256(spec)
	rep := &ControlPlaneLossReport{Drill: "control-plane-loss", StartedAt: time.Now().UTC(), Region: st.Region,
		SpecSHA256: hex.EncodeToString(sum[:]), HavenVersion: st.Version}
	mark := func(event, format string, a ...any) {
		rep.Timeline = append(rep.Timeline, TimelineEvent{At: time.Now().UTC(), Event: event, Detail: fmt.Sprintf(format, a...)})
	}
	if cfg.UpgradeRounds > 0 {
		v, err := binaryVersion(ctx, cfg.UpgradeBinary, cfg.Env)
		if err != nil {
			return nil, fmt.Errorf("drill control-plane-loss: --upgrade-binary: %w", err)
		}
		if v == st.Version {
			return nil, fmt.Errorf("drill control-plane-loss: %s is version %s, as the running daemon: an upgrade needs another build", cfg.UpgradeBinary, v)
		}
		rep.Versions = []string{st.Version, v}
	}
	direct, err := directNodes(st)
	if err != nil {
		return nil, fmt.Errorf("drill control-plane-loss: %w", err)
	}
	db, err := c.DBStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill control-plane-loss: %w", err)
	}
	login, err := c.DBDrillLogin(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill control-plane-loss: get a drill login: %w", err)
	}
	defer endDrillLogin(c, say)
	if _, _, err := waitHealed(ctx, c, time.Minute, nil); err != nil && db.MultiAZ {
		return nil, fmt.Errorf("drill control-plane-loss: the database is not healthy before the drill: %w", err)
	}
	epDSN := endpointDSN(login)
	table := "drill_cp_ledger_" + strconv.FormatInt(time.Now().Unix(), 10)
	if err := ledger.Setup(ctx, epDSN, table); err != nil {
		return nil, fmt.Errorf("drill control-plane-loss: %w (is the endpoint %s reachable?)", err, db.Endpoint)
	}
	defer dropTable(epDSN, table)
	w, err := ledger.Start(ctx, ledger.Config{DSN: epDSN, Writers: cfg.Writers, Table: table, Interval: cfg.Interval,
		OpTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	say("%d ledger writers committing through the endpoint %s into %s", cfg.Writers, db.Endpoint, table)
	web, err := startWebLoad(ctx, c, cfg.Users, cfg.Rate, cfg.Workload, "drill control-plane-loss", say)
	if err != nil {
		return nil, err
	}
	defer web.close()
	mark("start", "daemon %d (version %s), load balancer %d", st.PID, st.Version, st.LB.PID)

	var kinds []string
	for range cfg.CrashRounds {
		kinds = append(kinds, CPCrash)
	}
	for range cfg.UpgradeRounds {
		kinds = append(kinds, CPUpgrade)
	}
	for range cfg.LBKillRounds {
		kinds = append(kinds, CPLBKill)
	}
	upgrades := 0
	for i, kind := range kinds {
		bin := cfg.Binary
		if kind == CPUpgrade {
			upgrades++
			if upgrades%2 == 1 {
				bin = cfg.UpgradeBinary
			}
		}
		round, err := runCPRound(ctx, c, cfg, kind, bin, i+1, web, mark, say)
		if err != nil {
			return nil, fmt.Errorf("drill control-plane-loss round %d (%s): %w", i+1, kind, err)
		}
		rep.RoundResults = append(rep.RoundResults, *round)
		if kind == CPLBKill {
			if round.Web != nil {
				rep.LBKillFailedRequests += round.Web.Failed
			}
			rep.LBBackMSMax = max(rep.LBBackMSMax, round.LBBackMS)
		} else {
			if round.Web != nil {
				rep.FailedRequests += round.Web.Failed
				rep.Requests += round.Web.Requests
			}
			rep.Adopted += round.Adopted
			rep.DBNodesAdopted += round.DBNodesAdopted
			rep.ReadyMSMax = max(rep.ReadyMSMax, round.ReadyMS)
		}
		rep.Relaunched += round.Relaunched
		rep.Failovers += round.Failovers
	}
	stopped = true
	ops := w.Stop()
	rep.OK, rep.Fail, rep.Unknown = tally(ops)
	end, err := c.DBStatus(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	lr, err := checkLedger(cctx, direct, login, end.Primary, nodeAddr(end, end.Primary), table, ops)
	cancel()
	if err != nil {
		rep.Reasons = append(rep.Reasons, "final ledger check: "+err.Error())
	} else {
		rep.AcknowledgedLost, rep.FailPresent = lr.AcknowledgedLost, lr.FailPresent
	}
	s := web.total()
	rep.Web = &s
	for _, r := range rep.RoundResults {
		for _, p := range r.Problems {
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("round %d (%s): %s", r.Round, r.Kind, p))
		}
	}
	if rep.FailedRequests > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d web requests failed during daemon crashes and upgrades, want 0", rep.FailedRequests))
	}
	if rep.AcknowledgedLost > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d acknowledged commits lost", rep.AcknowledgedLost))
	}
	if rep.FailPresent > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d failed writes present", rep.FailPresent))
	}
	rep.EndedAt = time.Now().UTC()
	mark("end", "epoch %d, primary %s", end.Epoch, end.Primary)
	rep.Pass = len(rep.Reasons) == 0
	return rep, nil
}

// binaryVersion asks a haven binary its version.
func binaryVersion(ctx context.Context, bin string, env []string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "version", "--json")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", bin, err)
	}
	var v struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.Version == "" {
		return "", fmt.Errorf("%s version --json: no version in %q", bin, bytes.TrimSpace(out))
	}
	return v.Version, nil
}

// runCPRound runs one round: load, the fault, the new daemon (or load
// balancer), the checks.
func runCPRound(ctx context.Context, c *api.Client, cfg ControlPlaneLossConfig, kind, bin string, i int, web *webLoad,
	mark func(string, string, ...any), say func(string, ...any)) (*CPRound, error) {
	before, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	r := &CPRound{Round: i, Kind: kind, DaemonBefore: before.PID, VersionBefore: before.Version, LBBefore: before.LB.PID, Instances: len(before.Instances)}
	if before.Database != nil {
		r.EpochBefore, r.DBNodes = before.Database.Epoch, len(before.Database.Nodes)
	}
	web.beginRound()
	if err := sleepCtx(ctx, cfg.Warmup); err != nil {
		return nil, err
	}
	fault := time.Now()
	switch kind {
	case CPCrash:
		say("round %d: kill -9 of the daemon (pid %d); %s without one; then %s up", i, before.PID, cfg.Wait, bin)
		if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
			return nil, fmt.Errorf("kill the daemon %d: %w", before.PID, err)
		}
		mark("daemon-killed", "round %d: pid %d", i, before.PID)
		if err := sleepCtx(ctx, cfg.Wait); err != nil {
			return nil, err
		}
		if err := cfg.up(ctx, r, bin, false, mark); err != nil {
			return nil, err
		}
	case CPUpgrade:
		say("round %d: %s up --takeover (daemon %d, version %s, hands over)", i, bin, before.PID, before.Version)
		if err := cfg.up(ctx, r, bin, true, mark); err != nil {
			return nil, err
		}
	case CPLBKill:
		say("round %d: kill -9 of the load balancer process (pid %d)", i, before.LB.PID)
		back, err := killLB(ctx, before, 30*time.Second)
		if err != nil {
			return nil, err
		}
		r.LBBackMS = msf(back)
		mark("lb-killed", "round %d: pid %d, site back after %.0f ms", i, before.LB.PID, r.LBBackMS)
	}
	after, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("status after the round: %w", err)
	}
	r.DaemonAfter, r.VersionAfter, r.LBAfter, r.LBVersionAfter = after.PID, after.Version, after.LB.PID, after.LB.Version
	if kind != CPLBKill && !after.ReadyAt.IsZero() {
		r.ReadyMS = msf(after.ReadyAt.Sub(after.StartedAt))
	}
	if after.Database != nil {
		r.EpochAfter = after.Database.Epoch
	}
	if err := sleepCtx(ctx, cfg.Hold); err != nil {
		return nil, err
	}
	r.Web = web.endRound(fault, 0)
	r.Web.OutsideWindow = 0 // no failure window is allowed here: every failure counts

	// Same instances and servers, same processes.
	pids := func(st api.Status) map[string]int {
		m := map[string]int{}
		for _, in := range st.Instances {
			m["instance "+in.ID] = in.PID
		}
		if st.Database != nil {
			for _, n := range st.Database.Nodes {
				m["db "+n.Name] = n.PID
			}
		}
		return m
	}
	end, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	pb, pa := pids(before), pids(end)
	r.SamePIDs = len(pb) == len(pa)
	for k, v := range pb {
		if pa[k] != v {
			r.SamePIDs = false
			r.Problems = append(r.Problems, fmt.Sprintf("%s: pid %d before, %d after", k, v, pa[k]))
		}
	}
	if a := after.Adoption; a != nil && kind != CPLBKill {
		r.Adopted, r.DBNodesAdopted, r.LeftAlone = len(a.Instances), len(a.DBNodes), a.LeftAlone
	}
	evs, err := c.Events(ctx, api.EventQuery{})
	if err == nil {
		for _, e := range evs {
			if e.Time.Before(fault) {
				continue
			}
			switch {
			case e.Component == "db" && e.Kind == "failover-started":
				r.Failovers++
			case e.Component == "fleet" && e.Kind == "launch":
				r.Relaunched++
			}
		}
	}
	switch kind {
	case CPCrash, CPUpgrade:
		if r.DaemonAfter == r.DaemonBefore {
			r.Problems = append(r.Problems, "the daemon was not replaced")
		}
		if r.Adopted != r.Instances {
			r.Problems = append(r.Problems, fmt.Sprintf("%d of %d instances adopted", r.Adopted, r.Instances))
		}
		if r.DBNodesAdopted != r.DBNodes {
			r.Problems = append(r.Problems, fmt.Sprintf("%d of %d database nodes adopted", r.DBNodesAdopted, r.DBNodes))
		}
		if r.ReadyMS > msf(cfg.ReadyTarget) {
			r.Problems = append(r.Problems, fmt.Sprintf("ready %.0f ms after the new daemon started, the target is %s", r.ReadyMS, cfg.ReadyTarget))
		}
		if r.Web != nil && r.Web.Failed > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%d web requests failed", r.Web.Failed))
		}
	case CPLBKill:
		if r.LBAfter == r.LBBefore || r.LBAfter == 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("no new load balancer process (pid %d before, %d after)", r.LBBefore, r.LBAfter))
		}
		if r.LBBackMS > msf(cfg.LBBackTarget) {
			r.Problems = append(r.Problems, fmt.Sprintf("the site answered %.0f ms after the load balancer's kill, the target is %s", r.LBBackMS, cfg.LBBackTarget))
		}
	}
	if kind == CPUpgrade {
		if r.VersionAfter == r.VersionBefore {
			r.Problems = append(r.Problems, fmt.Sprintf("the daemon's version did not change (%s)", r.VersionAfter))
		}
		if r.LBAfter == r.LBBefore || r.LBVersionAfter != r.VersionAfter {
			r.Problems = append(r.Problems, fmt.Sprintf("the load balancer was not moved to the new build by a hot restart (pid %d → %d, version %s)", r.LBBefore, r.LBAfter, r.LBVersionAfter))
		}
	}
	if kind == CPCrash && r.LBAfter != r.LBBefore {
		r.Problems = append(r.Problems, fmt.Sprintf("the load balancer process was replaced (%d → %d), not adopted", r.LBBefore, r.LBAfter))
	}
	if r.Relaunched > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d instances relaunched", r.Relaunched))
	}
	if r.Failovers > 0 || r.EpochAfter != r.EpochBefore {
		r.Problems = append(r.Problems, fmt.Sprintf("the database failed over (epoch %d → %d, %d failovers)", r.EpochBefore, r.EpochAfter, r.Failovers))
	}
	if len(r.LeftAlone) > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("left alone: %v", r.LeftAlone))
	}
	say("round %d (%s): daemon %d → %d (%s → %s), load balancer %d → %d; ready %.0f ms; adopted %d/%d instances, %d/%d db nodes; relaunched %d; web %d requests, %d failed; epoch %d → %d",
		i, kind, r.DaemonBefore, r.DaemonAfter, r.VersionBefore, r.VersionAfter, r.LBBefore, r.LBAfter, r.ReadyMS,
		r.Adopted, r.Instances, r.DBNodesAdopted, r.DBNodes, r.Relaunched, r.Web.Requests, r.Web.Failed, r.EpochBefore, r.EpochAfter)
	return r, nil
}

// up runs `haven up --detach` (with --takeover for an upgrade) and waits
// for it to return ready.
func (cfg ControlPlaneLossConfig) up(ctx context.Context, r *CPRound, bin string, takeover bool, mark func(string, string, ...any)) error {
	args := []string{"up", "--detach", "-f", cfg.SpecFile, "--state-dir", cfg.StateDir}
	if takeover {
		args = append(args, "--takeover")
	}
	uctx, cancel := context.WithTimeout(ctx, cfg.UpTimeout)
	defer cancel()
	cmd := exec.CommandContext(uctx, bin, args...)
	cmd.Env = cfg.Env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	mark("up", "round %d: %s %v", r.Round, bin, args)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w\n%s", bin, args, err, out.String())
	}
	r.UpMS = msf(time.Since(start))
	mark("ready", "round %d: after %.0f ms", r.Round, r.UpMS)
	return nil
}

// killLB SIGKILLs the load balancer process and returns how long the site
// took to answer again (any HTTP response over TLS).
func killLB(ctx context.Context, st api.Status, timeout time.Duration) (time.Duration, error) {
	if st.LB.PID == 0 {
		return 0, errors.New("the status names no load balancer process")
	}
	ca, err := os.ReadFile(st.Endpoints.CACert)
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 500 * time.Millisecond}
	if err := syscall.Kill(st.LB.PID, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill the load balancer %d: %w", st.LB.PID, err)
	}
	killed := time.Now()
	for time.Since(killed) < timeout {
		resp, err := cl.Get(st.Endpoints.HTTPS + "/")
		if err == nil {
			resp.Body.Close()
			return time.Since(killed), nil
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("the site did not answer within %s of the load balancer's kill", timeout)
}
