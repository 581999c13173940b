package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// ErrUploadMismatch means the object a teacher uploaded is not the one
// they announced (its size differs).
var ErrUploadMismatch = errors.New("the uploaded file is not the one announced")

// Upload is a teacher's upload in progress: announced, not yet confirmed.
type Upload struct {
	ID          int64
	CourseID    int64
	Title       string
	Filename    string
	ContentType string
	Size        int64
	ObjectKey   string
}

// CreateUpload records an upload a teacher of the course announces; key
// names its object from the upload's id. It returns ErrNotFound when u
// does not teach the course. Uploads older than a day that were never
// confirmed are forgotten on the way (the bucket's lifecycle rule aborts
// their multipart parts; a finished orphan object stays until deleted).
func (s *Store) CreateUpload(ctx context.Context, u User, courseID int64, title, filename, contentType string, size int64, key func(id int64) string) (Upload, error) {
	up := Upload{CourseID: courseID, Title: title, Filename: filename, ContentType: contentType, Size: size}
	err := s.db.Write(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1 AND teacher_id = $2)`, courseID, u.ID).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		if _, err := tx.Exec(ctx, `DELETE FROM material_uploads WHERE id IN
			(SELECT id FROM material_uploads WHERE created_at < now() - interval '1 day' LIMIT 50 FOR UPDATE SKIP LOCKED)`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT nextval('material_uploads_id_seq')`).Scan(&up.ID); err != nil {
			return err
		}
		up.ObjectKey = key(up.ID)
		_, err := tx.Exec(ctx, `INSERT INTO material_uploads (id, course_id, teacher_id, title, filename, content_type, size_bytes, object_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, up.ID, courseID, u.ID, title, filename, contentType, size, up.ObjectKey)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Upload{}, ErrNotFound
		}
		return Upload{}, fmt.Errorf("create upload: %w", err)
	}
	return up, nil
}

// UploadOf returns an upload of the course that u started.
func (s *Store) UploadOf(ctx context.Context, u User, courseID, uploadID int64) (Upload, error) {
	var up Upload
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		return q.QueryRow(ctx, `SELECT id, course_id, title, filename, content_type, size_bytes, object_key
			FROM material_uploads WHERE id = $1 AND course_id = $2 AND teacher_id = $3`, uploadID, courseID, u.ID).
			Scan(&up.ID, &up.CourseID, &up.Title, &up.Filename, &up.ContentType, &up.Size, &up.ObjectKey)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Upload{}, ErrNotFound
	}
	if err != nil {
		return Upload{}, fmt.Errorf("get upload %d: %w", uploadID, err)
	}
	return up, nil
}

// CompleteUpload turns a confirmed upload into a material of its course.
// Confirming twice is harmless: the second finds the material already made.
func (s *Store) CompleteUpload(ctx context.Context, up Upload) (Material, error) {
	m := Material{Title: up.Title, Filename: up.Filename, ContentType: up.ContentType, Size: int(up.Size), ObjectKey: up.ObjectKey}
	err := s.db.WriteIdempotent(ctx, func(ctx context.Context, tx pgx.Tx) error {
		// content stays empty: an older version still reads the column.
		err := tx.QueryRow(ctx, `INSERT INTO materials (course_id, title, filename, content_type, content, object_key, size_bytes)
			VALUES ($1, $2, $3, $4, '\x', $5, $6)
			ON CONFLICT (object_key) DO UPDATE SET title = EXCLUDED.title RETURNING id`,
			up.CourseID, up.Title, up.Filename, up.ContentType, up.ObjectKey, up.Size).Scan(&m.ID)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM material_uploads WHERE id = $1`, up.ID)
		return err
	})
	if err != nil {
		return Material{}, fmt.Errorf("complete upload %d: %w", up.ID, err)
	}
	return m, nil
}

// MaterialByKey returns the material stored at key, and its course, if u
// may see the course.
func (s *Store) MaterialByKey(ctx context.Context, u User, key string) (Material, int64, error) {
	var m Material
	var courseID int64
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		return q.QueryRow(ctx, `SELECT m.id, m.course_id, m.title, m.filename, m.content_type, COALESCE(m.size_bytes, 0), m.object_key
			FROM materials m JOIN courses c ON c.id = m.course_id
			WHERE m.object_key = $1 AND (c.teacher_id = $2 OR EXISTS
				(SELECT 1 FROM enrolments e WHERE e.course_id = c.id AND e.student_id = $2))`, key, u.ID).
			Scan(&m.ID, &courseID, &m.Title, &m.Filename, &m.ContentType, &m.Size, &m.ObjectKey)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Material{}, 0, ErrNotFound
	}
	if err != nil {
		return Material{}, 0, fmt.Errorf("get material at %s: %w", key, err)
	}
	return m, courseID, nil
}

// MoveResult says what MoveMaterials did.
type MoveResult struct {
	Moved, Bytes int64
}

// MoveMaterials moves the bytes of materials still in the database to the
// bucket, batch by batch: each object is stored and checked (its size read
// back), then the row points at it and its content becomes empty. Rows are
// claimed with SKIP LOCKED, so two movers share the work, and a mover that
// dies leaves its batch to the next: storing an object twice is harmless.
// Call it once every instance reads object_key (this version or later).
func MoveMaterials(ctx context.Context, db *DB, m *Materials, batch int) (MoveResult, error) {
	var res MoveResult
	for {
		n := 0
		err := db.Write(ctx, func(ctx context.Context, tx pgx.Tx) error {
			n = 0
			rows, err := tx.Query(ctx, `SELECT id, course_id, filename, content_type, content FROM materials
				WHERE object_key IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, batch)
			if err != nil {
				return err
			}
			type row struct {
				id, course  int64
				name, ctype string
				content     []byte
			}
			var todo []row
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.id, &r.course, &r.name, &r.ctype, &r.content); err != nil {
					return err
				}
				todo = append(todo, r)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			for _, r := range todo {
				key := m.Key(r.course, strconv.FormatInt(r.id, 10), r.name)
				if err := m.Put(ctx, key, r.ctype, r.content); err != nil {
					return err
				}
				size, err := m.Stat(ctx, key)
				if err != nil {
					return err
				}
				if size != int64(len(r.content)) {
					return fmt.Errorf("move material %d: the bucket holds %d bytes at %s, the database %d", r.id, size, key, len(r.content))
				}
				if _, err := tx.Exec(ctx, `UPDATE materials SET object_key = $1, size_bytes = $2, content = '\x' WHERE id = $3`, key, size, r.id); err != nil {
					return err
				}
				res.Bytes += size
			}
			n = len(todo)
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("move materials to s3://%s: %w", m.cfg.Bucket, err)
		}
		res.Moved += int64(n)
		if n < batch {
			return res, nil
		}
	}
}
