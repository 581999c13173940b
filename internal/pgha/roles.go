package pgha

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Role and password operations on the current primary. Passwords reach the
// server only as SCRAM verifiers, never in plaintext.

// NewPassword returns 32 random characters from [A-Za-z0-9] (190 bits).
func NewPassword() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, 32)
	buf := make([]byte, 64)
	for len(out) < 32 {
		_, _ = rand.Read(buf) // never fails (Go 1.24+)
		for _, b := range buf {
			if int(b) < 248 && len(out) < 32 { // 248 = 4·62: no modulo bias
				out = append(out, alphabet[int(b)%62])
			}
		}
	}
	return string(out)
}

// SCRAMVerifier computes PostgreSQL's SCRAM-SHA-256 verifier for password,
// so only the verifier (never the plaintext) reaches the server and its
// logs. password must be ASCII without special characters (SASLprep is the
// identity then), as NewPassword's are.
func SCRAMVerifier(password string) (string, error) {
	const iter = 4096
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		return "", fmt.Errorf("derive scram key: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(stored[:]), b64(server)), nil
}

// adminConn connects to the current primary as the superuser over its unix
// socket, to database ("" for postgres).
func (c *Cluster) adminConn(ctx context.Context, database string) (*pgx.Conn, error) {
	p := c.Primary()
	if p.Name == "" {
		return nil, errors.New("the database is not running")
	}
	cfg, err := pgx.ParseConfig(p.AdminDSN())
	if err != nil {
		return nil, err
	}
	if database != "" {
		cfg.Database = database
	}
	cfg.ConnectTimeout = 5 * time.Second
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to primary %s: %w", p.Name, err)
	}
	return conn, nil
}

// setPassword sets role's password to the SCRAM verifier of password.
func setPassword(ctx context.Context, conn *pgx.Conn, role, password string) error {
	v, err := SCRAMVerifier(password)
	if err != nil {
		return err
	}
	// PostgreSQL echoes a failed statement to its log (log_min_error_statement
	// = error): keep the verifier out of it for this statement only.
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL log_min_error_statement = panic"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" PASSWORD "+quoteLiteral(v))
		return err
	})
	if err != nil {
		return fmt.Errorf("set password of %s: %w", role, err)
	}
	return nil
}

// SetPassword sets role's password on the primary (as a SCRAM verifier).
func (c *Cluster) SetPassword(ctx context.Context, role, password string) error {
	conn, err := c.adminConn(ctx, "")
	if err != nil {
		return fmt.Errorf("set password of %s: %w", role, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return setPassword(ctx, conn, role, password)
}

// ClearPassword removes role's password: nobody logs in as it any more.
func (c *Cluster) ClearPassword(ctx context.Context, role string) error {
	conn, err := c.adminConn(ctx, "")
	if err != nil {
		return fmt.Errorf("clear the password of %s: %w", role, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" PASSWORD NULL"); err != nil {
		return fmt.Errorf("clear the password of %s: %w", role, err)
	}
	return nil
}

// EnsureLoginRoles makes owner a role nobody logs in as (it owns the
// database and everything in it) and each of logins a LOGIN role that is a
// member of owner and acts as it (SET role = owner), creating what is
// missing: the alternating users a rotated secret switches between.
func (c *Cluster) EnsureLoginRoles(ctx context.Context, owner string, logins []string) error {
	conn, err := c.adminConn(ctx, "")
	if err != nil {
		return fmt.Errorf("set up login roles: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	oid := pgx.Identifier{owner}.Sanitize()
	if _, err := conn.Exec(ctx, "ALTER ROLE "+oid+" NOLOGIN"); err != nil {
		return fmt.Errorf("set up login roles: owner role %s: %w", owner, err)
	}
	for _, u := range logins {
		exists, err := roleExists(ctx, conn, u)
		if err != nil {
			return fmt.Errorf("set up login role %s: %w", u, err)
		}
		id := pgx.Identifier{u}.Sanitize()
		stmts := []string{"GRANT " + oid + " TO " + id, "ALTER ROLE " + id + " SET role = " + quoteLiteral(owner)}
		if !exists {
			stmts = append([]string{"CREATE ROLE " + id + " LOGIN"}, stmts...)
		}
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s); err != nil {
				return fmt.Errorf("set up login role %s: %w", u, err)
			}
		}
	}
	return nil
}

// EnsureWorkRole creates role (LOGIN) if it is missing, sets its password
// when password is not "", and lets it create tables in database's public
// schema: the drills' own role, never the app's.
func (c *Cluster) EnsureWorkRole(ctx context.Context, database, role, password string) error {
	conn, err := c.adminConn(ctx, database)
	if err != nil {
		return fmt.Errorf("set up role %s: %w", role, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	exists, err := roleExists(ctx, conn, role)
	if err != nil {
		return fmt.Errorf("set up role %s: %w", role, err)
	}
	id := pgx.Identifier{role}.Sanitize()
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE ROLE "+id+" LOGIN"); err != nil {
			return fmt.Errorf("create role %s: %w", role, err)
		}
	}
	if password != "" {
		if err := setPassword(ctx, conn, role, password); err != nil {
			return err
		}
	}
	if _, err := conn.Exec(ctx, "GRANT USAGE, CREATE ON SCHEMA public TO "+id); err != nil {
		return fmt.Errorf("grant %s: %w", role, err)
	}
	return nil
}

func roleExists(ctx context.Context, conn *pgx.Conn, role string) (bool, error) {
	var n int
	err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", role).Scan(&n)
	return n > 0, err
}

// Replication is the primary's view of its standby (pg_stat_replication).
type Replication struct {
	// State is streaming, catchup, ... or "none" when the standby is not connected.
	State string
	// Sync is sync, async, potential, or "none".
	Sync string
	// LagBytes is how far the standby's replay trails the primary's WAL
	// position; LagSeconds is replay_lag (0 when idle).
	LagBytes   int64
	LagSeconds float64
}

// Replication asks the primary how its standby replicates. It answers
// State and Sync "none" when there is no standby or it is not connected.
func (c *Cluster) Replication(ctx context.Context) (Replication, error) {
	out := Replication{State: "none", Sync: "none"}
	standby := c.Status().State.Standby
	if standby == "" {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := c.adminConn(ctx, "")
	if err != nil {
		return out, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var state, sync string
	var lagBytes, lagSec float64
	err = conn.QueryRow(ctx, `SELECT coalesce(state, ''), coalesce(sync_state, ''),
		coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::float8,
		coalesce(extract(epoch FROM replay_lag), 0)::float8
		FROM pg_stat_replication WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1`, standby).
		Scan(&state, &sync, &lagBytes, &lagSec)
	if errors.Is(err, pgx.ErrNoRows) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("query pg_stat_replication: %w", err)
	}
	return Replication{State: state, Sync: sync, LagBytes: int64(lagBytes), LagSeconds: lagSec}, nil
}

// TestLogin logs in to database through addr (the endpoint) as user with
// password pass. loggedIn is false, with the server's reason, when the server
// refuses the credential; err is set when the login could not be tried.
func TestLogin(ctx context.Context, addr, database, user, pass string) (loggedIn bool, reason string, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, "", fmt.Errorf("log in through %s: %w", addr, err)
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s sslmode=disable", host, port))
	if err != nil {
		return false, "", err
	}
	cfg.Database, cfg.User = database, user
	cfg.Password = pass
	cfg.ConnectTimeout = 5 * time.Second
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000") {
			return false, pe.Code + " " + pe.Message, nil
		}
		return false, "", fmt.Errorf("log in as %s through %s: %w", user, addr, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var who string
	if err := conn.QueryRow(ctx, "SELECT session_user").Scan(&who); err != nil {
		return false, "", fmt.Errorf("query as %s: %w", user, err)
	}
	if who != user {
		return false, "logged in as " + who, nil
	}
	return true, "", nil
}
