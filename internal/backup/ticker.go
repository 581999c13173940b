package backup

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haven-platform/haven/internal/pgha"
)

// ArchiveStatus reports the WAL archive ticker and PostgreSQL's archiver on
// the current primary.
type ArchiveStatus struct {
	// Primary is the node the ticker last switched WAL on.
	Primary string `json:"primary,omitempty"`
	// Switches counts forced WAL switches; LastSwitch is the newest.
	Switches   int       `json:"switches"`
	LastSwitch time.Time `json:"last_switch,omitempty"`
	// LastSegment is the segment the newest switch closed.
	LastSegment string `json:"last_segment,omitempty"`
	// LastArchivedWAL and LastArchivedAt come from the primary's
	// pg_stat_archiver; FailedCount counts failed archive_command runs.
	LastArchivedWAL string    `json:"last_archived_wal,omitempty"`
	LastArchivedAt  time.Time `json:"last_archived_at,omitempty"`
	FailedCount     int64     `json:"failed_count"`
	LastFailedWAL   string    `json:"last_failed_wal,omitempty"`
	LastFailedAt    time.Time `json:"last_failed_at,omitempty"`
	// Failing is true when the newest archive attempt failed (the last
	// failure is newer than the last success). Failures before the stanza
	// existed are normal and retried by PostgreSQL.
	Failing bool `json:"failing"`
	// LastError is the ticker's last error ("" after a good round).
	LastError string `json:"last_error,omitempty"`
}

// ArchiveStatus returns the archive ticker's view: the snapshot the ticker
// published last; it never waits on the ticker or the database.
func (m *Manager) ArchiveStatus() ArchiveStatus {
	if p := m.ticker.Load(); p != nil {
		return *p
	}
	return ArchiveStatus{}
}

// updateArchiveStatus publishes a changed copy of the status. Only the
// ticker's goroutine calls it.
func (m *Manager) updateArchiveStatus(change func(*ArchiveStatus)) {
	st := m.ArchiveStatus()
	change(&st)
	m.ticker.Store(&st)
}

// primary returns the current primary: Config.Primary when set, else the
// first node that answers and is not in recovery.
func (m *Manager) primary(ctx context.Context) (pgha.Node, error) {
	if m.cfg.Primary != nil {
		return m.cfg.Primary(), nil
	}
	var errs []error
	for _, n := range m.cfg.Nodes {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, n.AdminDSN())
		if err == nil {
			var rec bool
			err = conn.QueryRow(cctx, "SELECT pg_is_in_recovery()").Scan(&rec)
			conn.Close(cctx)
			if err == nil && !rec {
				cancel()
				return n, nil
			}
		}
		cancel()
		errs = append(errs, fmt.Errorf("%s: %v", n.Name, err))
	}
	return pgha.Node{}, fmt.Errorf("find primary: %w", errors.Join(errs...))
}

// ArchiveTicker forces a WAL switch on the current primary every
// SwitchInterval when there were writes since the previous switch, so the
// latest restorable time trails writes by seconds. Before each switch it
// commits an empty transaction (pg_current_xact_id()), whose commit record
// makes every time up to the switch a reachable recovery target. It
// returns when ctx ends.
func (m *Manager) ArchiveTicker(ctx context.Context) {
	if m.cfg.SwitchInterval < 0 {
		return
	}
	var conn *pgx.Conn
	var connNode string
	var lastLSN string
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.cfg.Clock.After(m.cfg.SwitchInterval):
		}
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v: %s", r, debug.Stack())
				}
			}()
			n, err := m.primary(ctx)
			if err != nil {
				return err
			}
			if conn == nil || connNode != n.Name || conn.IsClosed() {
				if conn != nil {
					conn.Close(ctx)
				}
				conn, connNode, lastLSN = nil, "", ""
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				c, err := pgx.Connect(cctx, n.AdminDSN()+" application_name=haven-backup")
				if err != nil {
					return err
				}
				// The marker commit need not wait for the standby.
				if _, err := c.Exec(cctx, "SET synchronous_commit = local"); err != nil {
					c.Close(ctx)
					return err
				}
				conn, connNode = c, n.Name
			}
			seg, lsn, switched, err := m.switchIfWritten(ctx, conn, lastLSN)
			if err != nil {
				conn.Close(ctx)
				conn = nil
				return err
			}
			lastLSN = lsn
			now := m.cfg.Clock.Now()
			// Query first, then publish: ArchiveStatus (every db status
			// call) must not wait on the database.
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			var wal, failed *string
			var at, failedAt *time.Time
			var failedCount int64
			qerr := conn.QueryRow(cctx, "SELECT last_archived_wal, last_archived_time, failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver").
				Scan(&wal, &at, &failedCount, &failed, &failedAt)
			m.updateArchiveStatus(func(st *ArchiveStatus) {
				st.Primary, st.LastError = n.Name, ""
				if switched {
					st.Switches++
					st.LastSwitch, st.LastSegment = now, seg
				}
				if qerr == nil {
					st.FailedCount = failedCount
					st.LastArchivedWAL, st.LastFailedWAL, st.LastArchivedAt, st.LastFailedAt = deref(wal), deref(failed), time.Time{}, time.Time{}
					if at != nil {
						st.LastArchivedAt = at.UTC()
					}
					if failedAt != nil {
						st.LastFailedAt = failedAt.UTC()
					}
					st.Failing = st.LastFailedAt.After(st.LastArchivedAt)
				}
			})
			return nil
		}()
		if err != nil && ctx.Err() == nil {
			m.updateArchiveStatus(func(st *ArchiveStatus) { st.LastError = err.Error() })
			m.log.Warn("archive ticker", "err", err)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// switchIfWritten switches WAL when the insert position moved since
// lastLSN; it returns the new position (after the switch).
func (m *Manager) switchIfWritten(ctx context.Context, conn *pgx.Conn, lastLSN string) (seg, lsn string, switched bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return "", "", false, fmt.Errorf("read WAL position: %w", err)
	}
	if lsn == lastLSN {
		return "", lsn, false, nil
	}
	if lastLSN == "" {
		// First look at this primary: remember where it is, switch next time.
		return "", lsn, false, nil
	}
	if _, err := conn.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		return "", "", false, fmt.Errorf("marker commit: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
		return "", "", false, fmt.Errorf("switch WAL: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return "", "", false, fmt.Errorf("read WAL position: %w", err)
	}
	return seg, lsn, true, nil
}
