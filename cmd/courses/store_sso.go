package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// errUnverifiedEmail refuses a first sign-in that would have to create or
// link an account by an email the provider did not verify.
var errUnverifiedEmail = errors.New("no verified email to match the account by")

// ssoPasswordHash is the password_hash of an account created by single
// sign-on: not a bcrypt hash, so no password ever matches it.
const ssoPasswordHash = "!sso"

// LinkSSOUser returns the account of a provider's subject, creating or
// linking it on the first sign-in, and sets its role (the provider's groups
// decide it) and name.
//
//   - A known (issuer, subject) is the account it was linked to.
//   - Otherwise, with a verified email: the account with that email is
//     linked (a seeded teacher, say), or a new one is created without a
//     password.
//   - Otherwise errUnverifiedEmail.
//
// It is idempotent, so a retry after a lost COMMIT is safe.
func (s *Store) LinkSSOUser(ctx context.Context, id ssoIdentity, role string) (User, error) {
	var u User
	err := s.db.WriteIdempotent(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var userID int64
		err := tx.QueryRow(ctx, `SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2`, id.Issuer, id.Subject).Scan(&userID)
		if errors.Is(err, pgx.ErrNoRows) {
			if !id.EmailVerified || id.Email == "" {
				return errUnverifiedEmail
			}
			if _, err := tx.Exec(ctx, `INSERT INTO users (email, name, role, password_hash) VALUES ($1, $2, $3, $4)
				ON CONFLICT (email) DO NOTHING`, id.Email, id.Name, role, ssoPasswordHash); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT id FROM users WHERE email = $1`, id.Email).Scan(&userID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO user_identities (issuer, subject, user_id) VALUES ($1, $2, $3)
				ON CONFLICT (issuer, subject) DO NOTHING`, id.Issuer, id.Subject, userID); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE user_identities SET last_login = now() WHERE issuer = $1 AND subject = $2`, id.Issuer, id.Subject); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `UPDATE users SET role = $2, name = CASE WHEN $3 = '' THEN name ELSE $3 END
			WHERE id = $1 RETURNING id, email, name, role`, userID, role, id.Name).Scan(&u.ID, &u.Email, &u.Name, &u.Role)
	})
	if errors.Is(err, errUnverifiedEmail) {
		return User{}, err
	}
	if err != nil {
		return User{}, fmt.Errorf("link single sign-on user: %w", err)
	}
	return u, nil
}
