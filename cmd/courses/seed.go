package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
)

// seedLockKey serialises concurrent seeders.
const seedLockKey int64 = 0x636f7572736573 + 1

// SeedConfig configures Seed.
type SeedConfig struct {
	// Students is the number of students. student<N>@example.edu, N from 1.
	Students int
	// Courses is the number of courses.
	Courses int
	// Teachers is the number of teachers; 0 means one per 10 courses (min 1).
	Teachers int
	// PerStudent is the average number of enrolments per student (default 5).
	PerStudent int
	// LargeCourse is how many students course 1 has: student1..studentN,
	// and no one else, so a teacher (teacher1) can try the gradebook at a
	// real class size. Capped at Students. Default 651 (DefaultLargeCourse);
	// negative: course 1 is like every other.
	LargeCourse int
	// Password is shared by every seeded user; it is hashed once.
	Password string
	// Force replaces existing data; without it an already-seeded database is
	// left alone.
	Force bool
	// Progress receives progress lines; nil discards them.
	Progress io.Writer

	// hashCost is the bcrypt cost; 0 means bcrypt.DefaultCost. Tests lower
	// it, since bcrypt under the race detector is slow on purpose.
	hashCost int
}

// DefaultLargeCourse is the size of the seed's large course.
const DefaultLargeCourse = 651

// Validate checks the configuration and fills defaults.
func (c *SeedConfig) Validate() error {
	if c.Students < 1 {
		return fmt.Errorf("--students: must be ≥ 1, got %d", c.Students)
	}
	if c.Courses < 1 {
		return fmt.Errorf("--courses: must be ≥ 1, got %d", c.Courses)
	}
	if c.Teachers < 0 {
		return fmt.Errorf("--teachers: must be ≥ 0, got %d", c.Teachers)
	}
	if c.Teachers == 0 {
		c.Teachers = max(1, c.Courses/10)
	}
	if c.PerStudent == 0 {
		c.PerStudent = 5
	}
	if c.PerStudent < 1 {
		return fmt.Errorf("--courses-per-student: must be ≥ 1, got %d", c.PerStudent)
	}
	if c.LargeCourse == 0 {
		c.LargeCourse = DefaultLargeCourse
	}
	if len(c.Password) < 8 || len(c.Password) > 72 {
		return errors.New("--password: must be 8-72 bytes")
	}
	return nil
}

// SeedResult counts what Seed wrote.
type SeedResult struct {
	Skipped                                                    bool
	Students, Teachers, Courses, Enrolments, Materials, Grades int
	// LargeCourse is the number of students in course 1 when it is the
	// large course (0 otherwise).
	LargeCourse int
	Took        time.Duration
}

var (
	firstNames = []string{"Amara", "Ben", "Chen", "Dana", "Elif", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Kemal", "Lena",
		"Mateo", "Nadia", "Oscar", "Priya", "Quinn", "Rosa", "Samir", "Tara", "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe",
		"Aoife", "Bruno", "Carmen", "Dmitri", "Emma", "Farah", "Gabriel", "Hana", "Ivan", "Julia", "Kofi", "Lucia", "Milan",
		"Noor", "Olga", "Pablo", "Rania", "Sven", "Tomás", "Uma", "Viktor", "Wanjiru", "Yara", "Zain"}
	lastNames = []string{"Okafor", "Schmidt", "Nguyen", "García", "Kowalski", "Rossi", "Haddad", "Svensson", "Tanaka", "Murphy",
		"Dubois", "Singh", "Costa", "Novak", "Jensen", "Yilmaz", "Moreau", "Fischer", "Ahmed", "Silva", "Kim", "Müller",
		"Petrov", "O'Brien", "Lindqvist", "Mensah", "Ferreira", "Ivanova", "Bakker", "Hughes", "Park", "Romero", "Andersen",
		"Chowdhury", "Esposito", "Fontaine", "Gallagher", "Horvat", "Ishikawa", "Janssen"}
	subjects = []struct{ code, name string }{
		{"BIO", "Biology"}, {"CHE", "Chemistry"}, {"CS", "Computer Science"}, {"ECO", "Economics"}, {"ENG", "English Literature"},
		{"HIS", "History"}, {"MAT", "Mathematics"}, {"PHY", "Physics"}, {"PSY", "Psychology"}, {"SOC", "Sociology"},
		{"PHI", "Philosophy"}, {"ART", "Art History"}, {"MUS", "Music"}, {"LAW", "Law"}, {"MED", "Medicine"}, {"GEO", "Geography"},
	}
	titlePrefixes = []string{"Introduction to", "Foundations of", "Topics in", "Advanced", "Applied", "Seminar in", "Methods in", "Readings in"}
	titleTopics   = []string{"Theory", "Practice", "Research Methods", "Ethics", "Data Analysis", "Modern Perspectives",
		"Classical Texts", "Field Work", "Systems", "Writing", "Statistics", "History and Context"}
	assignments = []string{"Quiz 1", "Essay 1", "Lab report", "Midterm exam", "Project", "Final exam"}
)

// Seed writes deterministic demo data with COPY, in one transaction under
// an advisory lock. An already-seeded database is left alone unless Force.
func Seed(ctx context.Context, db *DB, cfg SeedConfig) (SeedResult, error) {
	start := time.Now()
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	// One hash for everyone: the password is shared, and bcrypt is slow on
	// purpose.
	hash, err := bcrypt.GenerateFromPassword([]byte(cfg.Password), cmp.Or(cfg.hashCost, bcrypt.DefaultCost))
	if err != nil {
		return SeedResult{}, fmt.Errorf("hash password: %w", err)
	}

	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return SeedResult{}, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return SeedResult{}, fmt.Errorf("begin seed: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", seedLockKey); err != nil {
		return SeedResult{}, fmt.Errorf("take seed lock: %w", err)
	}
	var seeded bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM app_meta WHERE key = 'seeded')").Scan(&seeded); err != nil {
		return SeedResult{}, fmt.Errorf("check seed marker: %w", err)
	}
	var users int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users); err != nil {
		return SeedResult{}, fmt.Errorf("count users: %w", err)
	}
	if (seeded || users > 0) && !cfg.Force {
		return SeedResult{Skipped: true}, nil
	}
	if cfg.Force {
		fmt.Fprintln(progress, "seed: --force: deleting existing data")
		if _, err := tx.Exec(ctx, `TRUNCATE grades, materials, enrolments, sessions, courses, users, login_throttle RESTART IDENTITY CASCADE;
			DELETE FROM app_meta WHERE key = 'seeded'`); err != nil {
			return SeedResult{}, fmt.Errorf("clear data: %w", err)
		}
	}

	r := rand.New(rand.NewPCG(2026, 60000))
	res := SeedResult{Students: cfg.Students, Teachers: cfg.Teachers, Courses: cfg.Courses}
	created := time.Date(2025, 9, 1, 8, 0, 0, 0, time.UTC)

	// Users: student N has id N; teachers follow.
	total := cfg.Students + cfg.Teachers
	i := 0
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"users"}, []string{"id", "email", "name", "role", "password_hash", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i >= total {
				return nil, nil
			}
			i++
			if i%20000 == 0 || i == total {
				fmt.Fprintf(progress, "seed: users %d/%d\n", i, total)
			}
			name := firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))]
			if i <= cfg.Students {
				return []any{int64(i), fmt.Sprintf("student%d@example.edu", i), name, "student", string(hash), created}, nil
			}
			t := i - cfg.Students
			return []any{int64(i), fmt.Sprintf("teacher%d@example.edu", t), "Dr. " + name, "teacher", string(hash), created}, nil
		}))
	if err != nil {
		return SeedResult{}, fmt.Errorf("copy users: %w", err)
	}

	// Courses.
	i = 0
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"courses"}, []string{"id", "code", "title", "description", "teacher_id"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i >= cfg.Courses {
				return nil, nil
			}
			i++
			subj := subjects[(i-1)%len(subjects)]
			level := 100 + ((i-1)/len(subjects))%4*100
			code := fmt.Sprintf("%s-%d-%d", subj.code, level, i)
			title := fmt.Sprintf("%s %s: %s", titlePrefixes[r.IntN(len(titlePrefixes))], subj.name, titleTopics[r.IntN(len(titleTopics))])
			desc := fmt.Sprintf("A %d-level course in %s. Weekly lectures, a reading list and graded assignments.", level, strings.ToLower(subj.name))
			teacher := int64(cfg.Students + 1 + (i-1)%cfg.Teachers)
			return []any{int64(i), code, title, desc, teacher}, nil
		}))
	if err != nil {
		return SeedResult{}, fmt.Errorf("copy courses: %w", err)
	}
	fmt.Fprintf(progress, "seed: courses %d/%d\n", cfg.Courses, cfg.Courses)

	// Enrolments (and their grades, generated alongside and copied after).
	// With a large course, students 1..large take course 1 plus random
	// others, and everyone else picks from courses 2 and up.
	large := 0
	if cfg.LargeCourse > 0 {
		large = min(cfg.LargeCourse, cfg.Students)
		if cfg.Courses == 1 {
			large = cfg.Students
		}
		res.LargeCourse = large
	}
	type grade struct {
		course, student int64
		assignment      string
		score           float64
		at              time.Time
	}
	var grades []grade
	student, k := 0, 0
	var picked []int64
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"enrolments"}, []string{"course_id", "student_id", "enrolled_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			for k >= len(picked) {
				if student >= cfg.Students {
					return nil, nil
				}
				student++
				if student%20000 == 0 || student == cfg.Students {
					fmt.Fprintf(progress, "seed: enrolments for students %d/%d\n", student, cfg.Students)
				}
				want := min(cfg.Courses, max(1, cfg.PerStudent-1+r.IntN(3)))
				picked = picked[:0]
				lo := 1 // random picks come from courses lo..Courses
				if large > 0 {
					if student <= large {
						picked = append(picked, 1)
					}
					lo = 2
					want = min(want, cfg.Courses-1+len(picked))
				}
				for len(picked) < want {
					c := int64(lo + r.IntN(cfg.Courses-lo+1))
					dup := false
					for _, p := range picked {
						dup = dup || p == c
					}
					if !dup {
						picked = append(picked, c)
					}
				}
				k = 0
			}
			c := picked[k]
			k++
			res.Enrolments++
			graded := r.IntN(4)
			if c == 1 && large > 0 {
				graded = 3 + r.IntN(3) // the large course is further into its term
			}
			for a := 0; a < graded; a++ {
				score := float64(int(40 + r.NormFloat64()*12 + 35)) // mostly 50-95
				score = min(100, max(0, score))
				grades = append(grades, grade{c, int64(student), assignments[a], score,
					created.Add(time.Duration(30+a*25+r.IntN(10)) * 24 * time.Hour)})
			}
			return []any{c, int64(student), created}, nil
		}))
	if err != nil {
		return SeedResult{}, fmt.Errorf("copy enrolments: %w", err)
	}

	i = 0
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"grades"}, []string{"course_id", "student_id", "assignment", "score", "graded_by", "graded_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i >= len(grades) {
				return nil, nil
			}
			g := grades[i]
			i++
			if i%100000 == 0 || i == len(grades) {
				fmt.Fprintf(progress, "seed: grades %d/%d\n", i, len(grades))
			}
			teacher := int64(cfg.Students + 1 + int(g.course-1)%cfg.Teachers)
			return []any{g.course, g.student, g.assignment, g.score, teacher, g.at}, nil
		}))
	if err != nil {
		return SeedResult{}, fmt.Errorf("copy grades: %w", err)
	}
	res.Grades = len(grades)

	// Materials: a PDF syllabus and two text files per course.
	i = 0
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"materials"}, []string{"course_id", "title", "filename", "content_type", "content", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i >= cfg.Courses*3 {
				return nil, nil
			}
			course := i/3 + 1
			kind := i % 3
			i++
			res.Materials++
			subj := subjects[(course-1)%len(subjects)]
			switch kind {
			case 0:
				pdf := makePDF(fmt.Sprintf("%s course %d: Syllabus", subj.name, course), []string{
					"Weekly lectures on Monday and Thursday.",
					"Assessment: quizzes 20%, essay 30%, final exam 50%.",
					"Office hours: Wednesday 14:00-16:00.",
					fmt.Sprintf("Course number %d of the demo catalogue.", course),
				})
				return []any{int64(course), "Syllabus", fmt.Sprintf("syllabus-%d.pdf", course), "application/pdf", pdf, created}, nil
			case 1:
				txt := fmt.Sprintf("Lecture notes, week 1\n%s\n\n1. What %s studies and why.\n2. Key terms.\n3. How this course is graded.\n",
					subj.name, strings.ToLower(subj.name))
				return []any{int64(course), "Lecture notes, week 1", fmt.Sprintf("week1-notes-%d.txt", course), "text/plain; charset=utf-8", []byte(txt), created}, nil
			default:
				txt := fmt.Sprintf("# Reading list\n\n- Chapter 1 of the %s course reader\n- One article of your choice from the library list\n", subj.name)
				return []any{int64(course), "Reading list", fmt.Sprintf("reading-list-%d.md", course), "text/markdown; charset=utf-8", []byte(txt), created}, nil
			}
		}))
	if err != nil {
		return SeedResult{}, fmt.Errorf("copy materials: %w", err)
	}
	fmt.Fprintf(progress, "seed: materials %d/%d\n", res.Materials, cfg.Courses*3)

	for _, seq := range []struct{ name, table string }{{"users_id_seq", "users"}, {"courses_id_seq", "courses"}, {"grades_id_seq", "grades"}, {"materials_id_seq", "materials"}} {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SELECT setval('%s', GREATEST((SELECT max(id) FROM %s), 1))", seq.name, seq.table)); err != nil {
			return SeedResult{}, fmt.Errorf("reset sequence %s: %w", seq.name, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO app_meta (key, value) VALUES ('seeded', $1)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
		fmt.Sprintf(`{"students":%d,"teachers":%d,"courses":%d}`, cfg.Students, cfg.Teachers, cfg.Courses)); err != nil {
		return SeedResult{}, fmt.Errorf("write seed marker: %w", err)
	}
	fmt.Fprintln(progress, "seed: committing")
	if err := tx.Commit(ctx); err != nil {
		return SeedResult{}, fmt.Errorf("commit seed: %w", err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return SeedResult{}, fmt.Errorf("analyze: %w", err)
	}
	res.Took = time.Since(start)
	return res, nil
}

// makePDF returns a valid one-page PDF showing a title and some lines.
func makePDF(title string, lines []string) []byte {
	esc := strings.NewReplacer(`\`, `\\`, `(`, `\(`, `)`, `\)`)
	var content bytes.Buffer
	fmt.Fprintf(&content, "BT /F1 20 Tf 72 760 Td (%s) Tj ET\n", esc.Replace(title))
	for i, l := range lines {
		fmt.Fprintf(&content, "BT /F1 12 Tf 72 %d Td (%s) Tj ET\n", 720-i*20, esc.Replace(l))
	}
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%sendstream", content.Len(), content.String()),
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}
