package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotFound is returned when a row does not exist or is not visible to the
// caller.
var ErrNotFound = errors.New("not found")

// User is a student or teacher.
type User struct {
	ID    int64  `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
	Role  string `json:"role"`
}

// IsTeacher reports whether the user teaches.
func (u User) IsTeacher() bool { return u.Role == "teacher" }

// Course is one course as listed.
type Course struct {
	ID          int64  `json:"id"`
	Code        string `json:"code"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Teacher     string `json:"teacher"`
	Students    int    `json:"students,omitempty"`
}

// Material describes a file attached to a course (content not included).
type Material struct {
	ID          int64  `json:"id"`
	Title       string `json:"title"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int    `json:"size"`
	// URL is where the user downloads it: a signed URL at the edge for a
	// material in the bucket, else the app's download path.
	URL string `json:"url"`
	// ObjectKey is its key in the bucket; empty while its bytes are still
	// in the database.
	ObjectKey string `json:"-"`
}

// Grade is one graded assignment.
type Grade struct {
	CourseID    int64     `json:"course_id"`
	CourseCode  string    `json:"course_code"`
	CourseTitle string    `json:"course_title"`
	Student     string    `json:"student,omitempty"`
	Assignment  string    `json:"assignment"`
	Score       float64   `json:"score"`
	GradedAt    time.Time `json:"graded_at"`
}

// Session is a logged-in session joined with its user.
type Session struct {
	User      User
	CSRFToken string
	ExpiresAt time.Time
}

// Store holds the app's queries on top of DB's retry policy.
type Store struct {
	db    *DB
	clock Clock
	ttl   time.Duration
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// UserByEmail returns the user and password hash.
func (s *Store) UserByEmail(ctx context.Context, email string) (User, string, error) {
	var u User
	var hash string
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		return q.QueryRow(ctx, `SELECT id, email, name, role, password_hash FROM users WHERE email = $1`, email).
			Scan(&u.ID, &u.Email, &u.Name, &u.Role, &hash)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, "", ErrNotFound
	}
	if err != nil {
		return User{}, "", fmt.Errorf("look up user: %w", err)
	}
	return u, hash, nil
}

// CreateSession stores a new session and returns its cookie token. Only the
// token's SHA-256 is stored, so a database dump does not yield live sessions.
// When the login was a password check counted by ReserveLogin, release gives
// its attempt back in the same transaction; SSO logins pass nil.
func (s *Store) CreateSession(ctx context.Context, userID int64, release *loginReservation) (token string, sess Session, err error) {
	return s.createSession(ctx, userID, release, "")
}

// createSession is CreateSession, keeping idToken (the ID token of a single
// sign-on, "" for a password login) for the logout at the provider.
func (s *Store) createSession(ctx context.Context, userID int64, release *loginReservation, idToken string) (token string, sess Session, err error) {
	token = randomToken()
	csrf := randomToken()
	exp := s.clock.Now().Add(s.ttl)
	// Idempotent: the token is fixed before the first attempt, so a retried
	// insert after an unknown COMMIT is a no-op.
	err = s.db.WriteIdempotent(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at, id_token)
			VALUES ($1, $2, $3, $4, NULLIF($5, '')) ON CONFLICT (token_hash) DO NOTHING`, hashToken(token), userID, csrf, exp, idToken); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1 AND expires_at < now()`, userID); err != nil {
			return err
		}
		if release != nil {
			return releaseLogin(ctx, tx, release)
		}
		return nil
	})
	if err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	return token, Session{CSRFToken: csrf, ExpiresAt: exp}, nil
}

// SessionByToken returns the live session for a cookie token.
func (s *Store) SessionByToken(ctx context.Context, token string) (Session, error) {
	var sess Session
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		return q.QueryRow(ctx, `SELECT u.id, u.email, u.name, u.role, s.csrf_token, s.expires_at
			FROM sessions s JOIN users u ON u.id = s.user_id
			WHERE s.token_hash = $1 AND s.expires_at > $2`, hashToken(token), s.clock.Now()).
			Scan(&sess.User.ID, &sess.User.Email, &sess.User.Name, &sess.User.Role, &sess.CSRFToken, &sess.ExpiresAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("look up session: %w", err)
	}
	return sess, nil
}

// DeleteSession logs a session out. It returns the ID token kept with a
// single sign-on session ("" for a password login, or when a retry after a
// lost COMMIT found the session already gone).
func (s *Store) DeleteSession(ctx context.Context, token string) (idToken string, err error) {
	err = s.db.WriteIdempotent(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var t *string
		err := tx.QueryRow(ctx, `DELETE FROM sessions WHERE token_hash = $1 RETURNING id_token`, hashToken(token)).Scan(&t)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if t != nil {
			idToken = *t
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("delete session: %w", err)
	}
	return idToken, nil
}

// CoursesFor lists a student's enrolled courses or a teacher's taught courses.
func (s *Store) CoursesFor(ctx context.Context, u User) ([]Course, error) {
	var out []Course
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		out = out[:0]
		var rows pgx.Rows
		var err error
		if u.IsTeacher() {
			rows, err = q.Query(ctx, `SELECT c.id, c.code, c.title, c.description, t.name,
				(SELECT count(*) FROM enrolments e WHERE e.course_id = c.id)
				FROM courses c JOIN users t ON t.id = c.teacher_id
				WHERE c.teacher_id = $1 ORDER BY c.code`, u.ID)
		} else {
			rows, err = q.Query(ctx, `SELECT c.id, c.code, c.title, c.description, t.name, 0
				FROM enrolments e JOIN courses c ON c.id = e.course_id JOIN users t ON t.id = c.teacher_id
				WHERE e.student_id = $1 ORDER BY c.code`, u.ID)
		}
		if err != nil {
			return err
		}
		for rows.Next() {
			var c Course
			if err := rows.Scan(&c.ID, &c.Code, &c.Title, &c.Description, &c.Teacher, &c.Students); err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list courses: %w", err)
	}
	return out, nil
}

// CourseDetail is a course with its materials, visible to the user.
type CourseDetail struct {
	Course    Course     `json:"course"`
	Materials []Material `json:"materials"`
	Grades    []Grade    `json:"grades"`
	// Roster is filled for the course's teacher only (first 200 students).
	Roster []User `json:"roster,omitempty"`
}

// Course returns a course if u is enrolled in it or teaches it.
func (s *Store) Course(ctx context.Context, u User, id int64) (CourseDetail, error) {
	var d CourseDetail
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		d = CourseDetail{}
		var teacherID int64
		err := q.QueryRow(ctx, `SELECT c.id, c.code, c.title, c.description, t.name, t.id,
			(SELECT count(*) FROM enrolments e WHERE e.course_id = c.id)
			FROM courses c JOIN users t ON t.id = c.teacher_id
			WHERE c.id = $1 AND (c.teacher_id = $2 OR EXISTS
				(SELECT 1 FROM enrolments e WHERE e.course_id = c.id AND e.student_id = $2))`, id, u.ID).
			Scan(&d.Course.ID, &d.Course.Code, &d.Course.Title, &d.Course.Description, &d.Course.Teacher, &teacherID, &d.Course.Students)
		if err != nil {
			return err
		}
		rows, err := q.Query(ctx, `SELECT id, title, filename, content_type, COALESCE(size_bytes, octet_length(content)), COALESCE(object_key, '')
			FROM materials WHERE course_id = $1 ORDER BY id`, id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var m Material
			if err := rows.Scan(&m.ID, &m.Title, &m.Filename, &m.ContentType, &m.Size, &m.ObjectKey); err != nil {
				return err
			}
			d.Materials = append(d.Materials, m)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if teacherID == u.ID {
			rows, err = q.Query(ctx, `SELECT u.id, u.email, u.name, u.role FROM enrolments e
				JOIN users u ON u.id = e.student_id WHERE e.course_id = $1 ORDER BY u.id LIMIT 200`, id)
			if err != nil {
				return err
			}
			for rows.Next() {
				var r User
				if err := rows.Scan(&r.ID, &r.Email, &r.Name, &r.Role); err != nil {
					return err
				}
				d.Roster = append(d.Roster, r)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			d.Grades, err = queryGrades(ctx, q, `SELECT g.course_id, c.code, c.title, u.email, g.assignment, g.score::float8, g.graded_at
				FROM grades g JOIN courses c ON c.id = g.course_id JOIN users u ON u.id = g.student_id
				WHERE g.course_id = $1 ORDER BY g.graded_at DESC, g.id DESC LIMIT 20`, id)
			return err
		}
		d.Grades, err = queryGrades(ctx, q, `SELECT g.course_id, c.code, c.title, '', g.assignment, g.score::float8, g.graded_at
			FROM grades g JOIN courses c ON c.id = g.course_id
			WHERE g.course_id = $1 AND g.student_id = $2 ORDER BY g.assignment`, id, u.ID)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return CourseDetail{}, ErrNotFound
	}
	if err != nil {
		return CourseDetail{}, fmt.Errorf("get course %d: %w", id, err)
	}
	return d, nil
}

func queryGrades(ctx context.Context, q Querier, sql string, args ...any) ([]Grade, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	var out []Grade
	for rows.Next() {
		var g Grade
		if err := rows.Scan(&g.CourseID, &g.CourseCode, &g.CourseTitle, &g.Student, &g.Assignment, &g.Score, &g.GradedAt); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// MaterialContent is a downloadable file.
type MaterialContent struct {
	Material
	// Content is the bytes when they are still in the database (no
	// ObjectKey); nil otherwise.
	Content []byte
}

// Material returns a material (its bytes, while they are in the database)
// if u may see its course.
func (s *Store) Material(ctx context.Context, u User, courseID, materialID int64) (MaterialContent, error) {
	var m MaterialContent
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		return q.QueryRow(ctx, `SELECT m.id, m.title, m.filename, m.content_type, COALESCE(m.size_bytes, octet_length(m.content)),
				COALESCE(m.object_key, ''), CASE WHEN m.object_key IS NULL THEN m.content END
			FROM materials m JOIN courses c ON c.id = m.course_id
			WHERE m.id = $1 AND m.course_id = $2 AND (c.teacher_id = $3 OR EXISTS
				(SELECT 1 FROM enrolments e WHERE e.course_id = c.id AND e.student_id = $3))`, materialID, courseID, u.ID).
			Scan(&m.ID, &m.Title, &m.Filename, &m.ContentType, &m.Size, &m.ObjectKey, &m.Content)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return MaterialContent{}, ErrNotFound
	}
	if err != nil {
		return MaterialContent{}, fmt.Errorf("get material %d: %w", materialID, err)
	}
	return m, nil
}

// GradesFor lists a student's grades across courses.
func (s *Store) GradesFor(ctx context.Context, u User) ([]Grade, error) {
	var out []Grade
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		var err error
		out, err = queryGrades(ctx, q, `SELECT g.course_id, c.code, c.title, '', g.assignment, g.score::float8, g.graded_at
			FROM grades g JOIN courses c ON c.id = g.course_id
			WHERE g.student_id = $1 ORDER BY c.code, g.assignment`, u.ID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list grades: %w", err)
	}
	return out, nil
}

// ErrNotEnrolled is returned when grading a student who is not in the course.
var ErrNotEnrolled = errors.New("student is not enrolled in this course")

// studentRef names a student by email (the course page's form) or by id
// (the gradebook).
type studentRef struct {
	ID    int64
	Email string
}

// PostGrade records (or replaces) a grade. Only the course's teacher may.
// It is an upsert keyed by (course, student, assignment), so it is idempotent.
func (s *Store) PostGrade(ctx context.Context, teacher User, courseID int64, student studentRef, assignment string, score float64) error {
	err := s.db.WriteIdempotent(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1 AND teacher_id = $2)`, courseID, teacher.ID).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		var studentID int64
		var err error
		if student.Email != "" {
			err = tx.QueryRow(ctx, `SELECT u.id FROM users u JOIN enrolments e ON e.student_id = u.id AND e.course_id = $1
				WHERE u.email = $2`, courseID, student.Email).Scan(&studentID)
		} else {
			err = tx.QueryRow(ctx, `SELECT student_id FROM enrolments WHERE course_id = $1 AND student_id = $2`,
				courseID, student.ID).Scan(&studentID)
		}
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotEnrolled
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO grades (course_id, student_id, assignment, score, graded_by)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (course_id, student_id, assignment)
			DO UPDATE SET score = EXCLUDED.score, graded_by = EXCLUDED.graded_by, graded_at = now()`,
			courseID, studentID, assignment, score, teacher.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("post grade: %w", err)
	}
	return nil
}
