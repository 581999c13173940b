package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/pgha/ledger"
)

// DBFailoverConfig configures the database failover drill.
type DBFailoverConfig struct {
	// Rounds is how many faults are injected, one after the other. Default 3.
	Rounds int
	// Fault is kill (default), freeze, standby-loss or controller-restart.
	Fault string
	// Writers is how many concurrent ledger writers commit through the endpoint. Default 4.
	Writers int
	// Interval is the pause between one writer's commits. Default 10ms.
	Interval time.Duration
	// Warmup is how long the writers commit before each fault. Default 1s.
	Warmup time.Duration
	// RTOTimeout bounds the wait for the first commit after a fault. Default 30s.
	RTOTimeout time.Duration
	// HealTimeout bounds the wait for one primary and a streaming,
	// synchronous, eligible standby after a round. Default 120s.
	HealTimeout time.Duration
	// RTOMedianTarget and RTOMaxTarget are the bars the RTO must meet for
	// the drill to pass. Default 3s and 5s (the acceptance).
	RTOMedianTarget, RTOMaxTarget time.Duration
	// RestartDelays (controller-restart) are the delays between the kill
	// and the controller restart, used round-robin. Default 0, 100, 250,
	// 500 and 1000 ms, so restarts land before, during and after promotion.
	RestartDelays []time.Duration
	// WithWebLoad also drives logged-in journeys through the load balancer
	// during every round and reports when user requests failed relative to
	// the fault.
	WithWebLoad bool
	// Rate, Users and Workload shape the web load (defaults 20/s, 10 users;
	// the workload is required with WithWebLoad).
	Rate     int
	Users    int
	Workload Workload
	// Progress receives human-readable progress lines (may be nil).
	Progress io.Writer
}

// DBRound is one round of the drill.
type DBRound struct {
	Round int    `json:"round"`
	Fault string `json:"fault"`
	Node  string `json:"node"`
	Zone  string `json:"zone"`
	// RTOMS is fault → first acknowledged commit of a transaction begun
	// after the fault, through the endpoint. For standby-loss it is how long
	// commits stalled.
	RTOMS     float64 `json:"rto_ms"`
	Recovered bool    `json:"recovered"`
	// HealMS is fault → one writable primary and a streaming, synchronous,
	// eligible standby.
	HealMS     float64    `json:"heal_ms"`
	Healed     bool       `json:"healed"`
	EpochFrom  int64      `json:"epoch_from"`
	EpochTo    int64      `json:"epoch_to"`
	Primary    string     `json:"primary_after"`
	OK         int        `json:"ok"`
	Fail       int        `json:"fail"`
	Unknown    int        `json:"unknown"`
	Lost       int        `json:"acknowledged_lost"`
	FailInDB   int        `json:"fail_present"`
	Breaches   []DBRow    `json:"breaches,omitempty"`
	RestartMS  float64    `json:"restart_after_ms,omitempty"`    // controller-restart: kill → restart
	RestartAt  string     `json:"restart_interrupted,omitempty"` // before-persist or after-persist
	OldRefused string     `json:"old_primary_write,omitempty"`   // freeze: how a write to the thawed old primary was refused
	Web        *WebWindow `json:"web,omitempty"`
	Problems   []string   `json:"problems,omitempty"`
}

// DBRow is a ledger row that breaks the contract.
type DBRow struct {
	ID      string `json:"id"`
	Writer  int    `json:"writer"`
	Outcome string `json:"outcome"`
	Start   string `json:"start"`
	End     string `json:"end"`
	Err     string `json:"error,omitempty"`
	Problem string `json:"problem"`
}

// WebWindow is what logged-in users saw during one round.
type WebWindow struct {
	Requests int64 `json:"requests"`
	Failed   int64 `json:"failed"`
	// FirstFailMS and LastFailMS are failure times relative to the fault
	// (of the failures kept, at most 50 per round).
	FirstFailMS float64 `json:"first_fail_ms,omitempty"`
	LastFailMS  float64 `json:"last_fail_ms,omitempty"`
	// OutsideWindow counts kept failures outside [fault, fault + RTO + 1s].
	OutsideWindow int            `json:"outside_rto_window"`
	Errors        map[string]int `json:"errors,omitempty"`
}

// RTOStats summarises RTOs.
type RTOStats struct {
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	Min    float64 `json:"min"`
}

// DBFailoverReport is the drill's result.
type DBFailoverReport struct {
	Envelope
	Fault      string   `json:"fault"`
	Durability string   `json:"durability"`
	Rounds     int      `json:"rounds"`
	Writers    int      `json:"writers"`
	RTOMS      RTOStats `json:"rto_ms"`
	// HealMS is the slowest heal.
	HealMS           float64 `json:"heal_ms_max"`
	OK               int     `json:"ok"`
	Fail             int     `json:"fail"`
	Unknown          int     `json:"unknown"`
	AcknowledgedLost int     `json:"acknowledged_lost"`
	FailPresent      int     `json:"fail_present"`
	// Primaries counts nodes that accept writes (asked directly) at the end;
	// SyncStandbyStreaming is true when the other node streams synchronously.
	Primaries            int       `json:"primaries"`
	SyncStandbyStreaming bool      `json:"sync_standby_streaming"`
	FinalEpoch           int64     `json:"final_epoch"`
	FinalPrimary         string    `json:"final_primary"`
	Web                  *Summary  `json:"web,omitempty"`
	WebOutsideWindow     int       `json:"web_failures_outside_rto_window,omitempty"`
	RoundResults         []DBRound `json:"round_results"`
	// Timeline is the ledger's writes second by second: attempted (rps),
	// acknowledged (ok), failed and unknown (errors), commit latency.
	Timeline []load.Second `json:"timeline"`
	// WebTimeline is the web load second by second (with web load only).
	WebTimeline []load.Second `json:"web_timeline,omitempty"`
}

// DBFailover runs the database failover drill against a live Multi-AZ
// region: ledger writers commit through the endpoint while a fault hits the
// primary (or the standby), round after round; each round measures the RTO,
// waits for the cluster to heal and checks the ledger on the new primary.
func DBFailover(ctx context.Context, c *api.Client, cfg DBFailoverConfig) (*DBFailoverReport, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.Fault == "" {
		cfg.Fault = api.DBFaultKill
	}
	switch cfg.Fault {
	case api.DBFaultKill, api.DBFaultFreeze, api.DBFaultStandbyLoss, api.DBFaultControllerRestart:
	default:
		return nil, fmt.Errorf("drill db-failover: fault %q: must be kill, freeze, standby-loss or controller-restart", cfg.Fault)
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 4
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = time.Second
	}
	if cfg.RTOTimeout <= 0 {
		cfg.RTOTimeout = 30 * time.Second
	}
	if cfg.HealTimeout <= 0 {
		cfg.HealTimeout = 120 * time.Second
	}
	if cfg.RTOMedianTarget <= 0 {
		cfg.RTOMedianTarget = 3 * time.Second
	}
	if cfg.RTOMaxTarget <= 0 {
		cfg.RTOMaxTarget = 5 * time.Second
	}
	if len(cfg.RestartDelays) == 0 {
		cfg.RestartDelays = []time.Duration{0, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second}
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 20
	}
	if cfg.Users <= 0 {
		cfg.Users = 10
	}
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}

	st, err := c.DBStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill db-failover: %w", err)
	}
	if !st.MultiAZ || st.Standby == "" {
		return nil, errors.New("drill db-failover: the database has no standby; set database.multi_az: true in the spec and `haven up` again")
	}
	region, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill db-failover: %w", err)
	}
	direct, err := directNodes(region)
	if err != nil {
		return nil, fmt.Errorf("drill db-failover: %w", err)
	}
	login, err := c.DBDrillLogin(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill db-failover: get a drill login: %w", err)
	}
	defer endDrillLogin(c, say)
	rep := &DBFailoverReport{Envelope: startEnvelope(ctx, c, "db-failover"), Fault: cfg.Fault, Durability: st.Durability, Rounds: cfg.Rounds, Writers: cfg.Writers}
	say("waiting for a healthy pair (one primary, one streaming synchronous standby)")
	if _, _, err := waitHealed(ctx, c, cfg.HealTimeout, nil); err != nil {
		return nil, fmt.Errorf("drill db-failover: the database is not healthy before the drill: %w", err)
	}

	epDSN := endpointDSN(login)
	table := "drill_ledger_" + strconv.FormatInt(time.Now().Unix(), 10)
	if err := ledger.Setup(ctx, epDSN, table); err != nil {
		return nil, fmt.Errorf("drill db-failover: %w (is the endpoint %s reachable?)", err, st.Endpoint)
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
	say("%d ledger writers committing through the endpoint %s as %s into %s.%s", cfg.Writers, st.Endpoint, login.User, login.Database, table)

	var web *webLoad
	if cfg.WithWebLoad {
		web, err = startWebLoad(ctx, c, cfg.Users, cfg.Rate, cfg.Workload, "drill db-failover --with-web-load", say)
		if err != nil {
			return nil, err
		}
		defer web.close()
	}

	var rtos []float64
	checked := 0
	for i := 1; i <= cfg.Rounds; i++ {
		round, err := runDBRound(ctx, c, cfg, direct, login, w, web, i, say)
		if err != nil {
			return nil, fmt.Errorf("drill db-failover round %d: %w", i, err)
		}
		// The ledger, every op so far, on the new primary.
		ops := w.Ops()
		after, _ := c.DBStatus(ctx)
		if addr := nodeAddr(after, after.Primary); addr != "" {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			lr, err := checkLedger(cctx, direct, login, after.Primary, addr, table, ops)
			cancel()
			if err != nil {
				round.Problems = append(round.Problems, "check ledger: "+err.Error())
			} else {
				round.Lost, round.FailInDB = lr.AcknowledgedLost, lr.FailPresent
				for _, b := range lr.Breaches {
					if len(round.Breaches) >= 20 {
						break
					}
					round.Breaches = append(round.Breaches, DBRow{ID: b.Op.ID, Writer: b.Op.Writer, Outcome: string(b.Op.Outcome),
						Start: b.Op.Start.UTC().Format(time.RFC3339Nano), End: b.Op.End.UTC().Format(time.RFC3339Nano), Err: b.Op.Err, Problem: b.Problem})
				}
			}
		}
		round.OK, round.Fail, round.Unknown = tally(ops[checked:])
		checked = len(ops)
		rep.AcknowledgedLost = max(rep.AcknowledgedLost, round.Lost) // cumulative check: the last round's count covers all
		rep.FailPresent = max(rep.FailPresent, round.FailInDB)
		if round.Recovered {
			rtos = append(rtos, round.RTOMS)
		}
		rep.HealMS = max(rep.HealMS, round.HealMS)
		printRound(say, round)
		rep.RoundResults = append(rep.RoundResults, *round)
	}
	stopped = true
	ops := w.Stop()
	rep.OK, rep.Fail, rep.Unknown = tally(ops)
	// Final check with the complete history and the final state.
	end, err := c.DBStatus(ctx)
	if err != nil {
		return nil, err
	}
	rep.FinalEpoch, rep.FinalPrimary = end.Epoch, end.Primary
	if addr := nodeAddr(end, end.Primary); addr != "" {
		if lr, err := checkLedger(ctx, direct, login, end.Primary, addr, table, ops); err == nil {
			rep.AcknowledgedLost, rep.FailPresent = lr.AcknowledgedLost, lr.FailPresent
		} else {
			rep.Reasons = append(rep.Reasons, "final ledger check: "+err.Error())
		}
	}
	rep.Primaries = countWritable(ctx, direct, login, end)
	rep.SyncStandbyStreaming = end.SyncState == "sync" && end.ReplicationState == "streaming"
	if web != nil {
		s := web.total()
		rep.Web = &s
		for _, r := range rep.RoundResults {
			if r.Web != nil {
				rep.WebOutsideWindow += r.Web.OutsideWindow
			}
		}
	}

	sort.Float64s(rtos)
	if len(rtos) > 0 {
		rep.RTOMS = RTOStats{Median: median(rtos), Max: rtos[len(rtos)-1], Min: rtos[0]}
	}
	for _, r := range rep.RoundResults {
		for _, p := range r.Problems {
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("round %d: %s", r.Round, p))
		}
	}
	if rep.AcknowledgedLost > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d acknowledged commits lost", rep.AcknowledgedLost))
	}
	if rep.FailPresent > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d failed writes present", rep.FailPresent))
	}
	if len(rtos) > 0 && (rep.RTOMS.Median > msf(cfg.RTOMedianTarget) || rep.RTOMS.Max > msf(cfg.RTOMaxTarget)) {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("RTO median %.0f ms / max %.0f ms exceeds the target %s / %s",
			rep.RTOMS.Median, rep.RTOMS.Max, cfg.RTOMedianTarget, cfg.RTOMaxTarget))
	}
	if rep.Primaries != 1 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d writable primaries at the end, want exactly 1", rep.Primaries))
	}
	if !rep.SyncStandbyStreaming {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("the standby is not streaming synchronously at the end (sync_state %s, state %s)", end.SyncState, end.ReplicationState))
	}
	if rep.WebOutsideWindow > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d web requests failed outside the RTO window", rep.WebOutsideWindow))
	}
	rep.Timeline = writesTimeline(ops, rep.StartedAt)
	if web != nil {
		rep.WebTimeline = web.timeline()
	}
	rep.finish()
	return rep, nil
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func printRound(say func(string, ...any), r *DBRound) {
	rto := "no commit within the timeout"
	if r.Recovered {
		rto = fmt.Sprintf("%.0f ms", r.RTOMS)
	}
	label := "RTO"
	if r.Fault == api.DBFaultStandbyLoss {
		label = "commits stalled"
	}
	extra := ""
	if r.RestartAt != "" {
		extra = fmt.Sprintf(", controller restarted %.0f ms after the kill (%s)", r.RestartMS, r.RestartAt)
	}
	if r.OldRefused != "" {
		extra += ", thawed old primary refused a write: " + r.OldRefused
	}
	say("round %d: %s %s (zone %s): %s %s, epoch %d→%d, primary %s, healed in %.1f s; ledger ok %d fail %d unknown %d, lost %d, fail present %d%s",
		r.Round, r.Fault, r.Node, r.Zone, label, rto, r.EpochFrom, r.EpochTo, r.Primary, r.HealMS/1000, r.OK, r.Fail, r.Unknown, r.Lost, r.FailInDB, extra)
	if r.Web != nil && r.Web.Failed == 0 {
		say("  web: %d requests through the load balancer, none failed", r.Web.Requests)
	} else if r.Web != nil {
		say("  web: %d requests, %d failed (first %+.0f ms, last %+.0f ms after the fault; %d outside the RTO window)",
			r.Web.Requests, r.Web.Failed, r.Web.FirstFailMS, r.Web.LastFailMS, r.Web.OutsideWindow)
	}
	for _, b := range r.Breaches {
		say("  BREACH %s: row %s (writer %d, %s, %s → %s) %s", b.Problem, b.ID, b.Writer, b.Outcome, b.Start, b.End, b.Err)
	}
	for _, p := range r.Problems {
		say("  problem: %s", p)
	}
}

// runDBRound injects one fault and measures RTO and heal time.
func runDBRound(ctx context.Context, c *api.Client, cfg DBFailoverConfig, direct nodes, login api.DBDrillLogin, w *ledger.Writers, web *webLoad, i int, say func(string, ...any)) (*DBRound, error) {
	round := &DBRound{Round: i, Fault: cfg.Fault}
	// Warm up: the writers commit steadily.
	warm := time.Now()
	if err := sleepCtx(ctx, cfg.Warmup); err != nil {
		return nil, err
	}
	if firstOKAfter(w.Ops(), warm).IsZero() {
		return nil, fmt.Errorf("no commit went through the endpoint during the %s warm-up; `haven db status` shows why", cfg.Warmup)
	}
	if web != nil {
		web.beginRound()
	}
	req := api.DBFaultRequest{Kind: cfg.Fault}
	if cfg.Fault == api.DBFaultControllerRestart {
		req.DelayMS = int(cfg.RestartDelays[(i-1)%len(cfg.RestartDelays)] / time.Millisecond)
	}
	res, err := c.DBFault(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("inject %s: %w", cfg.Fault, err)
	}
	round.Node, round.Zone, round.EpochFrom = res.Node, res.Zone, res.Epoch
	if cfg.Fault == api.DBFaultControllerRestart {
		round.RestartMS = float64(res.RestartedAt.Sub(res.At).Microseconds()) / 1000
		round.RestartAt = "after-persist"
		if res.RestartEpoch == res.Epoch {
			round.RestartAt = "before-persist"
		}
	}
	// RTO: the first acknowledged commit of a transaction begun after the fault.
	deadline := res.At.Add(cfg.RTOTimeout)
	for {
		if t := firstOKAfter(w.Ops(), res.At); !t.IsZero() {
			round.Recovered, round.RTOMS = true, float64(t.Sub(res.At).Microseconds())/1000
			break
		}
		if time.Now().After(deadline) {
			round.Problems = append(round.Problems, fmt.Sprintf("no commit through the endpoint within %s of the fault", cfg.RTOTimeout))
			break
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if cfg.Fault == api.DBFaultFreeze {
		// The frozen server was fenced; whatever is left of it is thawed now.
		if _, err := c.DBFault(ctx, api.DBFaultRequest{Kind: api.DBFaultThaw, Node: res.Node}); err != nil {
			round.Problems = append(round.Problems, "thaw: "+err.Error())
		}
	}
	// Healed means healed from this fault: the standby was promoted (a new
	// epoch), or, for standby-loss, the standby runs as a new process.
	changed := func(st api.DBStatus) bool {
		if cfg.Fault != api.DBFaultStandbyLoss {
			return st.Epoch > res.Epoch
		}
		for _, n := range st.Nodes {
			if n.Name == res.Node {
				return n.PID != 0 && n.PID != res.PID
			}
		}
		return false
	}
	after, _, err := waitHealed(ctx, c, cfg.HealTimeout-time.Since(res.At), changed)
	round.HealMS = float64(time.Since(res.At).Microseconds()) / 1000
	if err != nil {
		round.Problems = append(round.Problems, "heal: "+err.Error())
	} else {
		round.Healed = true
	}
	round.EpochTo, round.Primary = after.Epoch, after.Primary
	switch cfg.Fault {
	case api.DBFaultStandbyLoss:
		if after.Epoch != res.Epoch {
			round.Problems = append(round.Problems, fmt.Sprintf("losing the standby moved the primary (epoch %d→%d)", res.Epoch, after.Epoch))
		}
		if after.Durability == "preferred" && round.Recovered && round.RTOMS > 5000 {
			round.Problems = append(round.Problems, fmt.Sprintf("preferred mode: commits stalled %.0f ms, more than 5 s", round.RTOMS))
		}
	default:
		if round.Healed && (after.Primary == res.Node || after.Epoch != res.Epoch+1) {
			round.Problems = append(round.Problems, fmt.Sprintf("after the fault on %s the primary is %s at epoch %d (from %d); want the standby promoted once", res.Node, after.Primary, after.Epoch, res.Epoch))
		}
	}
	if cfg.Fault == api.DBFaultFreeze && round.Healed {
		round.OldRefused = writeRefused(ctx, direct, login, after, res.Node)
		if round.OldRefused == "" {
			round.Problems = append(round.Problems, fmt.Sprintf("the thawed old primary %s accepted a write", res.Node))
		}
	}
	if web != nil {
		rto := round.RTOMS
		if !round.Recovered {
			rto = msf(cfg.RTOTimeout)
		}
		round.Web = web.endRound(res.At, rto)
	}
	return round, nil
}

// firstOKAfter returns the end of the first acknowledged commit begun at or after t.
func firstOKAfter(ops []ledger.Op, t time.Time) time.Time {
	var first time.Time
	for _, op := range ops {
		if op.Outcome == ledger.OK && !op.Start.Before(t) && (first.IsZero() || op.End.Before(first)) {
			first = op.End
		}
	}
	return first
}

// healthy says whether the pair is whole: one primary answering, the other
// node a standby streaming synchronously and eligible, the endpoint on the
// current epoch.
func healthy(st api.DBStatus) bool {
	primaries, standbys := 0, 0
	for _, n := range st.Nodes {
		switch n.Role {
		case "primary":
			primaries++
		case "standby":
			standbys++
		}
	}
	return primaries == 1 && standbys == len(st.Nodes)-1 && st.StandbyEligible && st.SyncEnabled &&
		st.SyncState == "sync" && st.ReplicationState == "streaming" && st.EndpointEpoch == st.Epoch
}

// waitHealed polls the daemon until healthy; it returns the last status and how long it took.
func waitHealed(ctx context.Context, c *api.Client, timeout time.Duration, also func(api.DBStatus) bool) (api.DBStatus, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	var st api.DBStatus
	var err error
	for {
		st, err = c.DBStatus(ctx)
		if err == nil && healthy(st) && (also == nil || also(st)) {
			return st, time.Since(start), nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return st, time.Since(start), err
			}
			return st, time.Since(start), fmt.Errorf("not healed within %s: primary %s, standby %s (eligible %v, sync %s, replication %s), endpoint epoch %d of %d, last plan %q, last error %q",
				timeout.Round(time.Second), st.Primary, st.Standby, st.StandbyEligible, st.SyncState, st.ReplicationState, st.EndpointEpoch, st.Epoch, st.LastPlan, st.LastError)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return st, time.Since(start), err
		}
	}
}

// endpointDSN is the drill login's connection string through the endpoint
// (it holds the password: never print it).
func endpointDSN(l api.DBDrillLogin) string {
	return nodeDSN(l, l.Endpoint)
}

func nodeAddr(st api.DBStatus, name string) string {
	for _, n := range st.Nodes {
		if n.Name == name {
			return n.Address
		}
	}
	return ""
}

// nodeDSN is the drill login's connection string to addr (it holds the
// password: never print it).
func nodeDSN(l api.DBDrillLogin, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	dsn := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable connect_timeout=3", host, port, l.User, l.Database)
	if l.Password != "" {
		dsn += " password=" + l.Password
	}
	return dsn
}

// checkLedger compares ops with the ledger table on node (the primary),
// read directly.
func checkLedger(ctx context.Context, direct nodes, login api.DBDrillLogin, node, addr, table string, ops []ledger.Op) (ledger.Report, error) {
	present, err := ledger.ReadDial(ctx, nodeDSN(login, addr), table, direct.dial(node))
	if err != nil {
		return ledger.Report{}, err
	}
	return ledger.Compare(ops, present), nil
}

// countWritable asks every node directly whether it accepts writes.
func countWritable(ctx context.Context, direct nodes, login api.DBDrillLogin, st api.DBStatus) int {
	n := 0
	for _, node := range st.Nodes {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := direct.connect(cctx, login, node.Name, node.Address)
		if err == nil {
			var rec bool
			if conn.QueryRow(cctx, "SELECT pg_is_in_recovery()").Scan(&rec) == nil && !rec {
				n++
			}
			conn.Close(context.Background())
		}
		cancel()
	}
	return n
}

// writeRefused tries to write to node directly and returns how it was
// refused ("" when the write committed).
func writeRefused(ctx context.Context, direct nodes, login api.DBDrillLogin, st api.DBStatus, node string) string {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := direct.connect(cctx, login, node, nodeAddr(st, node))
	if err != nil {
		return "connection refused: " + err.Error()
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(cctx, "CREATE TABLE drill_split_brain_probe (v int); DROP TABLE drill_split_brain_probe")
	if err == nil {
		return ""
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code + " " + pe.Message
	}
	return err.Error()
}

// endDrillLogin clears the drill login's password once the drill is done
// with it (deferred before the table drop, so it runs after it).
func endDrillLogin(c *api.Client, say func(string, ...any)) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.DBDrillLogout(ctx); err != nil {
		say("warning: the drill login still works: %v", err)
	}
}

func dropTable(dsn, table string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
}

// tally counts the ledger's operations by outcome.
func tally(ops []ledger.Op) (ok, fail, unknown int) {
	for _, op := range ops {
		switch op.Outcome {
		case ledger.OK:
			ok++
		case ledger.Fail:
			fail++
		case ledger.Unknown:
			unknown++
		}
	}
	return ok, fail, unknown
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// webLoad drives logged-in journeys through the load balancer, with one
// recorder per round so every round's failures can be placed in time.
type webLoad struct {
	site  *Site
	users []*User
	rate  int
	ctx   context.Context

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	rec    *Recorder
	all    Summary
	// start and tl are the drill-wide timeline every round adds to.
	start time.Time
	tl    []load.Second
}

// timeline is the web load second by second since the load was set up,
// every round's in place (seconds between rounds are zero).
func (wl *webLoad) timeline() []load.Second {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	return slices.Clone(wl.tl)
}

func startWebLoad(ctx context.Context, c *api.Client, nUsers, rate int, w Workload, drill string, say func(string, ...any)) (*webLoad, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	say("web load: logging in %d users of the %s workload through %s", nUsers, workloadName(w), st.Endpoints.HTTPS)
	site, users, err := OpenSite(ctx, st, nUsers, w)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", drill, err)
	}
	wl := &webLoad{site: site, users: users, rate: rate, ctx: ctx, start: time.Now()}
	wl.all.Errors = map[string]int{}
	say("web load: %d journey steps/s through the load balancer during every round", rate)
	return wl, nil
}

func (wl *webLoad) beginRound() {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	lctx, cancel := context.WithCancel(wl.ctx)
	wl.cancel, wl.done, wl.rec = cancel, make(chan struct{}), NewRecorder()
	done, rec := wl.done, wl.rec
	go func() { RunLoad(lctx, wl.site, wl.users, wl.rate, rec); close(done) }()
}

// endRound stops the round's load and places its failures relative to the fault.
func (wl *webLoad) endRound(fault time.Time, rtoMS float64) *WebWindow {
	out, _ := wl.endRoundSummary(fault, rtoMS)
	return out
}

// endRoundSummary is endRound that also returns the round's summary.
func (wl *webLoad) endRoundSummary(fault time.Time, rtoMS float64) (*WebWindow, Summary) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	if wl.cancel == nil {
		return nil, Summary{}
	}
	wl.cancel()
	<-wl.done
	wl.cancel = nil
	s := wl.rec.Summary()
	wl.tl = mergeTimeline(wl.tl, wl.start, wl.rec)
	out := &WebWindow{Requests: s.Requests, Failed: s.Failed, Errors: s.Errors}
	for i, f := range s.Failures {
		rel := float64(f.At.Sub(fault).Microseconds()) / 1000
		if i == 0 || rel < out.FirstFailMS {
			out.FirstFailMS = rel
		}
		if i == 0 || rel > out.LastFailMS {
			out.LastFailMS = rel
		}
		if rel < 0 || rel > rtoMS+1000 {
			out.OutsideWindow++
		}
	}
	wl.all.Requests += s.Requests
	wl.all.Failed += s.Failed
	for k, v := range s.Errors {
		wl.all.Errors[k] += v
	}
	// Percentiles over the whole run are those of the worst round.
	wl.all.MaxMS = max(wl.all.MaxMS, s.MaxMS)
	wl.all.P99MS = max(wl.all.P99MS, s.P99MS)
	wl.all.P50MS = max(wl.all.P50MS, s.P50MS)
	return out, s
}

func (wl *webLoad) total() Summary {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	return wl.all
}

func (wl *webLoad) close() {
	wl.mu.Lock()
	c := wl.cancel
	wl.mu.Unlock()
	if c != nil {
		c()
		<-wl.done
	}
	wl.site.Close()
}
