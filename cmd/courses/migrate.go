package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// migrationLockKey is the pg_advisory_lock key that serialises migrations
// across instances starting at the same time ("courses" in ASCII).
const migrationLockKey int64 = 0x636f7572736573

type migration struct {
	version int
	name    string
	sql     string
}

// breakingMarker starts a line of a migration's SQL that marks it as
// breaking the app versions before it, and says why:
//
//	-- breaking: drops sessions.id_token, which versions before 4 still write
//
// `courses migrations --json` reports it, so a deploy tool can refuse to roll
// such a version out beside an older one (haven deploy does, unless given
// --allow-breaking).
const breakingMarker = "-- breaking:"

// migrations are applied in order, each in its own transaction. Append only.
//
// They follow expand and contract, so an older app version running side by
// side during a rolling deploy keeps working: every migration after the
// first is expand-only (it adds tables, nullable columns or columns with
// defaults, or indexes). A contract step (drop, rename, retype, or a new
// constraint on existing data) ships in a later version than the one that
// stopped using what it removes, and carries the breaking marker.
// TestMigrationsExpandOnly holds this: an unmarked migration may not contract.
var migrations = []migration{
	{1, "initial schema", `
CREATE TABLE users (
	id            bigserial PRIMARY KEY,
	email         text NOT NULL UNIQUE,
	name          text NOT NULL,
	role          text NOT NULL CHECK (role IN ('student', 'teacher')),
	password_hash text NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE courses (
	id          bigserial PRIMARY KEY,
	code        text NOT NULL UNIQUE,
	title       text NOT NULL,
	description text NOT NULL DEFAULT '',
	teacher_id  bigint NOT NULL REFERENCES users(id)
);
CREATE INDEX courses_teacher_idx ON courses (teacher_id);
CREATE TABLE enrolments (
	course_id   bigint NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
	student_id  bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	enrolled_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (course_id, student_id)
);
CREATE INDEX enrolments_student_idx ON enrolments (student_id);
CREATE TABLE materials (
	id           bigserial PRIMARY KEY,
	course_id    bigint NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
	title        text NOT NULL,
	filename     text NOT NULL,
	content_type text NOT NULL,
	content      bytea NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX materials_course_idx ON materials (course_id);
CREATE TABLE grades (
	id         bigserial PRIMARY KEY,
	course_id  bigint NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
	student_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	assignment text NOT NULL,
	score      numeric(5,1) NOT NULL CHECK (score >= 0 AND score <= 100),
	graded_by  bigint REFERENCES users(id),
	graded_at  timestamptz NOT NULL DEFAULT now(),
	UNIQUE (course_id, student_id, assignment)
);
CREATE INDEX grades_student_idx ON grades (student_id);
CREATE TABLE sessions (
	token_hash bytea PRIMARY KEY,
	user_id    bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	csrf_token text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
CREATE TABLE app_meta (
	key   text PRIMARY KEY,
	value text NOT NULL
);
`},
	// The login throttle's counters (throttle.go). A new table: an older app
	// version ignores it (and does not throttle).
	{2, "login throttle", `
CREATE TABLE login_throttle (
	scope        text NOT NULL,
	key          text NOT NULL,
	attempts     integer NOT NULL,
	window_start timestamptz NOT NULL,
	PRIMARY KEY (scope, key)
);
CREATE INDEX login_throttle_window_idx ON login_throttle (window_start);
`},
	// Single sign-on (sso.go): who each provider's subject is here, and the
	// ID token a session needs to end the session at the provider too. A new
	// table and a nullable column: an older app version ignores both.
	{3, "single sign-on", `
CREATE TABLE user_identities (
	issuer     text NOT NULL,
	subject    text NOT NULL,
	user_id    bigint NOT NULL REFERENCES users(id),
	created_at timestamptz NOT NULL DEFAULT now(),
	last_login timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user_idx ON user_identities (user_id);
ALTER TABLE sessions ADD COLUMN id_token text;
`},
	// Materials move to S3 (materials.go). Expand: where a material's
	// bytes are (object_key) and their size, nullable, and the uploads a
	// teacher has started but not finished. The content column stays: an
	// older version reads it, and `courses release` moves its bytes out
	// (content becomes empty) once every instance reads object_key. Only a
	// later contract step may drop it.
	{4, "materials in S3", `
ALTER TABLE materials ADD COLUMN object_key text;
ALTER TABLE materials ADD COLUMN size_bytes bigint;
CREATE UNIQUE INDEX materials_object_key_idx ON materials (object_key);
CREATE TABLE material_uploads (
	id           bigserial PRIMARY KEY,
	course_id    bigint NOT NULL REFERENCES courses(id),
	teacher_id   bigint NOT NULL REFERENCES users(id),
	title        text NOT NULL,
	filename     text NOT NULL,
	content_type text NOT NULL,
	size_bytes   bigint NOT NULL,
	object_key   text NOT NULL UNIQUE,
	created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX material_uploads_created_idx ON material_uploads (created_at);
`},
}

// Migrate applies pending migrations. It holds a session-level advisory lock
// for the whole run, so concurrent callers (several instances starting at
// once) apply each migration exactly once; the losers wait, then find nothing
// to do. It returns the versions it applied.
func Migrate(ctx context.Context, db *DB, log *slog.Logger) ([]int, error) {
	var applied []int
	err := db.Read(ctx, func(ctx context.Context, _ Querier) error {
		applied = applied[:0]
		conn, err := db.pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("acquire connection: %w", err)
		}
		defer conn.Release()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		defer func() {
			// If the connection broke the lock is gone with it.
			_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey)
		}()
		if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		done := map[int]bool{}
		rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return fmt.Errorf("list applied migrations: %w", err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				return fmt.Errorf("scan migration version: %w", err)
			}
			done[v] = true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list applied migrations: %w", err)
		}
		for _, m := range migrations {
			if done[m.version] {
				continue
			}
			tx, err := conn.Begin(ctx)
			if err != nil {
				return fmt.Errorf("begin migration %d: %w", m.version, err)
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("apply migration %d (%s): %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("record migration %d: %w", m.version, err)
			}
			// A lost COMMIT here is harmless to retry: the next attempt
			// re-reads schema_migrations under the lock.
			if err := tx.Commit(ctx); err != nil {
				return fmt.Errorf("commit migration %d: %w", m.version, err)
			}
			applied = append(applied, m.version)
			log.Info("applied migration", "version", m.version, "name", m.name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}

// breakingReason returns why m breaks the versions before it (the text after
// its breaking marker), or "" for an expand-only migration.
func (m migration) breakingReason() string {
	for _, line := range strings.Split(m.sql, "\n") {
		if r, ok := strings.CutPrefix(strings.TrimSpace(line), breakingMarker); ok {
			if r = strings.TrimSpace(r); r != "" {
				return r
			}
			return "marked breaking"
		}
	}
	return ""
}

// MigrationInfo is one migration as `courses migrations --json` lists it:
// what a deploy tool needs to tell whether a version may run beside an
// older one.
type MigrationInfo struct {
	Version  int    `json:"version"`
	Name     string `json:"name"`
	Breaking bool   `json:"breaking"`
	// Reason says why a breaking migration breaks older versions.
	Reason string `json:"reason,omitempty"`
}

// migrationList returns ms as `courses migrations` lists them.
func migrationList(ms []migration) []MigrationInfo {
	out := make([]MigrationInfo, 0, len(ms))
	for _, m := range ms {
		r := m.breakingReason()
		out = append(out, MigrationInfo{Version: m.version, Name: m.name, Breaking: r != "", Reason: r})
	}
	return out
}
