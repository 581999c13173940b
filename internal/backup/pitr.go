package backup

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// PITROptions configures PITRCheck.
type PITROptions struct {
	// DSN is where the writers commit ledger rows (the endpoint or the
	// primary), as a role that may create Table. Required.
	DSN string
	// Database is DSN's database; the check reads the restored copy of it
	// as the postgres superuser. Required.
	Database string
	// Table is the ledger table, created when missing. Default "pitr_ledger".
	Table string
	// Writers is the number of concurrent writers. Default 4.
	Writers int
	// WriteFor is how long the writers run; T is picked half way. Default 6s.
	WriteFor time.Duration
	// DataDir, ListenAddr and Port are for the restored server (see RestoreOptions).
	DataDir    string
	ListenAddr netip.Addr
	Port       int
	// CatchUpTimeout bounds the wait for the archive to reach T. Default 60s.
	CatchUpTimeout time.Duration
}

// PITRReport is the outcome of PITRCheck.
type PITRReport struct {
	// Target is the recovery target time T; Backup the set restored from.
	Target time.Time `json:"target"`
	Backup string    `json:"backup"`
	// Committed counts rows whose INSERT was acknowledged.
	Committed int `json:"committed"`
	// MustHave counts rows acknowledged at or before T: their commit
	// record is no later than the acknowledgment, so they must be restored.
	MustHave int `json:"must_have"`
	// MustNotHave counts rows stamped (clock_timestamp() in the INSERT,
	// before the commit) after T: their commit is later, so they must not be.
	MustNotHave int `json:"must_not_have"`
	// InFlight counts rows stamped at or before T but acknowledged after T,
	// plus rows whose outcome is unknown: either answer is correct.
	InFlight int `json:"in_flight"`
	// Unknown counts INSERTs cut off by the end of the write period: they
	// may or may not have committed on the live server (no id, not checked).
	Unknown int `json:"unknown"`
	// Restored counts rows in the restored table.
	Restored int `json:"restored"`
	// Missing are MustHave rows absent from the restore; Extra are
	// MustNotHave rows present in it. Both must be empty.
	Missing []int64 `json:"missing,omitempty"`
	Extra   []int64 `json:"extra,omitempty"`
	// LagMedian and LagMax are how far the latest restorable time trailed
	// the wall clock under continuous writes (sampled about every second).
	LagMedian  time.Duration `json:"lag_median_ns"`
	LagMax     time.Duration `json:"lag_max_ns"`
	LagSamples int           `json:"lag_samples"`
	// RestoreTook is how long Restore took (restore plus recovery).
	RestoreTook time.Duration `json:"restore_took_ns"`
	// Pass is true when Missing and Extra are empty.
	Pass bool `json:"pass"`
}

type ledgerRow struct {
	id      int64
	stamp   time.Time // clock_timestamp() inside the INSERT, before COMMIT
	ack     time.Time // client clock after the acknowledgment
	unknown bool
}

// PITRCheck is the point-in-time-restore drill: writers commit
// timestamped ledger rows through opts.DSN while the latest restorable time
// is sampled; T is picked half way through; once the archive has reached T
// the repository is restored to T into a new server, and the restored rows
// are checked against the ledger. It needs the archive ticker running
// (Start or ArchiveTicker) for a lag of seconds, and takes a full backup
// first when the repository has none. The restored server is stopped
// before returning; its data directory is left.
func (m *Manager) PITRCheck(ctx context.Context, opts PITROptions) (PITRReport, error) {
	if opts.Table == "" {
		opts.Table = "pitr_ledger"
	}
	if opts.Writers <= 0 {
		opts.Writers = 4
	}
	if opts.WriteFor <= 0 {
		opts.WriteFor = 6 * time.Second
	}
	if opts.CatchUpTimeout <= 0 {
		opts.CatchUpTimeout = 60 * time.Second
	}
	if opts.DSN == "" || opts.Database == "" {
		return PITRReport{}, errors.New("pitr check: DSN and Database required")
	}
	table := pgx.Identifier{opts.Table}.Sanitize()
	setup, err := pgx.Connect(ctx, opts.DSN)
	if err != nil {
		return PITRReport{}, fmt.Errorf("pitr check: connect: %w", err)
	}
	_, err = setup.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (id bigserial PRIMARY KEY, writer int NOT NULL, stamp timestamptz NOT NULL)")
	setup.Close(ctx)
	if err != nil {
		return PITRReport{}, fmt.Errorf("pitr check: create ledger table: %w", err)
	}
	if l, err := m.info(ctx); err != nil {
		return PITRReport{}, err
	} else if len(l.Backups) == 0 {
		if _, err := m.Backup(ctx, Full, nil); err != nil {
			return PITRReport{}, fmt.Errorf("pitr check: first backup: %w", err)
		}
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	var rows []ledgerRow
	var unknown int
	var wg sync.WaitGroup
	for w := 0; w < opts.Writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			}()
			for wctx.Err() == nil {
				if conn == nil {
					c, err := pgx.Connect(wctx, opts.DSN)
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					conn = c
				}
				var r ledgerRow
				err := conn.QueryRow(wctx, "INSERT INTO "+table+" (writer, stamp) VALUES ($1, clock_timestamp()) RETURNING id, stamp", w).Scan(&r.id, &r.stamp)
				r.ack = time.Now()
				if err != nil {
					if wctx.Err() != nil {
						mu.Lock()
						unknown++
						mu.Unlock()
						return
					}
					// Without an id the row cannot be checked either way.
					mu.Lock()
					unknown++
					mu.Unlock()
					conn.Close(context.Background())
					conn = nil
					continue
				}
				mu.Lock()
				rows = append(rows, r)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	var rep PITRReport
	var lags []time.Duration
	begin := time.Now()
	target := begin.Add(opts.WriteFor / 2).Truncate(time.Microsecond)
	for time.Since(begin) < opts.WriteFor && ctx.Err() == nil {
		if l, err := m.List(ctx); err == nil && !l.LatestRestorable.IsZero() {
			lags = append(lags, time.Since(l.LatestRestorable))
		}
		time.Sleep(time.Second)
	}
	stop()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	rep.Target, rep.Unknown = target, unknown
	rep.LagSamples = len(lags)
	if len(lags) > 0 {
		slices.Sort(lags)
		rep.LagMedian, rep.LagMax = lags[len(lags)/2], lags[len(lags)-1]
	}

	// Wait for the archive to reach T.
	deadline := time.Now().Add(opts.CatchUpTimeout)
	for {
		l, err := m.List(ctx)
		if err != nil {
			return rep, err
		}
		if !l.LatestRestorable.Before(target) {
			break
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("pitr check: the archive did not reach %s within %s (latest restorable %s)", pgTime(target), opts.CatchUpTimeout, pgTime(l.LatestRestorable))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t0 := time.Now()
	srv, err := m.Restore(ctx, RestoreOptions{TargetTime: target, DataDir: opts.DataDir, ListenAddr: opts.ListenAddr, Port: opts.Port})
	if err != nil {
		return rep, err
	}
	rep.RestoreTook = time.Since(t0)
	rep.Backup = srv.Backup
	defer srv.Stop(context.WithoutCancel(ctx))
	dsn := strings.Replace(srv.AdminDSN(), "dbname=postgres", "dbname="+opts.Database, 1)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return rep, fmt.Errorf("pitr check: connect to restored server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	got := map[int64]bool{}
	res, err := conn.Query(ctx, "SELECT id FROM "+table)
	if err != nil {
		return rep, fmt.Errorf("pitr check: read restored ledger: %w", err)
	}
	for res.Next() {
		var id int64
		if err := res.Scan(&id); err != nil {
			return rep, err
		}
		got[id] = true
	}
	if err := res.Err(); err != nil {
		return rep, fmt.Errorf("pitr check: read restored ledger: %w", err)
	}
	rep.Restored = len(got)
	rep = classify(rep, rows, got, target)
	return rep, nil
}

// classify compares the ledger with the restored ids at target.
func classify(rep PITRReport, rows []ledgerRow, got map[int64]bool, target time.Time) PITRReport {
	for _, r := range rows {
		if !r.unknown {
			rep.Committed++
		}
		switch {
		case !r.unknown && !r.ack.After(target):
			rep.MustHave++
			if !got[r.id] {
				rep.Missing = append(rep.Missing, r.id)
			}
		case r.stamp.After(target):
			rep.MustNotHave++
			if got[r.id] {
				rep.Extra = append(rep.Extra, r.id)
			}
		default:
			rep.InFlight++
		}
	}
	rep.Pass = len(rep.Missing) == 0 && len(rep.Extra) == 0
	return rep
}
