package rdslogins

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ensureRoles makes the database look like the local region's: owner owns
// the database and nobody logs in as it; each login is a member of owner
// whose sessions act as owner (SET role), so whatever either login creates
// belongs to owner and the other login can use and migrate it. It runs as
// the RDS master (CREATEROLE, not a superuser) and is idempotent.
func ensureRoles(ctx context.Context, conn *pgx.Conn, dbName, owner string, logins [2]string) error {
	oid := pgx.Identifier{owner}.Sanitize()
	exists := func(role string) (bool, error) {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", role).Scan(&n)
		return n > 0, err
	}
	var stmts []string
	ok, err := exists(owner)
	if err != nil {
		return fmt.Errorf("look up role %s: %w", owner, err)
	}
	if !ok {
		stmts = append(stmts, "CREATE ROLE "+oid+" NOLOGIN")
	} else {
		stmts = append(stmts, "ALTER ROLE "+oid+" NOLOGIN")
	}
	// The master may hand the database to owner only as a member of it.
	stmts = append(stmts, "GRANT "+oid+" TO CURRENT_USER",
		"ALTER DATABASE "+pgx.Identifier{dbName}.Sanitize()+" OWNER TO "+oid)
	for _, l := range logins {
		lid := pgx.Identifier{l}.Sanitize()
		ok, err := exists(l)
		if err != nil {
			return fmt.Errorf("look up role %s: %w", l, err)
		}
		if !ok {
			stmts = append(stmts, "CREATE ROLE "+lid+" LOGIN")
		} else {
			stmts = append(stmts, "ALTER ROLE "+lid+" LOGIN")
		}
		stmts = append(stmts, "GRANT "+oid+" TO "+lid, "ALTER ROLE "+lid+" SET role = "+quoteLiteral(owner))
	}
	for _, st := range stmts {
		if _, err := conn.Exec(ctx, st); err != nil {
			return fmt.Errorf("create the app's roles: %s: %w", st, err)
		}
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// setRolePassword sets user's password to the SCRAM verifier of password, so
// the plaintext never reaches the server or its logs.
func setRolePassword(ctx context.Context, conn *pgx.Conn, user, password string) error {
	v, err := scramVerifier(password)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// A failed statement is echoed to the server log: keep even the
		// verifier out of it where the role may change the setting (RDS's
		// master may not; then the verifier, never the password, could show).
		if _, err := tx.Exec(ctx, "SAVEPOINT quiet"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SET LOCAL log_min_error_statement = panic"); err != nil {
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT quiet"); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "ALTER ROLE "+pgx.Identifier{user}.Sanitize()+" PASSWORD "+quoteLiteral(v))
		return err
	})
	if err != nil {
		return fmt.Errorf("set the password of %s: %w", user, err)
	}
	return nil
}

// scramVerifier computes PostgreSQL's SCRAM-SHA-256 verifier of password.
// password must be ASCII letters and digits (SASLprep is then the identity),
// as newPassword makes them.
func scramVerifier(password string) (string, error) {
	const iter = 4096
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		return "", fmt.Errorf("derive the SCRAM key: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(stored[:]), b64(server)), nil
}

// newPassword returns 32 random characters from [A-Za-z0-9] (190 bits).
func newPassword() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, 32)
	buf := make([]byte, 64)
	for len(out) < 32 {
		_, _ = rand.Read(buf)
		for _, b := range buf {
			if int(b) < 248 && len(out) < 32 { // 248 = 4·62: no modulo bias
				out = append(out, alphabet[int(b)%62])
			}
		}
	}
	return string(out)
}
