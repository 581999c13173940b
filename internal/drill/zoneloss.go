package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/pgha/ledger"
)

// Zone-loss faults for ZoneLossConfig.Fault.
const (
	ZoneFaultPower     = "power"
	ZoneFaultPartition = "partition"
)

// ZoneLossConfig configures the zone-loss drill.
type ZoneLossConfig struct {
	// Zone is the zone to fail: a zone name, or "primary" (default) for the
	// zone of the database primary at the start of each round.
	Zone string
	// Fault is power (default: every process of the zone is SIGKILLed) or
	// partition (the zone's links drop every packet).
	Fault string
	// Rounds is how many times a zone is failed and restored. Default 1.
	Rounds int
	// Writers is how many ledger writers commit through the database
	// endpoint. Default 4.
	Writers int
	// Interval is the pause between one writer's commits. Default 10ms.
	Interval time.Duration
	// Warmup is how long load and writers run before each fault. Default 2s.
	Warmup time.Duration
	// Hold is how long the zone stays failed once the database has failed
	// over and the fleet is back at desired capacity in the other zones.
	// Default 3s.
	Hold time.Duration
	// Rate, Users and Workload shape the logged-in web load through the
	// load balancer (defaults 20/s and 10 users; Workload is required).
	Rate     int
	Users    int
	Workload Workload
	// RTOTimeout bounds the wait for the first commit after the fault.
	// Default 30s.
	RTOTimeout time.Duration
	// RecoverTimeout bounds the wait for the database's failover and the
	// fleet's recovery in the surviving zones. Default 120s.
	RecoverTimeout time.Duration
	// HealTimeout bounds, after the restore, the wait for balanced zones and
	// a streaming synchronous standby. Default 240s.
	HealTimeout time.Duration
	// WebWindow is the longest web requests may fail after the fault: the
	// last failure must end within it. Default 5s (the goal is 3s).
	WebWindow time.Duration
	// RTOMedianTarget and RTOMaxTarget bound the write RTO, as in the
	// db-failover drill. Default 3s and 5s.
	RTOMedianTarget, RTOMaxTarget time.Duration
	// Progress receives human-readable progress lines (may be nil).
	Progress io.Writer
}

// ZoneRound is one round of the zone-loss drill.
type ZoneRound struct {
	Round int    `json:"round"`
	Fault string `json:"fault"`
	Zone  string `json:"zone"`
	// PrimaryBefore and PrimaryAfter are the database primary before the
	// fault and once the drill has healed.
	PrimaryBefore string `json:"primary_before"`
	PrimaryAfter  string `json:"primary_after"`
	EpochFrom     int64  `json:"epoch_from"`
	EpochTo       int64  `json:"epoch_to"`
	// WriteRTOMS is fault → the first acknowledged commit of a transaction
	// begun after it, through the endpoint.
	WriteRTOMS float64 `json:"write_rto_ms"`
	Recovered  bool    `json:"recovered"`
	// FailoverMS is fault → the endpoint forwarding to a primary of a new
	// epoch outside the zone.
	FailoverMS float64 `json:"failover_ms"`
	// Web is what logged-in users saw from the warm-up to the heal;
	// ErrorFreeAfterMS is fault → the end of the last failed request (0:
	// none failed).
	Web              *WebWindow `json:"web,omitempty"`
	ErrorFreeAfterMS float64    `json:"error_free_after_ms"`
	// FleetRecoveredMS is fault → desired capacity in service and healthy
	// in the surviving zones; InSurvivingZones is how many were.
	FleetRecoveredMS float64 `json:"fleet_recovered_ms"`
	FleetRecovered   bool    `json:"fleet_recovered"`
	InSurvivingZones int     `json:"in_surviving_zones"`
	// RestoreAtMS is fault → the restore.
	RestoreAtMS float64 `json:"restore_at_ms"`
	// RebalancedMS is restore → desired capacity in service, healthy and
	// balanced across every zone; ZoneCounts is the spread then.
	RebalancedMS float64        `json:"rebalanced_ms"`
	Rebalanced   bool           `json:"rebalanced"`
	ZoneCounts   map[string]int `json:"zone_counts,omitempty"`
	// Rejoin is how the old primary came back as a standby: rejoin
	// (restart or pg_rewind) or rebuild (a fresh base backup).
	Rejoin string `json:"old_primary_rejoin,omitempty"`
	// HealedMS is restore → one primary and a streaming, synchronous,
	// eligible standby.
	HealedMS float64 `json:"sync_standby_ms"`
	Healed   bool    `json:"healed"`
	// The ledger through the endpoint, checked on the primary.
	OK       int     `json:"ok"`
	Fail     int     `json:"fail"`
	Unknown  int     `json:"unknown"`
	Lost     int     `json:"acknowledged_lost"`
	FailInDB int     `json:"fail_present"`
	Breaches []DBRow `json:"breaches,omitempty"`
	// SplitBrain is the writer placed inside the failed zone (partition).
	SplitBrain *SplitBrain `json:"split_brain,omitempty"`
	Problems   []string    `json:"problems,omitempty"`
}

// SplitBrain is what the writer inside the partitioned zone saw. It runs
// in the old primary's own namespace and writes to the old primary's own
// address: the one client a partition leaves connected to it, the best
// placed to see a split brain. The old primary must acknowledge no write
// after the new epoch (OKAfterEpoch 0), and every write it did acknowledge
// must be on the new primary (Lost 0).
type SplitBrain struct {
	OK           int `json:"ok"`
	Fail         int `json:"fail"`
	Unknown      int `json:"unknown"`
	OKAfterFault int `json:"ok_after_fault"`
	OKAfterEpoch int `json:"ok_after_new_epoch"`
	Lost         int `json:"acknowledged_lost"`
}

// ZoneLossReport is the drill's result.
type ZoneLossReport struct {
	Envelope
	Fault  string `json:"fault"`
	Rounds int    `json:"rounds"`
	// Desired is the fleet's desired capacity.
	Desired  int      `json:"desired"`
	WriteRTO RTOStats `json:"write_rto_ms"`
	// ErrorFreeAfterMSMax is the longest any round's users saw errors.
	ErrorFreeAfterMSMax float64  `json:"error_free_after_ms_max"`
	FleetRecoveredMSMax float64  `json:"fleet_recovered_ms_max"`
	RebalancedMSMax     float64  `json:"rebalanced_ms_max"`
	HealedMSMax         float64  `json:"sync_standby_ms_max"`
	Web                 *Summary `json:"web,omitempty"`
	OK                  int      `json:"ok"`
	Fail                int      `json:"fail"`
	Unknown             int      `json:"unknown"`
	AcknowledgedLost    int      `json:"acknowledged_lost"`
	FailPresent         int      `json:"fail_present"`
	SplitBrainAcks      int      `json:"split_brain_acks"`
	// Primaries counts the nodes that accept writes (asked directly) at
	// the end; SyncStandbyStreaming says the other streams synchronously.
	Primaries            int         `json:"primaries"`
	SyncStandbyStreaming bool        `json:"sync_standby_streaming"`
	FinalPrimary         string      `json:"final_primary"`
	FinalEpoch           int64       `json:"final_epoch"`
	RoundResults         []ZoneRound `json:"round_results"`
	// Timeline is the web load second by second (db-failover: absent
	// without web load).
	Timeline []load.Second `json:"timeline,omitempty"`
}

// ZoneLoss runs the zone-loss drill against a live Multi-AZ region:
// logged-in web load through the load balancer and ledger writers through
// the database endpoint, while the zone holding the database primary loses
// its power or is cut off; it measures what users saw, the write RTO, the
// fleet's recovery in the surviving zone, and, once the zone is restored,
// the rebalance, the old primary's rejoin as a standby and the return of
// synchronous replication. Every fault goes through the daemon's fault API
// (POST /v1/faults).
func ZoneLoss(ctx context.Context, c *api.Client, cfg ZoneLossConfig) (*ZoneLossReport, error) {
	cfg.setDefaults()
	switch cfg.Fault {
	case ZoneFaultPower, ZoneFaultPartition:
	default:
		return nil, fmt.Errorf("drill zone-loss: fault %q: must be power or partition", cfg.Fault)
	}
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill zone-loss: %w", err)
	}
	if st.Phase != api.PhaseReady {
		return nil, fmt.Errorf("drill zone-loss: region is %s, not ready; wait for `haven status` to say ready", st.Phase)
	}
	if len(st.Zones) < 2 {
		return nil, errors.New("drill zone-loss: the region has one zone; losing it loses everything (set zones: [a, b])")
	}
	if cfg.Fault == ZoneFaultPartition && st.Network.Mode != "vpc" {
		return nil, fmt.Errorf("drill zone-loss --fault partition: the region has no VPC (%s); a partition needs network namespaces, which need root", st.Network.Why)
	}
	direct, err := directNodes(st)
	if err != nil {
		return nil, fmt.Errorf("drill zone-loss: %w", err)
	}
	db, err := c.DBStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill zone-loss: %w", err)
	}
	if !db.MultiAZ || db.Standby == "" {
		return nil, errors.New("drill zone-loss: the database has no standby in another zone; set database.multi_az: true and `haven up` again")
	}
	login, err := c.DBDrillLogin(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill zone-loss: get a drill login: %w", err)
	}
	defer endDrillLogin(c, say)
	rep := &ZoneLossReport{Envelope: startEnvelope(ctx, c, "zone-loss"), Fault: cfg.Fault, Rounds: cfg.Rounds, Desired: st.Fleet.Desired}
	say("waiting for a healthy region: a synchronous standby, %d instances healthy and balanced", st.Fleet.Desired)
	if _, _, err := waitHealed(ctx, c, cfg.HealTimeout, nil); err != nil {
		return nil, fmt.Errorf("drill zone-loss: the database is not healthy before the drill: %w", err)
	}
	if _, _, err := waitFleet(ctx, c, cfg.HealTimeout, balancedFleet); err != nil {
		return nil, fmt.Errorf("drill zone-loss: the fleet is not healthy and balanced before the drill: %w", err)
	}

	epDSN := endpointDSN(login)
	stamp := strconv.FormatInt(time.Now().Unix(), 10)
	table := "drill_zone_ledger_" + stamp
	if err := ledger.Setup(ctx, epDSN, table); err != nil {
		return nil, fmt.Errorf("drill zone-loss: %w (is the endpoint %s reachable?)", err, db.Endpoint)
	}
	defer dropTable(epDSN, table)
	// The writer inside the zone gets a table per round: each round's
	// writers number their rows from 1 again.
	inZoneTables := map[string][]ledger.Op{}
	defer func() {
		for t := range inZoneTables {
			dropTable(epDSN, t)
		}
	}()
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
	web, err := startWebLoad(ctx, c, cfg.Users, cfg.Rate, cfg.Workload, "drill zone-loss", say)
	if err != nil {
		return nil, err
	}
	defer web.close()

	var rtos []float64
	for i := 1; i <= cfg.Rounds; i++ {
		inZoneTable := fmt.Sprintf("drill_zone_inzone_%s_r%d", stamp, i)
		if err := ledger.Setup(ctx, epDSN, inZoneTable); err != nil {
			return nil, fmt.Errorf("drill zone-loss: %w", err)
		}
		inZoneTables[inZoneTable] = nil
		round, ops, err := runZoneRound(ctx, c, cfg, direct, login, w, web, inZoneTable, i, say)
		if err != nil {
			return nil, fmt.Errorf("drill zone-loss round %d: %w", i, err)
		}
		inZoneTables[inZoneTable] = ops
		if round.Recovered {
			rtos = append(rtos, round.WriteRTOMS)
		}
		rep.ErrorFreeAfterMSMax = max(rep.ErrorFreeAfterMSMax, round.ErrorFreeAfterMS)
		rep.FleetRecoveredMSMax = max(rep.FleetRecoveredMSMax, round.FleetRecoveredMS)
		rep.RebalancedMSMax = max(rep.RebalancedMSMax, round.RebalancedMS)
		rep.HealedMSMax = max(rep.HealedMSMax, round.HealedMS)
		if round.SplitBrain != nil {
			rep.SplitBrainAcks += round.SplitBrain.OKAfterEpoch
		}
		printZoneRound(say, round)
		rep.RoundResults = append(rep.RoundResults, *round)
	}
	stopped = true
	ops := w.Stop()
	rep.OK, rep.Fail, rep.Unknown = tally(ops)
	end, err := c.DBStatus(ctx)
	if err != nil {
		return nil, err
	}
	rep.FinalPrimary, rep.FinalEpoch = end.Primary, end.Epoch
	// The whole history, on the final primary, read directly.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	lr, err := checkLedger(cctx, direct, login, end.Primary, nodeAddr(end, end.Primary), table, ops)
	cancel()
	if err != nil {
		rep.Reasons = append(rep.Reasons, "final ledger check: "+err.Error())
	} else {
		rep.AcknowledgedLost, rep.FailPresent = lr.AcknowledgedLost, lr.FailPresent
	}
	for t, ops := range inZoneTables {
		if len(ops) == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		lr, err := checkLedger(cctx, direct, login, end.Primary, nodeAddr(end, end.Primary), t, ops)
		cancel()
		if err != nil {
			rep.Reasons = append(rep.Reasons, "final check of the in-zone writer: "+err.Error())
		} else if lr.AcknowledgedLost > 0 {
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("the writer inside the partitioned zone lost %d acknowledged writes (%s)", lr.AcknowledgedLost, t))
		}
	}
	rep.Primaries = countWritable(ctx, direct, login, end)
	rep.SyncStandbyStreaming = end.SyncState == "sync" && end.ReplicationState == "streaming"
	s := web.total()
	rep.Web = &s

	sort.Float64s(rtos)
	if len(rtos) > 0 {
		rep.WriteRTO = RTOStats{Median: median(rtos), Max: rtos[len(rtos)-1], Min: rtos[0]}
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
	if rep.SplitBrainAcks > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("split brain: the old primary acknowledged %d writes after the new epoch", rep.SplitBrainAcks))
	}
	if len(rtos) > 0 && (rep.WriteRTO.Median > msf(cfg.RTOMedianTarget) || rep.WriteRTO.Max > msf(cfg.RTOMaxTarget)) {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("write RTO median %.0f ms / max %.0f ms exceeds the target %s / %s",
			rep.WriteRTO.Median, rep.WriteRTO.Max, cfg.RTOMedianTarget, cfg.RTOMaxTarget))
	}
	if rep.Primaries != 1 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d writable primaries at the end, want exactly 1", rep.Primaries))
	}
	if !rep.SyncStandbyStreaming {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("the standby is not streaming synchronously at the end (sync_state %s, state %s)", end.SyncState, end.ReplicationState))
	}
	rep.Timeline = web.timeline()
	rep.finish()
	return rep, nil
}

func (cfg *ZoneLossConfig) setDefaults() {
	if cfg.Zone == "" {
		cfg.Zone = "primary"
	}
	if cfg.Fault == "" {
		cfg.Fault = ZoneFaultPower
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 1
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 4
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 2 * time.Second
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 3 * time.Second
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 20
	}
	if cfg.Users <= 0 {
		cfg.Users = 10
	}
	if cfg.RTOTimeout <= 0 {
		cfg.RTOTimeout = 30 * time.Second
	}
	if cfg.RecoverTimeout <= 0 {
		cfg.RecoverTimeout = 120 * time.Second
	}
	if cfg.HealTimeout <= 0 {
		cfg.HealTimeout = 240 * time.Second
	}
	if cfg.WebWindow <= 0 {
		cfg.WebWindow = 5 * time.Second
	}
	if cfg.RTOMedianTarget <= 0 {
		cfg.RTOMedianTarget = 3 * time.Second
	}
	if cfg.RTOMaxTarget <= 0 {
		cfg.RTOMaxTarget = 5 * time.Second
	}
}

// runZoneRound fails a zone, measures, restores it and measures again. It
// returns the in-zone writer's history (partition) for the final check.
func runZoneRound(ctx context.Context, c *api.Client, cfg ZoneLossConfig, direct nodes, login api.DBDrillLogin,
	w *ledger.Writers, web *webLoad, inZoneTable string, i int, say func(string, ...any)) (*ZoneRound, []ledger.Op, error) {
	round := &ZoneRound{Round: i, Fault: cfg.Fault}
	before, err := c.DBStatus(ctx)
	if err != nil {
		return nil, nil, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, nil, err
	}
	zone := cfg.Zone
	if zone == "primary" {
		zone = before.PrimaryZone
	}
	round.Zone, round.PrimaryBefore, round.EpochFrom = zone, before.Primary, before.Epoch
	desired := st.Fleet.Desired

	// The writer inside the zone: in the old primary's namespace, to its
	// own address (a partition leaves it connected to the old primary).
	var inZone *ledger.Writers
	if cfg.Fault == ZoneFaultPartition && before.PrimaryZone == zone {
		inZone, err = ledger.Start(ctx, ledger.Config{DSN: nodeDSN(login, nodeAddr(before, before.Primary)), Dial: direct.dial(before.Primary),
			Writers: 2, Table: inZoneTable, Interval: cfg.Interval, OpTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return nil, nil, err
		}
	}
	stopInZone := func() []ledger.Op {
		if inZone == nil {
			return nil
		}
		ops := inZone.Stop()
		inZone = nil
		return ops
	}
	defer stopInZone()

	web.beginRound()
	warm := time.Now()
	if err := sleepCtx(ctx, cfg.Warmup); err != nil {
		return nil, nil, err
	}
	if firstOKAfter(w.Ops(), warm).IsZero() {
		return nil, nil, fmt.Errorf("no commit went through the endpoint during the %s warm-up; `haven db status` shows why", cfg.Warmup)
	}
	if inZone != nil && firstOKAfter(inZone.Ops(), warm).IsZero() {
		return nil, nil, fmt.Errorf("the writer inside zone %s committed nothing to %s during the warm-up", zone, before.Primary)
	}
	checked := len(w.Ops())

	scenario := map[string]string{ZoneFaultPower: failpoint.ZonePower, ZoneFaultPartition: failpoint.ZonePartition}[cfg.Fault]
	res, err := c.Fault(ctx, api.FaultRequest{Scenario: scenario, Target: zone})
	if err != nil {
		return nil, nil, fmt.Errorf("inject %s on zone %s: %w", scenario, zone, err)
	}
	fault := res.At
	say("round %d: zone %s %s at %s (primary %s, epoch %d)", i, zone, cfg.Fault, fault.Format("15:04:05.000"), before.Primary, before.Epoch)
	restored := false
	defer func() {
		if !restored { // whatever failed, leave the zone restored
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = c.Fault(rctx, api.FaultRequest{Scenario: failpoint.ZoneRestore, Target: zone})
		}
	}()

	// Until the database has failed over, writes have resumed and the
	// fleet is back at desired capacity in the other zones.
	deadline := fault.Add(cfg.RecoverTimeout)
	var failedOver, fleetBack bool
	for !(round.Recovered && failedOver && fleetBack) {
		now := time.Now()
		if !round.Recovered {
			if t := firstOKAfter(w.Ops(), fault); !t.IsZero() {
				round.Recovered, round.WriteRTOMS = true, msf(t.Sub(fault))
			} else if now.After(fault.Add(cfg.RTOTimeout)) {
				round.Problems = append(round.Problems, fmt.Sprintf("no commit through the endpoint within %s of the fault", cfg.RTOTimeout))
				round.Recovered = true // stop looking; the problem is recorded
				round.WriteRTOMS = -1
			}
		}
		if !failedOver {
			if d, err := c.DBStatus(ctx); err == nil && d.Epoch > before.Epoch && d.EndpointEpoch == d.Epoch && d.PrimaryZone != zone {
				failedOver, round.FailoverMS = true, msf(now.Sub(fault))
			}
		}
		if !fleetBack {
			if s, err := c.Status(ctx); err == nil {
				if n := healthyOutside(s, zone); n >= desired {
					fleetBack, round.FleetRecovered, round.FleetRecoveredMS, round.InSurvivingZones = true, true, msf(now.Sub(fault)), n
				}
			}
		}
		if now.After(deadline) {
			if !failedOver {
				round.Problems = append(round.Problems, fmt.Sprintf("the database did not fail over out of zone %s within %s", zone, cfg.RecoverTimeout))
			}
			if !fleetBack {
				s, _ := c.Status(ctx)
				round.Problems = append(round.Problems, fmt.Sprintf("the fleet was not back at desired capacity %d outside zone %s within %s (%d healthy there)",
					desired, zone, cfg.RecoverTimeout, healthyOutside(s, zone)))
			}
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, nil, err
		}
	}
	if round.WriteRTOMS < 0 {
		round.Recovered, round.WriteRTOMS = false, 0
	}
	if err := sleepCtx(ctx, cfg.Hold); err != nil {
		return nil, nil, err
	}

	// The split-brain check: when did the new epoch begin, and did the old
	// primary acknowledge anything after?
	inZoneOps := stopInZone()
	if inZoneOps != nil {
		sb := &SplitBrain{}
		sb.OK, sb.Fail, sb.Unknown = tally(inZoneOps)
		epochAt := failoverTime(ctx, c, fault, before.Primary)
		for _, op := range inZoneOps {
			if op.Outcome != ledger.OK {
				continue
			}
			if op.End.After(fault) {
				sb.OKAfterFault++
			}
			if !epochAt.IsZero() && op.End.After(epochAt) {
				sb.OKAfterEpoch++
			}
		}
		if epochAt.IsZero() {
			round.Problems = append(round.Problems, "the failover's completion is not in the event log: the split-brain check has no epoch time")
		}
		round.SplitBrain = sb
	}

	// Restore, and heal.
	rres, err := c.Fault(ctx, api.FaultRequest{Scenario: failpoint.ZoneRestore, Target: zone})
	if err != nil {
		return nil, nil, fmt.Errorf("restore zone %s: %w", zone, err)
	}
	restored = true
	restore := rres.At
	round.RestoreAtMS = msf(restore.Sub(fault))
	say("round %d: zone %s restored %.1f s after the fault", i, zone, round.RestoreAtMS/1000)
	// Both at once, each timed from the restore: the old primary back as a
	// synchronous standby, and the fleet balanced across every zone.
	var after api.DBStatus
	var fs api.Status
	for {
		now := time.Now()
		if !round.Healed {
			if d, err := c.DBStatus(ctx); err == nil {
				after = d
				if healthy(d) && d.Standby == before.Primary {
					round.Healed, round.HealedMS = true, msf(now.Sub(restore))
				}
			}
		}
		if !round.Rebalanced {
			if s, err := c.Status(ctx); err == nil {
				fs = s
				if balancedFleet(s) {
					round.Rebalanced, round.RebalancedMS = true, msf(now.Sub(restore))
				}
			}
		}
		if round.Healed && round.Rebalanced {
			break
		}
		if now.After(restore.Add(cfg.HealTimeout)) {
			if !round.Healed {
				round.Problems = append(round.Problems, fmt.Sprintf("heal: within %s of the restore, no streaming synchronous standby %s: primary %s, standby %s (eligible %v, sync %s, replication %s), last error %q",
					cfg.HealTimeout, before.Primary, after.Primary, after.Standby, after.StandbyEligible, after.SyncState, after.ReplicationState, after.LastError))
			}
			if !round.Rebalanced {
				round.Problems = append(round.Problems, fmt.Sprintf("rebalance: within %s of the restore, %d instances (desired %d), per zone %v", cfg.HealTimeout, len(fs.Instances), fs.Fleet.Desired, zoneCounts(fs)))
			}
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, nil, err
		}
	}
	round.ZoneCounts = zoneCounts(fs)
	round.EpochTo, round.PrimaryAfter = after.Epoch, after.Primary
	if round.Healed && (after.Epoch != before.Epoch+1 || after.PrimaryZone == zone) {
		round.Problems = append(round.Problems, fmt.Sprintf("after losing zone %s the primary is %s at epoch %d (from %d); want the standby promoted once", zone, after.Primary, after.Epoch, before.Epoch))
	}
	round.Rejoin = rejoinKind(ctx, c, restore, before.Primary)

	// Web: every failure of the round must end within the window after
	// the fault (none before it, none during the restore).
	win, s := web.endRoundSummary(fault, msf(cfg.WebWindow))
	round.Web = win
	if s.Failed > 0 {
		round.ErrorFreeAfterMS = msf(s.LastFail.Sub(fault))
		if s.FirstFail.Before(fault) {
			round.Problems = append(round.Problems, fmt.Sprintf("web requests failed %.0f ms before the fault", msf(fault.Sub(s.FirstFail))))
		}
		if s.LastFail.After(fault.Add(cfg.WebWindow)) {
			round.Problems = append(round.Problems, fmt.Sprintf("web requests failed until %.1f s after the fault, beyond the %s window", round.ErrorFreeAfterMS/1000, cfg.WebWindow))
		}
	}

	// The ledger so far, on the primary.
	ops := w.Ops()
	if addr := nodeAddr(after, after.Primary); addr != "" {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		lr, err := checkLedger(cctx, direct, login, after.Primary, addr, w.Table(), ops)
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
		if round.SplitBrain != nil {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			lr, err := checkLedger(cctx, direct, login, after.Primary, addr, inZoneTable, inZoneOps)
			cancel()
			if err != nil {
				round.Problems = append(round.Problems, "check the in-zone writer's ledger: "+err.Error())
			} else {
				round.SplitBrain.Lost = lr.AcknowledgedLost
			}
		}
	}
	round.OK, round.Fail, round.Unknown = tally(ops[checked:])
	if round.SplitBrain != nil && (round.SplitBrain.OKAfterEpoch > 0 || round.SplitBrain.Lost > 0) {
		round.Problems = append(round.Problems, fmt.Sprintf("split brain: the old primary acknowledged %d writes after the new epoch, %d of its acknowledged writes are not on the new primary",
			round.SplitBrain.OKAfterEpoch, round.SplitBrain.Lost))
	}
	if !round.Recovered {
		round.Problems = append(round.Problems, "writes did not resume")
	}
	return round, inZoneOps, nil
}

// healthyOutside counts the in-service, healthy instances outside zone.
func healthyOutside(s api.Status, zone string) int {
	n := 0
	for _, in := range s.Instances {
		if in.Zone != zone && in.State == "in-service" && in.Health == "healthy" {
			n++
		}
	}
	return n
}

// zoneCounts counts the in-service, healthy instances per zone.
func zoneCounts(s api.Status) map[string]int {
	m := map[string]int{}
	for _, z := range s.Zones {
		m[z.Name] = 0
	}
	for _, in := range s.Instances {
		if in.State == "in-service" && in.Health == "healthy" {
			m[in.Zone]++
		}
	}
	return m
}

// balancedFleet: exactly desired instances, all in service and healthy,
// no other instance (pending, draining) left, zones within one of each
// other, and no zone impaired.
func balancedFleet(s api.Status) bool {
	if len(s.Instances) != s.Fleet.Desired {
		return false
	}
	for _, in := range s.Instances {
		if in.State != "in-service" || in.Health != "healthy" {
			return false
		}
	}
	for _, z := range s.Zones {
		if z.Impaired || z.Fault != "" {
			return false
		}
	}
	lo, hi := -1, 0
	for _, n := range zoneCounts(s) {
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
	}
	return hi-lo <= 1
}

// waitFleet polls the status until ok; it returns the last status and how long it took.
func waitFleet(ctx context.Context, c *api.Client, timeout time.Duration, ok func(api.Status) bool) (api.Status, time.Duration, error) {
	start := time.Now()
	for {
		st, err := c.Status(ctx)
		if err == nil && ok(st) {
			return st, time.Since(start), nil
		}
		if time.Since(start) > timeout {
			if err != nil {
				return st, time.Since(start), err
			}
			return st, time.Since(start), fmt.Errorf("not within %s: %d instances (desired %d), per zone %v", timeout.Round(time.Second), len(st.Instances), st.Fleet.Desired, zoneCounts(st))
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return st, time.Since(start), err
		}
	}
}

// failoverTime is when the failover away from oldPrimary completed (the
// endpoint forwards to the new epoch's primary), from the event log.
func failoverTime(ctx context.Context, c *api.Client, since time.Time, oldPrimary string) time.Time {
	evs, err := c.Events(ctx, api.EventQuery{Since: since.Add(-time.Second), Component: "db"})
	if err != nil {
		return time.Time{}
	}
	for _, e := range evs {
		if e.Kind == "failover-completed" && fmt.Sprint(e.Attrs["old_primary"]) == oldPrimary {
			return e.Time
		}
	}
	return time.Time{}
}

// rejoinKind is how node came back after since: "rejoin" (restart or
// pg_rewind) or "rebuild" (a fresh base backup), from the event log.
func rejoinKind(ctx context.Context, c *api.Client, since time.Time, node string) string {
	evs, err := c.Events(ctx, api.EventQuery{Since: since, Component: "db"})
	if err != nil {
		return ""
	}
	kind := ""
	for _, e := range evs {
		if e.Subject == node && (e.Kind == "rejoin" || e.Kind == "rebuild") {
			kind = e.Kind
		}
	}
	return kind
}

func printZoneRound(say func(string, ...any), r *ZoneRound) {
	rto := "writes did not resume"
	if r.Recovered {
		rto = fmt.Sprintf("write RTO %.0f ms", r.WriteRTOMS)
	}
	say("round %d: %s zone %s: %s, failover %.1f s (epoch %d→%d, %s → %s); fleet back at desired outside the zone after %.1f s (%d there); restored at %.1f s, rebalanced %.1f s later %v, old primary %s, synchronous standby %.1f s after the restore",
		r.Round, r.Fault, r.Zone, rto, r.FailoverMS/1000, r.EpochFrom, r.EpochTo, r.PrimaryBefore, r.PrimaryAfter,
		r.FleetRecoveredMS/1000, r.InSurvivingZones, r.RestoreAtMS/1000, r.RebalancedMS/1000, r.ZoneCounts, r.Rejoin, r.HealedMS/1000)
	if r.Web != nil {
		say("  web: %d requests, %d failed, error-free %.1f s after the fault", r.Web.Requests, r.Web.Failed, r.ErrorFreeAfterMS/1000)
	}
	say("  ledger: ok %d fail %d unknown %d, acknowledged lost %d, fail present %d", r.OK, r.Fail, r.Unknown, r.Lost, r.FailInDB)
	if sb := r.SplitBrain; sb != nil {
		say("  writer inside the zone (on the old primary): ok %d (%d after the fault, %d after the new epoch), fail %d, unknown %d, lost %d",
			sb.OK, sb.OKAfterFault, sb.OKAfterEpoch, sb.Fail, sb.Unknown, sb.Lost)
	}
	for _, b := range r.Breaches {
		say("  BREACH %s: row %s (writer %d, %s, %s → %s) %s", b.Problem, b.ID, b.Writer, b.Outcome, b.Start, b.End, b.Err)
	}
	for _, p := range r.Problems {
		say("  problem: %s", p)
	}
}
