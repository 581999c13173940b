package drill

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/release"
)

// BadBuilds is an optional part of a Workload: the environment that makes
// a bad build of its app for `haven drill bad-deploy`, by kind (crash,
// unhealthy, errors, slow).
type BadBuilds interface {
	BadBuild(kind string) (map[string]string, error)
}

// BadDeployConfig configures the bad-deploy drill.
type BadDeployConfig struct {
	// Kind is crash, unhealthy, errors or slow. Default crash.
	Kind string
	// Rate is journey steps per second. Default 30.
	Rate int
	// Users is how many seeded students log in. Default 20.
	Users int
	// Workload is what the users do; it must make bad builds. Required.
	Workload Workload
	// Timeout bounds each rollout. Default 5m.
	Timeout time.Duration
	// Progress receives progress lines (may be nil).
	Progress io.Writer
}

// DeployPhase is one rollout under load.
type DeployPhase struct {
	Rollout string        `json:"rollout"`
	From    string        `json:"from"`
	Target  string        `json:"target"`
	Phase   release.Phase `json:"phase"`
	Gate    string        `json:"gate,omitempty"`
	Reason  string        `json:"reason,omitempty"`
	Summary
	// Slow counts requests over 1 s.
	Slow      int64   `json:"slow"`
	DurationS float64 `json:"duration_s"`
	// MinInService is the fewest in-service healthy instances seen, sampled every 100 ms.
	MinInService int `json:"min_in_service"`
	// MaxZoneSkew is the largest difference of live instances between zones seen.
	MaxZoneSkew int `json:"max_zone_skew"`
	// EndVersions counts live instances per version at the end.
	EndVersions map[string]int `json:"end_versions"`
}

// BadDeployReport is the drill's result.
type BadDeployReport struct {
	Drill   string `json:"drill"`
	Kind    string `json:"kind"`
	Rate    int    `json:"rate"`
	Users   int    `json:"users"`
	Desired int    `json:"desired"`
	// Bound is the most failed (errors) or slow (slow) requests the bad
	// rollout may cause: rate × the first batch's share of the fleet ×
	// (bake + 5 s to roll back). 0 for crash and unhealthy.
	Bound   int64       `json:"bound"`
	Bad     DeployPhase `json:"bad"`
	Good    DeployPhase `json:"good"`
	Pass    bool        `json:"pass"`
	Reasons []string    `json:"reasons,omitempty"`
}

// BadDeploy deploys a bad build of the workload's app under logged-in
// load and checks that the rollout stops and rolls back by itself, then
// deploys a good version under the same load and checks it lands.
func BadDeploy(ctx context.Context, c *api.Client, cfg BadDeployConfig) (*BadDeployReport, error) {
	if cfg.Kind == "" {
		cfg.Kind = "crash"
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 30
	}
	if cfg.Users <= 0 {
		cfg.Users = 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if !slices.Contains([]string{"crash", "unhealthy", "errors", "slow"}, cfg.Kind) {
		return nil, fmt.Errorf("drill bad-deploy: --kind %q: must be crash, unhealthy, errors or slow", cfg.Kind)
	}
	bb, ok := cfg.Workload.(BadBuilds)
	if !ok {
		return nil, fmt.Errorf("drill bad-deploy: the %s workload cannot make a bad build of its app", workloadName(cfg.Workload))
	}
	badEnv, err := bb.BadBuild(cfg.Kind)
	if err != nil {
		return nil, fmt.Errorf("drill bad-deploy: %w", err)
	}
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Phase != api.PhaseReady {
		return nil, fmt.Errorf("drill bad-deploy: region is %s, not ready", st.Phase)
	}
	var rs release.Status
	if err := c.Do(ctx, http.MethodGet, "/v1/deploys/status", nil, &rs); err != nil {
		return nil, err
	}
	if rs.Active != nil {
		return nil, fmt.Errorf("drill bad-deploy: rollout %s is %s; wait for it to finish", rs.Active.ID, rs.Active.Phase)
	}
	rep := &BadDeployReport{Drill: "bad-deploy", Kind: cfg.Kind, Rate: cfg.Rate, Users: cfg.Users, Desired: st.Fleet.Desired}
	if cfg.Kind == "errors" || cfg.Kind == "slow" {
		d := st.Fleet.Desired
		first := rs.Policy.Checkpoints[0]
		batch := min(max((d*first+99)/100, 1), d)
		share := float64(batch) / float64(d)
		rep.Bound = int64(math.Ceil(float64(cfg.Rate) * share * (rs.Policy.Bake + 5*time.Second).Seconds()))
	}
	say("logging in %d users of the %s workload", cfg.Users, workloadName(cfg.Workload))
	site, users, err := OpenSite(ctx, st, cfg.Users, cfg.Workload)
	if err != nil {
		return nil, fmt.Errorf("drill bad-deploy: %w", err)
	}
	defer site.Close()

	say("bad deploy (%s) under %d requests/s", cfg.Kind, cfg.Rate)
	bad, err := deployUnderLoad(ctx, c, site, users, cfg, release.DeployRequest{Env: badEnv}, say)
	if err != nil {
		return nil, err
	}
	rep.Bad = *bad
	say("good deploy under %d requests/s", cfg.Rate)
	good, err := deployUnderLoad(ctx, c, site, users, cfg,
		release.DeployRequest{Env: map[string]string{"HAVEN_DRILL_DEPLOY": strconv.FormatInt(time.Now().UnixNano(), 36)}}, say)
	if err != nil {
		return nil, err
	}
	rep.Good = *good

	why := func(f string, a ...any) { rep.Reasons = append(rep.Reasons, fmt.Sprintf(f, a...)) }
	if rep.Bad.Phase != release.PhaseRolledBack {
		why("the bad deploy ended %s, not rolled-back", rep.Bad.Phase)
	}
	if n := rep.Bad.EndVersions[rep.Bad.From]; n < rep.Desired || len(rep.Bad.EndVersions) != 1 {
		why("after the rollback the fleet runs %v, not %d × %s", rep.Bad.EndVersions, rep.Desired, rep.Bad.From)
	}
	switch cfg.Kind {
	case "crash", "unhealthy":
		if rep.Bad.Failed > 0 {
			why("%d requests failed during the %s deploy; want 0", rep.Bad.Failed, cfg.Kind)
		}
		if rep.Bad.Gate != release.GateHealth {
			why("the %s gate tripped, want health", rep.Bad.Gate)
		}
	case "errors":
		if rep.Bad.Failed > rep.Bound {
			why("%d requests failed during the errors deploy; bound %d", rep.Bad.Failed, rep.Bound)
		}
		if rep.Bad.Gate != release.GateErrors {
			why("the %s gate tripped, want errors", rep.Bad.Gate)
		}
	case "slow":
		if rep.Bad.Slow > rep.Bound || rep.Bad.Failed > 0 {
			why("%d slow and %d failed requests during the slow deploy; bound %d slow, 0 failed", rep.Bad.Slow, rep.Bad.Failed, rep.Bound)
		}
		if rep.Bad.Gate != release.GateLatency {
			why("the %s gate tripped, want latency", rep.Bad.Gate)
		}
	}
	for _, p := range []*DeployPhase{&rep.Bad, &rep.Good} {
		if p.MinInService < rep.Desired {
			why("%s: in-service capacity fell to %d, below desired %d", p.Rollout, p.MinInService, rep.Desired)
		}
		if p.MaxZoneSkew > 1 {
			why("%s: zones differed by %d instances", p.Rollout, p.MaxZoneSkew)
		}
	}
	if rep.Good.Phase != release.PhaseSucceeded || rep.Good.Failed > 0 || rep.Good.EndVersions[rep.Good.Target] < rep.Desired || len(rep.Good.EndVersions) != 1 {
		why("the good deploy ended %s with %d failed requests and %v", rep.Good.Phase, rep.Good.Failed, rep.Good.EndVersions)
	}
	rep.Pass = len(rep.Reasons) == 0
	return rep, nil
}

// deployUnderLoad starts a rollout while the users walk the site, samples
// capacity and zones every 100 ms, and returns when the rollout has ended.
func deployUnderLoad(ctx context.Context, c *api.Client, site *Site, users []*User, cfg BadDeployConfig, req release.DeployRequest, say func(string, ...any)) (*DeployPhase, error) {
	rec := NewRecorder()
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { RunLoad(loadCtx, site, users, cfg.Rate, rec); close(loadDone) }()
	defer func() { stopLoad(); <-loadDone }()
	if err := sleepCtx(ctx, 2*time.Second); err != nil { // a steady rate before the rollout
		return nil, err
	}
	start := time.Now()
	var r release.Rollout
	if err := c.Do(ctx, http.MethodPost, "/v1/deploys", req, &r); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	say("  rollout %s: %s → %s", r.ID, r.From, r.Target)
	p := &DeployPhase{Rollout: r.ID, From: r.From, Target: r.Target, MinInService: math.MaxInt}
	deadline := start.Add(cfg.Timeout)
	for {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("rollout %s did not end within %s", r.ID, cfg.Timeout)
		}
		st, err := c.Status(ctx)
		if err == nil {
			in := 0
			perZone := map[string]int{}
			for _, z := range st.Zones {
				perZone[z.Name] = 0
			}
			for _, i := range st.Instances {
				if i.State == "in-service" && i.Health == "healthy" {
					in++
				}
				if i.State == "in-service" || i.State == "pending" {
					perZone[i.Zone]++
				}
			}
			p.MinInService = min(p.MinInService, in)
			lo, hi := math.MaxInt, 0
			for _, n := range perZone {
				lo, hi = min(lo, n), max(hi, n)
			}
			p.MaxZoneSkew = max(p.MaxZoneSkew, hi-lo)
		}
		var rs release.Status
		if err := c.Do(ctx, http.MethodGet, "/v1/deploys/status", nil, &rs); err == nil && rs.Active == nil && rs.Last != nil && rs.Last.ID == r.ID {
			p.Phase, p.Gate, p.Reason, p.EndVersions = rs.Last.Phase, rs.Last.Gate, rs.Last.Reason, rs.Instances
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	p.DurationS = time.Since(start).Seconds()
	if err := sleepCtx(ctx, time.Second); err != nil { // the last requests of the rollout land
		return nil, err
	}
	stopLoad()
	<-loadDone
	p.Summary, p.Slow = rec.Summary(), rec.Slower(time.Second)
	say("  %s %s after %.1f s; %d requests, %d failed, %d slow; gate %q %s", r.ID, p.Phase, p.DurationS, p.Requests, p.Failed, p.Slow, p.Gate, p.Reason)
	return p, nil
}
