package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Clock is the time source used for session expiry and retry backoff.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ErrDBUnavailable is returned when the database stayed unreachable (or kept
// changing role) for the whole retry budget.
var ErrDBUnavailable = errors.New("database unavailable")

// ErrCommitUnknown is returned when the connection was lost while COMMIT was in
// flight: the write may or may not have been applied, so it is not retried.
var ErrCommitUnknown = errors.New("commit outcome unknown")

// Querier is what read functions get: a pool or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DBConfig configures the database handle.
type DBConfig struct {
	// ConnString is a libpq connection string; empty means "from the PG* env
	// vars" (PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE).
	ConnString string
	// MaxConns caps the pool. Default 8.
	MaxConns int32
	// RetryBudget is how long one operation may spend retrying across a
	// failover. Default 8s.
	RetryBudget time.Duration
	// Credentials, when set, supplies user/password (and optionally
	// host/port/dbname) before every new connection. Default nil: the
	// connection string / env decides and no password is used.
	Credentials CredentialProvider
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Clock drives retry backoff. Default the system clock.
	Clock Clock
}

// DB is a pgx pool plus the app's failover retry policy.
type DB struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	clock  Clock
	budget time.Duration
	creds  CredentialProvider
	resets atomic.Int64
	// lastReset is when the pool was last reset (UnixNano). An attempt that
	// started before it needs no second reset: the reset already closed the
	// idle connections, and in-use ones are destroyed on release.
	lastReset atomic.Int64
}

// OpenDB builds the pool. It does not connect: connections are made lazily,
// so a process can start while the database is failing over.
func OpenDB(ctx context.Context, cfg DBConfig) (*DB, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("parse database config: %w", err)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 8
	}
	if cfg.RetryBudget <= 0 {
		cfg.RetryBudget = 8 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	pcfg.MaxConns = cfg.MaxConns
	pcfg.MinConns = 0
	pcfg.MaxConnIdleTime = 5 * time.Minute
	pcfg.MaxConnLifetime = 30 * time.Minute
	pcfg.HealthCheckPeriod = 15 * time.Second
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 3 * time.Second
	}
	if cfg.Credentials != nil {
		pcfg.BeforeConnect = beforeConnect(cfg.Credentials)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	return &DB{
		pool:   pool,
		log:    cfg.Logger.With("component", "db"),
		clock:  cfg.Clock,
		budget: cfg.RetryBudget,
		creds:  cfg.Credentials,
	}, nil
}

// Close closes every connection.
func (d *DB) Close() { d.pool.Close() }

// Pool exposes the underlying pool (migrations and seeding use it).
func (d *DB) Pool() *pgxpool.Pool { return d.pool }

// Resets reports how many times the pool was reset after a role change.
func (d *DB) Resets() int64 { return d.resets.Load() }

// Ping checks that a connection can be acquired and used, without retrying.
func (d *DB) Ping(ctx context.Context) error {
	return d.pool.Ping(ctx)
}

// errClass is what the retry policy needs to know about an error.
type errClass int

const (
	classOther       errClass = iota // not retryable
	classRoleChanged                 // the server went away or is no longer a writable primary
	classAuthFailed                  // password rejected: refetch credentials, then retry
)

func (c errClass) String() string {
	switch c {
	case classRoleChanged:
		return "role_changed"
	case classAuthFailed:
		return "auth_failed"
	default:
		return "other"
	}
}

// classify maps an error onto the retry policy. It is pure.
func classify(err error) errClass {
	if err == nil {
		return classOther
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "28P01":
			return classAuthFailed
		case pgErr.Code == "25006", // read_only_sql_transaction: we are on a standby
			pgErr.Code == "57P01",               // admin_shutdown
			pgErr.Code == "57P02",               // crash_shutdown
			pgErr.Code == "57P03",               // cannot_connect_now (starting up / in recovery)
			strings.HasPrefix(pgErr.Code, "08"): // connection exception class
			return classRoleChanged
		}
		return classOther
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// A connect timeout inside pgconn also surfaces as a ConnectError;
		// the caller's own context is checked separately.
		var ce *pgconn.ConnectError
		if errors.As(err, &ce) {
			return classRoleChanged
		}
		return classOther
	}
	switch {
	case errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed):
		return classRoleChanged
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return classRoleChanged
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return classRoleChanged
	}
	if pgconn.SafeToRetry(err) || strings.Contains(err.Error(), "conn closed") {
		return classRoleChanged
	}
	return classOther
}

// endpointGone reports whether err says nothing serves the database's
// address any more (the connection was refused): the endpoint may have
// moved, as RDS endpoints do, and the secret names the new host and port,
// so the next connection reads the secret again. A failover's refused
// connections (no primary for a moment) cost one read of the secret per
// attempt, bounded by the backoff. It is pure.
func endpointGone(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) && errors.Is(err, syscall.ECONNREFUSED)
}

// backoff returns the wait before attempt n (0-based): 50ms doubling, capped at
// 1s, with up to 50% jitter removed. It is pure given jitter in [0,1).
func backoff(n int, jitter float64) time.Duration {
	d := 50 * time.Millisecond
	for i := 0; i < n && d < time.Second; i++ {
		d *= 2
	}
	if d > time.Second {
		d = time.Second
	}
	return d - time.Duration(float64(d)*0.5*jitter)
}

// attemptFunc runs one attempt. It returns whether a failed attempt may be
// retried (given that the error is retryable by class) and the error.
type attemptFunc func(ctx context.Context) (safeToRetry bool, err error)

// retry runs fn until it succeeds, fails with a non-retryable error, or the
// budget is spent. On a role change it resets the pool so no connection to a
// demoted or dead server is reused.
func (d *DB) retry(ctx context.Context, op string, fn attemptFunc) error {
	deadline := d.clock.Now().Add(d.budget)
	for attempt := 0; ; attempt++ {
		started := d.clock.Now().UnixNano()
		safe, err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		class := classify(err)
		switch class {
		case classOther:
			return err
		case classAuthFailed:
			if d.creds == nil {
				return err
			}
			d.creds.Invalidate()
		case classRoleChanged:
			if d.creds != nil && endpointGone(err) {
				d.creds.Invalidate()
			}
		}
		d.resetPool(started)
		if !safe {
			d.log.Warn("database role changed during commit; outcome unknown", "op", op, "err", err)
			return fmt.Errorf("%s: %w: %w", op, ErrCommitUnknown, err)
		}
		wait := backoff(attempt, rand.Float64())
		if d.clock.Now().Add(wait).After(deadline) {
			d.log.Warn("database retry budget spent", "op", op, "attempts", attempt+1, "class", class.String(), "err", err)
			return fmt.Errorf("%s: %w: %w", op, ErrDBUnavailable, err)
		}
		d.log.Info("database error, retrying", "op", op, "attempt", attempt+1, "class", class.String(), "wait", wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", op, ctx.Err())
		case <-d.clock.After(wait):
		}
	}
}

// resetPool closes every pooled connection unless another caller already did
// so after this attempt started (avoids reset storms when many requests fail
// at once during a failover).
func (d *DB) resetPool(attemptStarted int64) {
	last := d.lastReset.Load()
	if last >= attemptStarted {
		return
	}
	if d.lastReset.CompareAndSwap(last, d.clock.Now().UnixNano()) {
		d.resets.Add(1)
		d.pool.Reset()
	}
}

// Read runs fn against the pool, retrying across role changes. fn must not
// write, or must be idempotent; it may be called more than once.
func (d *DB) Read(ctx context.Context, fn func(ctx context.Context, q Querier) error) error {
	return d.retry(ctx, "read", func(ctx context.Context) (bool, error) {
		return true, fn(ctx, d.pool)
	})
}

// Write runs fn in a transaction and commits. It retries only when the
// transaction is known not to have committed: the connection could not be
// acquired, or the error arrived before COMMIT was sent, or COMMIT itself was
// never sent on the wire. A connection lost during COMMIT yields
// ErrCommitUnknown.
func (d *DB) Write(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return d.write(ctx, "write", false, fn)
}

// WriteIdempotent is Write for operations that can be applied twice with the
// same effect (upserts, deletes by key): they are retried even when the
// outcome of COMMIT is unknown.
func (d *DB) WriteIdempotent(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return d.write(ctx, "idempotent write", true, fn)
}

func (d *DB) write(ctx context.Context, op string, idempotent bool, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return d.retry(ctx, op, func(ctx context.Context) (bool, error) {
		tx, err := d.pool.Begin(ctx)
		if err != nil {
			return true, err
		}
		if err := fn(ctx, tx); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return true, err
		}
		if err := tx.Commit(ctx); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				// The server answered: it did not commit.
				return true, err
			}
			return idempotent || pgconn.SafeToRetry(err), err
		}
		return true, nil
	})
}
