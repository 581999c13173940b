// Package ledger proves zero loss: writers record the outcome of every commit, and a checker compares that history with what a database holds.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Outcome is what a writer knows about one commit.
type Outcome string

const (
	// OK: COMMIT was acknowledged. The row must survive any fault.
	OK Outcome = "OK"
	// Fail: the transaction certainly did not commit. The row must never appear.
	Fail Outcome = "FAIL"
	// Unknown: the connection was lost during COMMIT (or the wait for the
	// synchronous standby was cancelled). The row may go either way.
	Unknown Outcome = "UNKNOWN"
)

// Op is one recorded write.
type Op struct {
	ID      string
	Writer  int
	Outcome Outcome
	Start   time.Time
	End     time.Time
	Err     string
}

// Config configures Writers.
type Config struct {
	// DSN is where the writers connect, normally the endpoint. Required.
	DSN string
	// Writers is the number of concurrent writers. Default 4.
	Writers int
	// Table holds the rows. Default "ledger".
	Table string
	// Interval is the pause between one writer's commits. Default 5ms.
	Interval time.Duration
	// OpTimeout bounds one transaction. Default 10s.
	OpTimeout time.Duration
	// Dial connects the writers, e.g. from inside a network namespace
	// (vpc.Namespace.DialContext). Default: a plain dial.
	Dial pgconn.DialFunc
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Writers == 0 {
		c.Writers = 4
	}
	if c.Table == "" {
		c.Table = "ledger"
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Millisecond
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Setup creates the ledger table if it does not exist.
func Setup(ctx context.Context, dsn, table string) error {
	if table == "" {
		table = "ledger"
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to set up ledger: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+pgx.Identifier{table}.Sanitize()+
		" (id text PRIMARY KEY, writer int NOT NULL, at timestamptz NOT NULL DEFAULT now())")
	if err != nil {
		return fmt.Errorf("create ledger table: %w", err)
	}
	return nil
}

// Writers commit rows concurrently and record every outcome.
type Writers struct {
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	ops []Op
	seq atomic.Int64
}

// Start launches the writers; they run until Stop.
func Start(ctx context.Context, cfg Config) (*Writers, error) {
	if cfg.DSN == "" {
		return nil, errors.New("ledger.dsn: required")
	}
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(ctx)
	w := &Writers{cfg: cfg, log: cfg.Logger.With("component", "ledger"), cancel: cancel}
	for i := 0; i < cfg.Writers; i++ {
		w.wg.Add(1)
		go w.writer(ctx, i)
	}
	return w, nil
}

// Stop stops the writers and returns the history.
func (w *Writers) Stop() []Op {
	w.cancel()
	w.wg.Wait()
	return w.Ops()
}

// Table is the table the writers write to.
func (w *Writers) Table() string { return w.cfg.Table }

// Ops returns a copy of the history so far.
func (w *Writers) Ops() []Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Op(nil), w.ops...)
}

// Counts returns how many ops had each outcome so far.
func (w *Writers) Counts() map[Outcome]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[Outcome]int{}
	for _, op := range w.ops {
		m[op.Outcome]++
	}
	return m
}

func (w *Writers) record(op Op) {
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.mu.Unlock()
}

func (w *Writers) writer(ctx context.Context, id int) {
	defer w.wg.Done()
	var conn *pgx.Conn
	var syncCancelled atomic.Bool
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	insert := "INSERT INTO " + pgx.Identifier{w.cfg.Table}.Sanitize() + " (id, writer) VALUES ($1, $2)"
	for ctx.Err() == nil {
		if conn == nil {
			cfg, err := pgx.ParseConfig(w.cfg.DSN)
			if err != nil {
				w.log.Error("parse dsn", "err", err)
				return
			}
			cfg.ConnectTimeout = time.Second
			if w.cfg.Dial != nil {
				cfg.DialFunc = w.cfg.Dial
			}
			cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
				if strings.Contains(n.Message, "synchronous replication") {
					syncCancelled.Store(true)
				}
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			conn, err = pgx.ConnectConfig(cctx, cfg)
			cancel()
			if err != nil {
				conn = nil
				sleep(ctx, 50*time.Millisecond)
				continue
			}
		}
		op := Op{ID: fmt.Sprintf("w%d-%07d", id, w.seq.Add(1)), Writer: id, Start: time.Now()}
		syncCancelled.Store(false)
		// A cancelled test context must not cancel a commit midway.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.OpTimeout)
		op.Outcome, op.Err = w.commit(octx, conn, insert, op.ID, id, &syncCancelled)
		cancel()
		op.End = time.Now()
		w.record(op)
		if op.Outcome != OK && (conn.IsClosed() || op.Outcome == Unknown) {
			conn.Close(context.Background())
			conn = nil
		}
		sleep(ctx, w.cfg.Interval)
	}
}

// commit runs one transaction and classifies its outcome.
func (w *Writers) commit(ctx context.Context, conn *pgx.Conn, insert, opID string, writer int, syncCancelled *atomic.Bool) (Outcome, string) {
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		return Fail, err.Error()
	}
	if _, err := conn.Exec(ctx, insert, opID, writer); err != nil {
		return Fail, err.Error() // not committed: the server aborts it
	}
	tag, err := conn.Exec(ctx, "COMMIT")
	switch {
	case err == nil && syncCancelled.Load():
		return Unknown, "commit acknowledged without synchronous replication"
	case err == nil && tag.String() == "COMMIT":
		return OK, ""
	case err == nil:
		return Fail, "commit answered " + tag.String()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Severity == "ERROR" {
		return Fail, err.Error()
	}
	return Unknown, err.Error()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Breach is one violation of the ledger's contract.
type Breach struct {
	Op      Op
	Problem string
}

// The problems Compare reports.
const (
	ProblemLost       = "acknowledged commit lost"
	ProblemFailFound  = "failed write is present"
	ProblemDuplicated = "id recorded more than once"
)

// Report is the result of Compare.
type Report struct {
	OK, Fail, Unknown int
	// UnknownPresent counts UNKNOWN rows found in the database.
	UnknownPresent int
	// AcknowledgedLost counts OK rows missing from the database.
	AcknowledgedLost int
	// FailPresent counts FAIL rows found in the database.
	FailPresent int
	// Duplicates counts ops whose id was recorded before: the history
	// itself is wrong, so each is a breach.
	Duplicates int
	// Unrecorded counts rows present that no op of the history wrote (rows
	// written after the history was taken, when writers still run).
	Unrecorded int
	Breaches   []Breach
}

func (r Report) String() string {
	return fmt.Sprintf("ok=%d fail=%d unknown=%d (present %d) acknowledged_lost=%d fail_present=%d duplicates=%d",
		r.OK, r.Fail, r.Unknown, r.UnknownPresent, r.AcknowledgedLost, r.FailPresent, r.Duplicates)
}

// Compare checks the history ops against the ids present in the database:
// every OK op's row must be present, no FAIL op's row may be, and an
// UNKNOWN op's row may go either way. An id recorded twice is a breach
// (the first op stands). It is pure.
func Compare(ops []Op, present map[string]bool) Report {
	var r Report
	seen := make(map[string]bool, len(ops))
	for _, op := range ops {
		if seen[op.ID] {
			r.Duplicates++
			r.Breaches = append(r.Breaches, Breach{op, ProblemDuplicated})
			continue
		}
		seen[op.ID] = true
		switch op.Outcome {
		case OK:
			r.OK++
			if !present[op.ID] {
				r.AcknowledgedLost++
				r.Breaches = append(r.Breaches, Breach{op, ProblemLost})
			}
		case Fail:
			r.Fail++
			if present[op.ID] {
				r.FailPresent++
				r.Breaches = append(r.Breaches, Breach{op, ProblemFailFound})
			}
		case Unknown:
			r.Unknown++
			if present[op.ID] {
				r.UnknownPresent++
			}
		}
	}
	for id := range present {
		if !seen[id] {
			r.Unrecorded++
		}
	}
	return r
}

// AtTime restates the history for a restore to point in time t, so
// Compare checks the restored rows: an op acknowledged at or before t is OK
// (its commit record is no later than the acknowledgment, so it must be
// restored); a failed op, or one begun after t, is FAIL (it never
// committed, or committed after t: it must not be restored); every other
// op (in flight at t, or of unknown outcome) is UNKNOWN. The client's clock is the server's here (one machine). It is
// pure.
func AtTime(ops []Op, t time.Time) []Op {
	out := make([]Op, len(ops))
	for i, op := range ops {
		switch {
		case op.Outcome == OK && !op.End.After(t):
			op.Outcome = OK
		case op.Outcome == Fail || op.Start.After(t):
			op.Outcome = Fail
		default:
			op.Outcome = Unknown
		}
		out[i] = op
	}
	return out
}

// Read returns the ids of the rows in table at dsn.
func Read(ctx context.Context, dsn, table string) (map[string]bool, error) {
	return ReadDial(ctx, dsn, table, nil)
}

// ReadDial is Read with connections made by dial (nil: a plain dial).
func ReadDial(ctx context.Context, dsn, table string, dial pgconn.DialFunc) (map[string]bool, error) {
	if table == "" {
		table = "ledger"
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("read ledger: %w", err)
	}
	if dial != nil {
		cfg.DialFunc = dial
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to read ledger: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT id FROM "+pgx.Identifier{table}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("read ledger: %w", err)
	}
	present := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan ledger: %w", err)
		}
		present[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read ledger: %w", err)
	}
	return present, nil
}

// Check compares ops with the rows in table at dsn (Read, then Compare).
func Check(ctx context.Context, dsn, table string, ops []Op) (Report, error) {
	present, err := Read(ctx, dsn, table)
	if err != nil {
		return Report{}, err
	}
	return Compare(ops, present), nil
}

// CheckRestore is the one restore check: it compares ops, restated for a
// restore to t (AtTime), with the rows in table of a server restored to t.
func CheckRestore(ctx context.Context, dsn, table string, ops []Op, t time.Time) (Report, error) {
	present, err := Read(ctx, dsn, table)
	if err != nil {
		return Report{}, err
	}
	return Compare(AtTime(ops, t), present), nil
}
