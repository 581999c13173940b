package drill

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/pgha/ledger"
)

// PITRConfig configures the point-in-time restore drill.
type PITRConfig struct {
	// Writers commit timestamped ledger rows through the endpoint. Default 4.
	Writers int
	// WriteFor is how long they write; T is picked half way. Default 20s.
	WriteFor time.Duration
	// CatchUpTimeout bounds the wait for the latest restorable time to pass T. Default 60s.
	CatchUpTimeout time.Duration
	// LagTarget is the most the latest restorable time may trail the wall
	// clock under writes for the drill to pass. Default 10s.
	LagTarget time.Duration
	// Keep leaves the restored server running (stop it with `haven db restore-stop`).
	Keep bool
	// Progress receives human-readable progress lines (may be nil).
	Progress io.Writer
}

// PITRReport is the drill's result.
type PITRReport struct {
	Envelope
	Target time.Time `json:"target"`
	Backup string    `json:"backup"`
	// Committed counts acknowledged rows; MustHave those acknowledged at or
	// before T; MustNotHave those stamped (inside the INSERT, before its
	// COMMIT) after T; InFlight the rest, which may go either way; Unknown
	// INSERTs whose outcome is unknown (no id, not checked).
	Committed   int `json:"committed"`
	MustHave    int `json:"must_have"`
	MustNotHave int `json:"must_not_have"`
	InFlight    int `json:"in_flight"`
	Unknown     int `json:"unknown"`
	Restored    int `json:"restored"`
	// Missing are MustHave rows absent from the restore, Extra MustNotHave
	// rows present (ledger ids, at most 100 each).
	Missing []string `json:"missing,omitempty"`
	Extra   []string `json:"extra,omitempty"`
	// LagMedianS and LagMaxS: how far the latest restorable time trailed the
	// wall clock under continuous writes, sampled about every second once the
	// writers have run for a quarter of the write period (at least 5 s):
	// before that the lag is the idle time before the drill, since an idle
	// primary archives nothing new.
	LagMedianS float64 `json:"latest_restorable_lag_median_s"`
	LagMaxS    float64 `json:"latest_restorable_lag_max_s"`
	LagSamples int     `json:"lag_samples"`
	// RestoreS is how long the restore took (repository restore + replay).
	RestoreS  float64 `json:"restore_s"`
	RestoreID string  `json:"restore_id"`
	Address   string  `json:"restored_address"`
	// Timeline is the writers' commits second by second.
	Timeline []load.Second `json:"timeline"`
}

// PITR runs the point-in-time restore drill through the daemon: writers
// commit timestamped rows through the endpoint while the latest restorable
// time is sampled; T is picked half way; once the archive has passed T the
// daemon restores to T into a new server, whose rows are compared with the
// ledger (ledger.CheckRestore, the one restore check): exactly the rows
// committed at or before T, to the granularity of PostgreSQL's recovery
// target (the commit record's timestamp).
func PITR(ctx context.Context, c *api.Client, cfg PITRConfig) (*PITRReport, error) {
	if cfg.Writers <= 0 {
		cfg.Writers = 4
	}
	if cfg.WriteFor <= 0 {
		cfg.WriteFor = 20 * time.Second
	}
	if cfg.CatchUpTimeout <= 0 {
		cfg.CatchUpTimeout = 60 * time.Second
	}
	if cfg.LagTarget <= 0 {
		cfg.LagTarget = 10 * time.Second
	}
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}
	st, err := c.DBStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill pitr: %w", err)
	}
	if st.Backups == nil || !st.Backups.Enabled {
		reason := "unknown"
		if st.Backups != nil {
			reason = st.Backups.Reason
		}
		return nil, fmt.Errorf("drill pitr: backups are off (%s)", reason)
	}
	env := startEnvelope(ctx, c, "pitr")
	login, err := c.DBDrillLogin(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill pitr: get a drill login: %w", err)
	}
	defer endDrillLogin(c, say)
	l, err := c.DBBackups(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill pitr: %w", err)
	}
	if len(l.Backups) == 0 {
		say("no backup yet: taking a full backup")
		if _, err := c.DBBackup(ctx, api.DBBackupRequest{Type: "full"}); err != nil {
			return nil, fmt.Errorf("drill pitr: first backup: %w", err)
		}
	}
	dsn := endpointDSN(login)
	table := "drill_pitr_" + strconv.FormatInt(time.Now().Unix(), 10)
	if err := ledger.Setup(ctx, dsn, table); err != nil {
		return nil, fmt.Errorf("drill pitr: %w (is the endpoint %s reachable?)", err, st.Endpoint)
	}
	defer dropTable(dsn, table)

	say("%d ledger writers committing through %s for %s", cfg.Writers, st.Endpoint, cfg.WriteFor)
	w, err := ledger.Start(ctx, ledger.Config{DSN: dsn, Writers: cfg.Writers, Table: table, Interval: 10 * time.Millisecond,
		OpTimeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	target := begin.Add(cfg.WriteFor / 2).Truncate(time.Microsecond)
	var lags []float64
	warm := min(max(cfg.WriteFor/4, 5*time.Second), cfg.WriteFor/2)
	for time.Since(begin) < cfg.WriteFor {
		if l, err := c.DBBackups(ctx); err == nil && !l.LatestRestorable.IsZero() && time.Since(begin) >= warm {
			lags = append(lags, time.Since(l.LatestRestorable).Seconds())
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			w.Stop()
			return nil, err
		}
	}
	ops := w.Stop()
	okN, _, unknown := tally(ops)
	rep := &PITRReport{Envelope: env, Target: target, Committed: okN, Unknown: unknown, LagSamples: len(lags)}
	sort.Float64s(lags)
	if len(lags) > 0 {
		rep.LagMedianS, rep.LagMaxS = lags[len(lags)/2], lags[len(lags)-1]
	}
	say("wrote %d rows (%d unknown); latest restorable time trailed by median %.1f s, max %.1f s", okN, unknown, rep.LagMedianS, rep.LagMaxS)

	say("waiting for the archive to pass T = %s", target.UTC().Format(time.RFC3339Nano))
	deadline := time.Now().Add(cfg.CatchUpTimeout)
	for {
		l, err := c.DBBackups(ctx)
		if err == nil && !l.LatestRestorable.Before(target) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("drill pitr: the archive did not reach T within %s (latest restorable %s, last error %v)", cfg.CatchUpTimeout, l.LatestRestorable.UTC().Format(time.RFC3339Nano), err)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
	say("restoring to T into a new server...")
	t0 := time.Now()
	res, err := c.DBRestore(ctx, api.DBRestoreRequest{ToTime: target})
	if err != nil {
		return nil, fmt.Errorf("drill pitr: restore to %s: %w", target.UTC().Format(time.RFC3339Nano), err)
	}
	rep.RestoreS = time.Since(t0).Seconds()
	rep.RestoreID, rep.Address, rep.Backup = res.ID, res.Address, res.Backup
	if !cfg.Keep {
		defer func() { _ = c.DBRestoreStop(context.WithoutCancel(ctx), res.ID) }()
	}
	say("restored %s from backup %s in %.1f s at %s", res.ID, res.Backup, rep.RestoreS, res.Address)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	lr, err := ledger.CheckRestore(cctx, nodeDSN(login, res.Address), table, ops, target)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("drill pitr: read the restored ledger at %s: %w", res.Address, err)
	}
	rep.MustHave, rep.MustNotHave, rep.InFlight = lr.OK, lr.Fail, lr.Unknown
	rep.Restored = lr.OK - lr.AcknowledgedLost + lr.FailPresent + lr.UnknownPresent + lr.Unrecorded
	for _, b := range lr.Breaches {
		switch {
		case b.Problem == ledger.ProblemLost && len(rep.Missing) < 100:
			rep.Missing = append(rep.Missing, b.Op.ID)
		case b.Problem == ledger.ProblemFailFound && len(rep.Extra) < 100:
			rep.Extra = append(rep.Extra, b.Op.ID)
		}
	}
	if rep.Restored == 0 {
		rep.Reasons = append(rep.Reasons, "the restored ledger table is empty")
	}
	if rep.LagMaxS > cfg.LagTarget.Seconds() {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("the latest restorable time trailed by up to %.1f s, more than %s", rep.LagMaxS, cfg.LagTarget))
	}
	if len(rep.Missing) > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d rows committed before T are missing, e.g. id %s", lr.AcknowledgedLost, rep.Missing[0]))
	}
	if len(rep.Extra) > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d rows written after T (or never committed) are present, e.g. id %s", lr.FailPresent, rep.Extra[0]))
	}
	if rep.MustHave == 0 || rep.MustNotHave == 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("T does not split the history (%d rows before, %d after): the check proves nothing", rep.MustHave, rep.MustNotHave))
	}
	rep.Timeline = writesTimeline(ops, rep.StartedAt)
	rep.finish()
	return rep, nil
}
