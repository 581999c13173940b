package pgha

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// replRow is one row of the primary's pg_stat_replication.
type replRow struct {
	app, state, syncState string
	// lagBytes is how far its replay trails the primary's WAL position;
	// lagSeconds is replay_lag (0 when idle).
	lagBytes, lagSeconds float64
}

// prober probes one node in layers, TCP connect then SQL over a kept admin
// connection, each bounded by timeout, and turns consecutive failures into
// a Health.
type prober struct {
	node      Node
	in        *instance
	timeout   time.Duration
	threshold int
	now       func() time.Time
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)

	conn     *pgx.Conn
	failures int
	// failingSince is when the current streak of failures began (the start
	// of its first failed probe, or when the exit was seen); zero when up.
	failingSince time.Time
	inRecovery   bool
	timeline     uint64 // primary: the timeline it writes; standby: the timeline it streams (0 = not streaming)
	repl         []replRow
	// connections (primary) is its client backends, but the probe's own.
	connections int
}

func (p *prober) close() {
	if p.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		p.conn.Close(ctx)
		cancel()
		p.conn = nil
	}
}

// reset forgets the history, e.g. after the node was fenced or restarted.
func (p *prober) reset() {
	p.close()
	p.failures = 0
	p.failingSince = time.Time{}
	p.repl = nil
	p.timeline = 0
}

// run probes once and returns the node's observation.
func (p *prober) run(ctx context.Context) NodeObs {
	if !p.in.running() {
		// The controller owns the process and saw it exit: dead now.
		p.close()
		if p.failingSince.IsZero() {
			p.failingSince = p.now()
		}
		p.failures = p.threshold
		p.repl = nil
		return NodeObs{Health: HealthDead, InRecovery: p.inRecovery}
	}
	start := p.now()
	err := p.query(ctx)
	lat := p.now().Sub(start)
	if err != nil {
		p.close()
		if p.failures == 0 {
			p.failingSince = start
		}
		p.failures++
		p.repl = nil
		h := HealthSlow
		if p.failures >= p.threshold {
			h = HealthDead
		}
		return NodeObs{Health: h, InRecovery: p.inRecovery}
	}
	p.failures = 0
	p.failingSince = time.Time{}
	h := HealthUp
	if lat > p.timeout/2 {
		h = HealthSlow
	}
	return NodeObs{Health: h, InRecovery: p.inRecovery}
}

func (p *prober) query(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := dialCheck(ctx, p.dial, p.node.Addr()); err != nil {
		return fmt.Errorf("tcp probe: %w", err)
	}
	if p.conn == nil {
		c, err := p.in.connect(ctx)
		if err != nil {
			return err
		}
		p.conn = c
	}
	if err := p.conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&p.inRecovery); err != nil {
		return fmt.Errorf("sql probe: %w", err)
	}
	p.repl = p.repl[:0]
	if p.inRecovery {
		var tli int32
		if err := p.conn.QueryRow(ctx, "SELECT coalesce((SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'), 0)").Scan(&tli); err != nil {
			return fmt.Errorf("query pg_stat_wal_receiver: %w", err)
		}
		p.timeline = uint64(tli)
		return nil
	}
	var walfile string
	if err := p.conn.QueryRow(ctx, `SELECT pg_walfile_name(pg_current_wal_lsn()),
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::int`).Scan(&walfile, &p.connections); err != nil {
		return fmt.Errorf("query timeline: %w", err)
	}
	if len(walfile) < 8 {
		return fmt.Errorf("query timeline: bad wal file name %q", walfile)
	}
	tli, err := strconv.ParseUint(walfile[:8], 16, 32)
	if err != nil {
		return fmt.Errorf("parse timeline of %q: %w", walfile, err)
	}
	p.timeline = tli
	rows, err := p.conn.Query(ctx, `SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, ''),
		coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::float8, coalesce(extract(epoch FROM replay_lag), 0)::float8
		FROM pg_stat_replication`)
	if err != nil {
		return fmt.Errorf("query pg_stat_replication: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r replRow
		if err := rows.Scan(&r.app, &r.state, &r.syncState, &r.lagBytes, &r.lagSeconds); err != nil {
			return fmt.Errorf("scan pg_stat_replication: %w", err)
		}
		p.repl = append(p.repl, r)
	}
	return rows.Err()
}
